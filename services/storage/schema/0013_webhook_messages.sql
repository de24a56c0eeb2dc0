-- What keyledger tells webhook endpoints, in one order ("notices"). Producers append here: the webhook
-- feeder (which follows the event store: key.created, key.rotated, ...), the expiry checker (key.expiring,
-- key.expired, key.grace_ended), the watch role (key.finding) and leak intake. Each endpoint delivers from
-- its own position in this table, so a restart or a receiver that is down delays notices, never drops them.
CREATE TABLE webhook_messages (
    position        bigint      PRIMARY KEY,
    message_id      text        NOT NULL UNIQUE,  -- the webhook-id header, and the producer's idempotency key
    type            text        NOT NULL,
    organization_id text,                         -- NULL: a key outside any organization
    key_id          text,
    data            jsonb       NOT NULL,
    occurred_at     timestamptz NOT NULL,         -- the webhook-timestamp of the notice
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_messages_organization ON webhook_messages (organization_id, position);

-- The last position handed out. An append locks this single row until it commits, so positions become
-- visible strictly in commit order and an endpoint following them never skips one (as event_position).
CREATE TABLE webhook_message_position (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value     bigint  NOT NULL
);
INSERT INTO webhook_message_position (singleton, value) VALUES (true, 0);

-- Notices are facts: append and read only.
CREATE TRIGGER webhook_messages_append_only BEFORE UPDATE OR DELETE ON webhook_messages
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_change();
GRANT SELECT, INSERT ON webhook_messages TO keyledger_app;
GRANT SELECT, UPDATE (value) ON webhook_message_position TO keyledger_app;
