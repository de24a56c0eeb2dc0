-- The key that signs audit export manifests (Ed25519), and the chain head of every export.
--
-- audit_signing_keys: one row per key, made on first use by whichever process needs one first
-- (under an advisory lock, so replicas starting together agree on one); the newest row signs.
-- private_key is the key's 32-byte seed and public_key its 32-byte public key; key_id is derived
-- from the public key. Rows are never changed or removed, so the public key of every manifest ever
-- signed stays available. Only the application reads this table: no privilege for PUBLIC.
-- (KEYLEDGER_AUDIT_SIGNING_KEY, when set, signs instead and is never stored.)
CREATE TABLE audit_signing_keys (
    key_id      text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    private_key bytea       NOT NULL,
    public_key  bytea       NOT NULL UNIQUE
);
REVOKE ALL ON audit_signing_keys FROM PUBLIC;
CREATE TRIGGER audit_signing_keys_append_only BEFORE UPDATE OR DELETE ON audit_signing_keys
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_change();
CREATE TRIGGER audit_signing_keys_no_truncate BEFORE TRUNCATE ON audit_signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_refuse_change();

-- One row per finished compliance export, written just before its manifest: what the manifest
-- says (range, count, first and last digest, its digest, key and signature). Append-only, so a
-- later export can be checked against what earlier ones handed out.
CREATE TABLE audit_export_anchors (
    id              bigserial   PRIMARY KEY,
    generated_at    timestamptz NOT NULL,
    range_from      timestamptz,
    range_to        timestamptz,
    record_count    bigint      NOT NULL,
    first_digest    text,
    last_digest     text,
    manifest_digest text        NOT NULL,
    key_id          text        NOT NULL,
    signature       text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_export_anchors_generated ON audit_export_anchors (generated_at);
CREATE TRIGGER audit_export_anchors_append_only BEFORE UPDATE OR DELETE ON audit_export_anchors
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_change();
CREATE TRIGGER audit_export_anchors_no_truncate BEFORE TRUNCATE ON audit_export_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_refuse_change();
