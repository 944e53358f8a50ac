-- weft event store, schema version 3: leases, wake times, the run index.
--
-- A run is driven by one owner at a time: `lease_owner` holds it until
-- `lease_expires_at` (microseconds since the Unix epoch, by the database's
-- clock, never an owner's) unless renewed; NULL owner: nobody. Every grant
-- bumps `lease_epoch`, the fencing token each append must name, so a
-- stale owner can never write after a takeover.
--
-- `wake_at` is when a running run that only waits for a timer (a sleep, a
-- retry delay) next needs attention (event time, microseconds); NULL:
-- now, or never (a settled run). `runs_claimable` finds the running runs a
-- recovering host can take with one index range.
--
-- The `timers` table of version 1 was never written: wake times live on
-- the run they belong to.

ALTER TABLE runs ADD COLUMN lease_owner TEXT;
ALTER TABLE runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0);
ALTER TABLE runs ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE runs ADD COLUMN wake_at INTEGER;

CREATE INDEX runs_claimable ON runs (wake_at) WHERE status = 'running';
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;

DROP TABLE timers;

-- The run index pages by (created_at, run_id), newest first; runs belong to
-- a tenant (`default` until weft has tenants).
ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
DROP INDEX runs_by_created;
DROP INDEX runs_by_status;
CREATE INDEX runs_by_created ON runs (created_at, run_id);
CREATE INDEX runs_by_status ON runs (status, created_at, run_id);

-- What a run's steps did is its events replayed through the one state
-- machine; the store keeps no second, SQL-written version of it.
DROP TABLE step_results;
