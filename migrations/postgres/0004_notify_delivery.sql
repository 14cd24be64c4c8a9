-- Deliveries beyond Slack: the missed-call text-back is sent at most once
-- per caller per cooldown, and every node must agree on when the last one
-- went out, so the last send time lives here (one row per caller number),
-- claimed by a conditional upsert in the same transaction as the SMS's
-- outbox item.
CREATE TABLE sms_cooldowns (
    phone_e164  TEXT PRIMARY KEY,
    last_ms     BIGINT NOT NULL
);

-- Operators list failed items by status (`GET /api/outbox?status=failed`).
CREATE INDEX outbox_status_created ON outbox (status, created_ms);
