-- Usage events Postgres refused (e.g. a NUL in a text field, sent by an older or forged
-- publisher): set aside one by one with the reason, so their batch neighbours are stored.
-- The body is the event's JSON as received (bytea: it may hold what text columns refuse).
CREATE TABLE usage_dead_letters (
    id          bigserial   PRIMARY KEY,
    batch_id    uuid        NOT NULL,
    event_id    text,
    reason      text        NOT NULL,
    body        bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER usage_dead_letters_append_only BEFORE UPDATE OR DELETE ON usage_dead_letters
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_change();
CREATE TRIGGER usage_dead_letters_no_truncate BEFORE TRUNCATE ON usage_dead_letters
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_refuse_change();
