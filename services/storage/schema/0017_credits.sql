-- Usage credits, counted exactly across API replicas. A pool is one key's credits ('key:<key id>') or one
-- owner's ('owner:<organization>/<owner id>'). `available` is what is neither spent nor leased; a replica
-- leases slices of it (credit_leases, one row per pool and holding process) and spends them in memory, so a
-- warm verify never waits on this table. Leases never add up to more than what remains, so all replicas
-- together never grant more than the credits; what a lease did not spend returns to `available` when its
-- holder releases it (idle, at a refill, at a new setting, at shutdown).
-- `setting` is the version of the credits setting (the key's version at its key.credits_set) and `period`
-- the start of the refill period (Unix seconds) the balance belongs to: a newer setting or period resets
-- `available` to its opening balance, and a lease of an older one returns nothing.
CREATE TABLE credit_pools (
    pool_id   text   PRIMARY KEY,
    setting   bigint NOT NULL,
    period    bigint NOT NULL,
    available bigint NOT NULL CHECK (available >= 0)
);

CREATE TABLE credit_leases (
    pool_id    text        NOT NULL,
    holder     text        NOT NULL,  -- the leasing process (a random id per process)
    setting    bigint      NOT NULL,
    period     bigint      NOT NULL,
    amount     bigint      NOT NULL,
    renewed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, holder)
);

-- The refill record: one row per pool and period that a refill opened (the balance reset to `amount`).
CREATE TABLE credit_refills (
    pool_id     text        NOT NULL,
    period      bigint      NOT NULL,
    amount      bigint      NOT NULL,
    refilled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool_id, period)
);

-- Bring the pool to (setting, period): open it with p_opening when it is older (a refill is recorded when
-- only the period moved on). Returns the pool's setting and period afterwards (newer ones are kept).
CREATE FUNCTION keyledger_credit_open(p_pool text, p_setting bigint, p_period bigint, p_opening bigint,
                                      p_refill bigint)
RETURNS credit_pools LANGUAGE plpgsql AS $$
DECLARE
    pool credit_pools;
BEGIN
    INSERT INTO credit_pools (pool_id, setting, period, available) VALUES (p_pool, p_setting, p_period, p_opening)
        ON CONFLICT (pool_id) DO NOTHING;
    SELECT * INTO pool FROM credit_pools WHERE pool_id = p_pool FOR UPDATE;
    IF (pool.setting, pool.period) < (p_setting, p_period) THEN
        IF pool.setting = p_setting AND p_refill IS NOT NULL THEN
            INSERT INTO credit_refills (pool_id, period, amount) VALUES (p_pool, p_period, p_opening)
                ON CONFLICT DO NOTHING;
        END IF;
        UPDATE credit_pools SET setting = p_setting, period = p_period, available = p_opening
            WHERE pool_id = p_pool RETURNING * INTO pool;
        DELETE FROM credit_leases WHERE pool_id = p_pool;  -- leases of an older balance return nothing
    END IF;
    RETURN pool;
END
$$;

-- Lease up to p_want credits of (setting, period) for p_holder: returns what was granted and what is left
-- available after it (0, 0 when the pool is already at a newer setting or period).
CREATE FUNCTION keyledger_credit_lease(p_pool text, p_holder text, p_setting bigint, p_period bigint,
                                       p_opening bigint, p_refill bigint, p_want bigint,
                                       OUT granted bigint, OUT available bigint)
LANGUAGE plpgsql AS $$
DECLARE
    pool credit_pools;
BEGIN
    pool := keyledger_credit_open(p_pool, p_setting, p_period, p_opening, p_refill);
    IF (pool.setting, pool.period) <> (p_setting, p_period) THEN
        granted := 0;
        available := 0;
        RETURN;
    END IF;
    granted := least(p_want, pool.available);
    available := pool.available - granted;
    UPDATE credit_pools SET available = keyledger_credit_lease.available WHERE pool_id = p_pool;
    INSERT INTO credit_leases (pool_id, holder, setting, period, amount)
        VALUES (p_pool, p_holder, p_setting, p_period, granted)
        ON CONFLICT (pool_id, holder) DO UPDATE SET amount = credit_leases.amount + excluded.amount,
                                                   renewed_at = now();
END
$$;

-- End p_holder's lease of (setting, period), of which p_spent was spent: the rest returns to the pool
-- (nothing when the pool moved on to a newer setting or period). Returns what is available afterwards.
CREATE FUNCTION keyledger_credit_release(p_pool text, p_holder text, p_setting bigint, p_period bigint,
                                         p_spent bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    lease credit_leases;
    left_over bigint;
BEGIN
    PERFORM 1 FROM credit_pools WHERE pool_id = p_pool FOR UPDATE;
    DELETE FROM credit_leases WHERE pool_id = p_pool AND holder = p_holder AND setting = p_setting
        AND period = p_period RETURNING * INTO lease;
    IF FOUND THEN
        UPDATE credit_pools SET available = credit_pools.available + greatest(0, lease.amount - p_spent)
            WHERE pool_id = p_pool AND setting = p_setting AND period = p_period;
    END IF;
    SELECT credit_pools.available INTO left_over FROM credit_pools WHERE pool_id = p_pool;
    RETURN coalesce(left_over, 0);
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON credit_pools, credit_leases TO keyledger_app;
GRANT SELECT, INSERT ON credit_refills TO keyledger_app;

-- What each verify spent (0: nothing, or a key without credits).
ALTER TABLE usage_events ADD COLUMN credits_spent bigint NOT NULL DEFAULT 0;
