-- Wake listeners (the relay) as soon as events commit.
CREATE FUNCTION keyledger_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyledger_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger_notify_events();

-- Where each publisher / projector has got to. position: last global position handled;
-- stream_seq: the JetStream stream sequence of that event (0 when unknown).
CREATE TABLE checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    stream_seq bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The key cache read model: each key's folded state, written with the projector's
-- checkpoint in one transaction. Rebuilt by `keyledger replay`.
CREATE TABLE key_cache (
    key_id   text    NOT NULL,
    version  integer NOT NULL,
    position bigint  NOT NULL,
    state    jsonb   NOT NULL,
    CONSTRAINT key_cache_pkey PRIMARY KEY (key_id)
);
