-- When each key was last used successfully; written in debounced batches, not per request.
CREATE TABLE key_last_used (
    key_id       text        PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
