-- Signed-in dashboard sessions, by the SHA-256 of their id (only the browser's cookie holds the id). The
-- admin key is kept wrapped (AES-GCM) under a key derived from the id: this table alone unlocks nothing.
CREATE TABLE dashboard_sessions (
    lookup     bytea       PRIMARY KEY,
    key_id     text        NOT NULL,
    start      text        NOT NULL,
    wrapped    bytea       NOT NULL,
    csrf       text        NOT NULL,
    created_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_seen ON dashboard_sessions (seen_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard_sessions TO keyledger_app;
