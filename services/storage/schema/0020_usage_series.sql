-- The usage analytics API's read models (projections.usage_series), beside usage_hourly (a key's requests
-- by outcome). The audit sink adds to both in the transaction that stores each batch (so a redelivered
-- batch counts once). Retention drops usage partitions but keeps these counts.

-- A key's requests per hour by the scope and website they named ('' when none): a key's series grouped
-- by scope or website.
CREATE TABLE usage_hourly_requests (
    key_id     text        NOT NULL,
    hour       timestamptz NOT NULL,
    scope      text        NOT NULL,
    website_id text        NOT NULL,
    count      bigint      NOT NULL,
    PRIMARY KEY (key_id, hour, scope, website_id)
);

-- An organization's keys ('org:<id>') and every key ('all') together, per hour and per day ('span'), by
-- outcome, scope and website ('dimension'): a series over many keys reads one row per bucket and group.
CREATE TABLE usage_rollups (
    subject   text        NOT NULL,
    dimension text        NOT NULL,
    span      text        NOT NULL,
    at        timestamptz NOT NULL,
    value     text        NOT NULL,
    count     bigint      NOT NULL,
    PRIMARY KEY (subject, dimension, span, at, value)
);

-- Backfill from the usage rows still held (the partitions retention has not dropped).
INSERT INTO usage_hourly_requests (key_id, hour, scope, website_id, count)
SELECT key_id, date_trunc('hour', at, 'UTC'), coalesce(scope, ''), coalesce(website_id, ''), count(*)
  FROM usage_events WHERE key_id IS NOT NULL
 GROUP BY 1, 2, 3, 4;

INSERT INTO usage_rollups (subject, dimension, span, at, value, count)
SELECT s.subject, d.dimension, 'hour', u.hour, d.value, sum(u.count)
  FROM (SELECT organization_id, date_trunc('hour', at, 'UTC') AS hour, outcome, coalesce(scope, '') AS scope,
               coalesce(website_id, '') AS website_id, count(*) AS count
          FROM usage_events WHERE key_id IS NOT NULL
         GROUP BY 1, 2, 3, 4, 5) AS u
 CROSS JOIN LATERAL (VALUES ('outcome', u.outcome), ('scope', u.scope), ('website', u.website_id))
       AS d (dimension, value)
 CROSS JOIN LATERAL (VALUES ('all'), ('org:' || u.organization_id)) AS s (subject)
 WHERE s.subject IS NOT NULL
 GROUP BY 1, 2, 4, 5;

INSERT INTO usage_rollups (subject, dimension, span, at, value, count)
SELECT subject, dimension, 'day', date_trunc('day', at, 'UTC'), value, sum(count)
  FROM usage_rollups WHERE span = 'hour'
 GROUP BY 1, 2, 4, 5;

GRANT SELECT, INSERT, UPDATE ON usage_hourly_requests, usage_rollups TO keyledger_app;
