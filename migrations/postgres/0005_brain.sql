-- The receptionist brain's outcome record: every lead says how its call
-- ended (booked, transferred, callback, answered, opted_out), in which
-- order the brain decided it (a later decision never loses to an earlier
-- one that finished last), whether the call came after hours, and when a
-- callback is due. A contact who asked not to be contacted is marked.
ALTER TABLE leads ADD COLUMN outcome TEXT;
ALTER TABLE leads ADD COLUMN outcome_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leads ADD COLUMN after_hours BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leads ADD COLUMN callback_due_ms BIGINT;
ALTER TABLE contacts ADD COLUMN do_not_contact BIGINT NOT NULL DEFAULT 0;
