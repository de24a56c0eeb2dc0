-- Owners in the customer's system (a key's owner_id) with limits shared by all their keys, per organization
-- ('' for keys of no organization). Every change is an upsert here and an append to owner_events, in one
-- statement: owner_events is the owners' audit record (who, from where, what was set), append-only.
-- API processes follow `seq` to keep every replica's copy current (services.verify.owners). The owner's
-- credits are counted like a key's, in credit_pools ('owner:<owner id>/<organization>').
CREATE SEQUENCE owners_seq;

CREATE TABLE owners (
    organization_id text        NOT NULL,
    owner_id        text        NOT NULL,
    rate_limit      integer,              -- requests per minute shared by the owner's keys (null: none)
    credits         jsonb,                -- {remaining, refill} shared by the owner's keys (null: none)
    credits_version integer     NOT NULL DEFAULT 0,  -- the owner's version when credits were last set
    credits_set_at  timestamptz,
    version         integer     NOT NULL,
    seq             bigint      NOT NULL DEFAULT nextval('owners_seq'),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, owner_id)
);
CREATE INDEX owners_by_seq ON owners (seq);

CREATE TABLE owner_events (
    organization_id text        NOT NULL,
    owner_id        text        NOT NULL,
    version         integer     NOT NULL,
    type            text        NOT NULL,  -- owner.limits_set
    data            jsonb       NOT NULL,  -- what the change set: {rate_limit?, credits?}
    actor           text,
    ip              text,
    request_id      text,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, owner_id, version)
);

GRANT SELECT, INSERT, UPDATE ON owners TO keyledger_app;
GRANT USAGE ON SEQUENCE owners_seq TO keyledger_app;
GRANT SELECT, INSERT ON owner_events TO keyledger_app;
