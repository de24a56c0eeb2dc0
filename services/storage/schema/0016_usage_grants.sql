-- What each key was allowed to do (projections.usage_grants): its VALID requests by scope, website and
-- data kind ('' when the request named none), with the last time and how many. The audit sink adds to it
-- in the transaction that stores each batch (so a redelivered batch counts once), as it does usage_hourly.
-- The hygiene report reads a key's uses of the last days from here instead of scanning usage rows.
-- Retention drops usage partitions but keeps these rows.
CREATE TABLE usage_grants (
    key_id     text        NOT NULL,
    scope      text        NOT NULL,
    website_id text        NOT NULL,
    data       text        NOT NULL,
    last_at    timestamptz NOT NULL,
    count      bigint      NOT NULL,
    PRIMARY KEY (key_id, scope, website_id, data)
);

INSERT INTO usage_grants (key_id, scope, website_id, data, last_at, count)
SELECT key_id, scope, website_id, data, max(last_at), sum(count)
  FROM (SELECT key_id, scope, coalesce(website_id, '') AS website_id, coalesce(data, '') AS data,
               max(at) AS last_at, count(*) AS count
          FROM usage_events WHERE outcome = 'VALID' AND key_id IS NOT NULL AND scope IS NOT NULL
         GROUP BY 1, 2, 3, 4
        UNION ALL  -- a verify caller that authenticated with an admin key used that key's admin:apikeys
        SELECT substr(caller, 5), 'admin:apikeys', '', '', max(at), count(*)
          FROM usage_events WHERE caller LIKE 'key:%'
         GROUP BY 1) AS used
 GROUP BY 1, 2, 3, 4;

-- When each key's secret was last issued: the hygiene report reads the latest key.rotated per key.
CREATE INDEX events_key_rotated ON events (stream_id, version) WHERE type = 'key.rotated';

GRANT SELECT, INSERT, UPDATE ON usage_grants TO keyledger_app;
