-- Leads that get called back.
-- The first claim of a lead wins: the primary key makes a second claim a
-- no-op that reads back the first claimer. `dialed_ms` is when click-to-call
-- started the rep's leg (NULL: no call placed, e.g. the tel: fallback).
CREATE TABLE lead_claims (
    lead_id     TEXT PRIMARY KEY REFERENCES leads(id),
    rep_id      TEXT NOT NULL,
    rep_name    TEXT NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('link', 'slack')),
    claimed_ms  BIGINT NOT NULL,
    dialed_ms   BIGINT,
    dial_sid    TEXT
);

-- The Slack card of each lead: where it went, its `ts` (bot mode; NULL for an
-- incoming webhook, which cannot be edited) and when it was posted, so the
-- time from card to claim and to first dial can be measured.
CREATE TABLE lead_cards (
    lead_id      TEXT PRIMARY KEY REFERENCES leads(id),
    channel      TEXT NOT NULL,
    ts           TEXT,
    after_hours  BOOLEAN NOT NULL,
    posted_ms    BIGINT NOT NULL
);
