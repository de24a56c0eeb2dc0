-- Requests counted per key and fixed window, shared by all API replicas. Replicas lease
-- small slices of a window's budget at a time, so a warm verify never waits on this table.
CREATE TABLE rate_windows (
    key_id       text    NOT NULL,
    window_start bigint  NOT NULL,
    used         integer NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

-- Take up to p_want requests from the window's remaining budget; returns what was granted
-- and the window's total used afterwards.
CREATE FUNCTION keyledger_rate_lease(p_key text, p_window bigint, p_want integer, p_limit integer,
                                     OUT granted integer, OUT window_used integer)
LANGUAGE plpgsql AS $$
DECLARE
    before integer;
BEGIN
    INSERT INTO rate_windows (key_id, window_start, used) VALUES (p_key, p_window, 0)
        ON CONFLICT (key_id, window_start) DO NOTHING;
    SELECT r.used INTO before FROM rate_windows r
        WHERE r.key_id = p_key AND r.window_start = p_window FOR UPDATE;
    granted := greatest(0, least(p_want, p_limit - before));
    window_used := before + granted;
    UPDATE rate_windows r SET used = window_used WHERE r.key_id = p_key AND r.window_start = p_window;
END
$$;
