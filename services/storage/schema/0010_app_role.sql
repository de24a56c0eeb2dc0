-- The privileges of keyledger's processes, held by the group role keyledger_app; a deployment grants
-- it to the login role its services use (the embedded stack: `keyledger`) and runs migrations, replay
-- and audit retention as the owner of the tables. keyledger_app owns nothing, so it cannot disable
-- a trigger, drop or detach a partition, or alter a table; the grants below are all it can do.
DO $$ BEGIN
    CREATE ROLE keyledger_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- made by another database's migration
END $$;

GRANT USAGE ON SCHEMA public TO keyledger_app;

-- Events: read, and append (every column but recorded_at, which only the server's clock sets);
-- never UPDATE, DELETE or TRUNCATE (not granted; the triggers refuse them for the owner too).
GRANT SELECT ON events TO keyledger_app;
GRANT INSERT (global_position, event_id, stream_id, version, type, data, metadata) ON events TO keyledger_app;
GRANT SELECT, UPDATE (value) ON event_position TO keyledger_app;

-- Read models and working state that processes keep up to date.
GRANT SELECT, INSERT, UPDATE ON checkpoints, key_cache, key_last_used TO keyledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_windows TO keyledger_app;
GRANT SELECT, INSERT, UPDATE (revoked_at) ON verify_credentials TO keyledger_app;

-- The audit trail: append and read only.
GRANT SELECT, INSERT ON usage_events, usage_batches, usage_dead_letters, audit_export_anchors,
    audit_signing_keys TO keyledger_app;
GRANT SELECT ON audit_retention_log, schema_migrations TO keyledger_app;
GRANT USAGE ON SEQUENCE usage_dead_letters_id_seq, audit_export_anchors_id_seq TO keyledger_app;

-- The audit sink creates each day's partition of usage_events through this function, which runs with
-- its owner's rights and can do nothing else; only the owner drops partitions (audit retention).
-- (search_path: the schema of usage_events, then pg_temp, so no caller's object can stand in for one.)
DO $do$
DECLARE
    home text := (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'usage_events'::regclass);
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION keyledger_ensure_usage_partition(p_day date) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = %s, pg_temp AS $body$
        BEGIN
            PERFORM pg_advisory_xact_lock(1802204528);  -- PARTITION_LOCK (0x6B6C7570), shared with retention
            EXECUTE format('CREATE TABLE IF NOT EXISTS %%I PARTITION OF usage_events FOR VALUES FROM (%%L) TO (%%L)',
                           'usage_events_' || to_char(p_day, 'YYYYMMDD'),
                           p_day::timestamp AT TIME ZONE 'UTC', (p_day + 1)::timestamp AT TIME ZONE 'UTC');
        END
        $body$$f$, home);
END
$do$;
REVOKE ALL ON FUNCTION keyledger_ensure_usage_partition(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keyledger_ensure_usage_partition(date) TO keyledger_app;
