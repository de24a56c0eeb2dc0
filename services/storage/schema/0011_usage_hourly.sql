-- Verifications per key, hour and outcome: a projection of usage_events that the audit sink
-- updates in the transaction that stores each batch (so a redelivered batch counts once). The
-- dashboard's charts read a key's last 24 hours or 7 days from here instead of scanning usage rows.
-- Retention drops usage partitions but keeps these counts.
CREATE TABLE usage_hourly (
    key_id  text        NOT NULL,
    hour    timestamptz NOT NULL,
    outcome text        NOT NULL,
    count   bigint      NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
);

INSERT INTO usage_hourly (key_id, hour, outcome, count)
SELECT key_id, date_trunc('hour', at, 'UTC'), outcome, count(*)
  FROM usage_events WHERE key_id IS NOT NULL
 GROUP BY 1, 2, 3;

-- An organization admin's audit page reads its organization's newest usage first.
CREATE INDEX usage_events_org ON usage_events (organization_id, at);

GRANT SELECT, INSERT, UPDATE ON usage_hourly TO keyledger_app;
