-- Webhook endpoints and their deliveries. Every endpoint delivers the notices (webhook_messages) after its
-- own position, one at a time and in order: its position moves only when a notice was delivered (a 2xx), so a
-- restart, a SIGKILL or a receiver that is down delays notices and never drops them.
CREATE TABLE webhook_endpoints (
    id                text        PRIMARY KEY,
    organization_id   text,                     -- NULL: every organization's notices (a global admin's endpoint)
    url               text        NOT NULL,
    event_types       text[]      NOT NULL,
    description       text        NOT NULL DEFAULT '',
    -- the signing secret (whsec_...), shown once at registration; the dispatcher signs with it, so it is kept
    -- as it is. Only the dispatcher's query reads it: no listing, page or log selects it.
    secret            text        NOT NULL,
    status            text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'failing', 'disabled')),
    position          bigint      NOT NULL,     -- the last notice it is done with (webhook_messages.position)
    created_at        timestamptz NOT NULL,
    created_by        text,
    status_changed_at timestamptz
);
CREATE INDEX webhook_endpoints_organization ON webhook_endpoints (organization_id, created_at);

-- One row per notice an endpoint tried to deliver: attempts, the last answer, when the next attempt is due.
CREATE TABLE webhook_deliveries (
    endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    position        bigint      NOT NULL,       -- the notice (webhook_messages.position)
    message_id      text        NOT NULL,
    type            text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    failures        integer     NOT NULL DEFAULT 0,  -- failed attempts since retrying_since
    last_status     integer,                    -- the last HTTP status (NULL: no answer)
    last_error      text,
    retrying_since  timestamptz,                -- the first failure (again after a re-enable): retries stop a
                                                -- KEYLEDGER_WEBHOOK_RETRY_FOR later and the endpoint is failing
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (endpoint_id, position)
);

-- When keys are due their expiry notices (key.expiring at 30, 7 and 1 days, key.expired, key.grace_ended),
-- kept by the webhook feeder from the key events in the transaction that moves its checkpoint; the expiry
-- checker turns due rows into notices and deletes them in one transaction.
CREATE TABLE webhook_deadlines (
    message_id text        PRIMARY KEY,
    key_id     text        NOT NULL,
    type       text        NOT NULL,
    days       integer,
    due_at     timestamptz NOT NULL
);
CREATE INDEX webhook_deadlines_due ON webhook_deadlines (due_at);
CREATE INDEX webhook_deadlines_key ON webhook_deadlines (key_id);

-- Wake the dispatcher as soon as notices commit (as keyledger_events wakes the relay).
CREATE FUNCTION keyledger_notify_notices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyledger_notices', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_messages_notify AFTER INSERT ON webhook_messages
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_notify_notices();
CREATE TRIGGER webhook_endpoints_notify AFTER INSERT OR UPDATE OR DELETE ON webhook_endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_notify_notices();

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints, webhook_deliveries TO keyledger_app;
GRANT SELECT, INSERT, DELETE ON webhook_deadlines TO keyledger_app;
