-- Credentials of the services that call POST /v1/verify. Only a SHA-256 of each secret is kept
-- (the secrets are 190-bit random tokens, so a fast hash is enough; the full secret exists only in
-- the output that created it). Revoked rows stay, for the audit trail.
CREATE TABLE verify_credentials (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    secret_sha256 text      NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    revoked_at  timestamptz
);

-- Who called verify, and from which socket address (beside the end-client ip it forwards).
ALTER TABLE usage_events ADD COLUMN caller text;
ALTER TABLE usage_events ADD COLUMN caller_ip text;
