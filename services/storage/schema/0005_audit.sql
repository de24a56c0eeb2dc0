-- Usage events: high-volume, append-only, partitioned by day on `at`. The audit sink
-- creates partitions as needed; `keyledger audit retention` drops old ones (and says so in
-- audit_retention_log). Nothing in the application updates or deletes a row.
CREATE TABLE usage_events (
    id              uuid        NOT NULL,
    at              timestamptz NOT NULL,
    action          text        NOT NULL,
    outcome         text        NOT NULL,
    key_id          text,
    start           text,
    organization_id text,
    scope           text,
    granted_by      text,
    reason          text        NOT NULL DEFAULT '',
    website_id      text,
    data            text,
    ip              text,
    user_agent      text,
    request_id      text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (at);
CREATE INDEX usage_events_at ON usage_events (at, id);
CREATE INDEX usage_events_key ON usage_events (key_id, at);

CREATE TRIGGER usage_events_append_only BEFORE UPDATE OR DELETE ON usage_events
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_change();

-- Batches (one JetStream message each) already stored: a redelivered batch is skipped.
CREATE TABLE usage_batches (
    batch_id    uuid        PRIMARY KEY,
    events      integer     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Every retention run: what was dropped, when, by whom.
CREATE TABLE audit_retention_log (
    id         bigserial   PRIMARY KEY,
    ran_at     timestamptz NOT NULL DEFAULT now(),
    actor      text,
    keep_days  integer     NOT NULL,
    cutoff     timestamptz NOT NULL,
    dropped    text[]      NOT NULL
);
CREATE TRIGGER audit_retention_log_append_only BEFORE UPDATE OR DELETE ON audit_retention_log
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_change();
CREATE TRIGGER usage_events_no_truncate BEFORE TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_refuse_change();
CREATE TRIGGER audit_retention_log_no_truncate BEFORE TRUNCATE ON audit_retention_log
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_refuse_change();
