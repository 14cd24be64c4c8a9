-- The call session: every call on record from its first frame.
-- The carrier's custom parameters (JSON object) and why the call ended.
ALTER TABLE calls ADD COLUMN params TEXT;
ALTER TABLE calls ADD COLUMN end_reason TEXT;

-- Each caller and receptionist turn, appended as it happens. `seq` orders the
-- turns of one call; a caller turn that was amended (the caller went on
-- before hearing the reply) is rewritten under the same seq.
CREATE TABLE call_turns (
    call_id      TEXT NOT NULL REFERENCES calls(id),
    seq          INTEGER NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('caller', 'receptionist')),
    text         TEXT NOT NULL,
    heard        TEXT,
    interrupted  BOOLEAN NOT NULL DEFAULT FALSE,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (call_id, seq)
);

-- Side-effecting tool jobs, exactly once per (call_sid, job_id) across nodes.
CREATE TABLE tool_jobs (
    call_sid     TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('running', 'finished')),
    outcome      TEXT,
    created_ms   BIGINT NOT NULL,
    finished_ms  BIGINT,
    PRIMARY KEY (call_sid, job_id)
);
