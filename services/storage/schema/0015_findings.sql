-- Suspicious-activity findings: derived from the usage events by the watch role (and rebuilt from the
-- usage table by `keyledger watch rebuild`). One row per kind, key and subject; its id is derived from those
-- three, so a rebuild gives a finding the id it had. Acknowledging is an administrator's act, kept across
-- rebuilds.
CREATE TABLE findings (
    id              uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    severity        text        NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    key_id          text        NOT NULL,
    organization_id text,
    subject         text        NOT NULL,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    count           bigint      NOT NULL,
    evidence        jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged')),
    acknowledged_at timestamptz,
    acknowledged_by text,
    -- the automatic response (KEYLEDGER_FINDINGS_AUTO_REVOKE): 'revoke' while the key's revocation is due,
    -- 'revoked' once done; NULL: none
    response        text        CHECK (response IN ('revoke', 'revoked')),
    UNIQUE (kind, key_id, subject)
);
CREATE INDEX findings_newest ON findings (first_seen DESC, id DESC);
CREATE INDEX findings_organization ON findings (organization_id, first_seen DESC, id DESC);
CREATE INDEX findings_key ON findings (key_id, first_seen DESC, id DESC);
CREATE INDEX findings_due ON findings (id) WHERE response = 'revoke';

-- What the watch remembers of each key between batches (domain.finding_rules.Profile, as JSON).
CREATE TABLE watch_profiles (
    key_id  text  PRIMARY KEY,
    profile jsonb NOT NULL
);

-- Usage batches (one JetStream message each) the watch has applied, claimed in the transaction that applies
-- them: a redelivered batch is skipped, so no event is counted twice. A rebuild claims every batch the usage
-- table holds. Claims older than two days are dropped (an applied batch is acked within seconds).
CREATE TABLE watch_batches (
    batch_id   uuid        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX watch_batches_applied ON watch_batches (applied_at);

GRANT SELECT, INSERT, UPDATE ON findings, watch_profiles TO keyledger_app;
GRANT SELECT, INSERT, DELETE ON watch_batches TO keyledger_app;
