-- weft event store on PostgreSQL, schema version 1: the whole store as the
-- SQLite store has it at its schema version 5 (same tables, same columns,
-- same meaning), in the schema the store was opened with.
--
-- The event log (`events`) is the source of truth. `runs` caches what the
-- log implies (status, last sequence number, first and last event time), so
-- listing runs needs no replay, and holds the run's lease and wake time;
-- both are written in the same transaction as the events they derive from.
--
-- Event times, wake times and deploy times are microseconds since the Unix
-- epoch (`bigint`), as the hosts recorded them in the events. A lease's
-- expiry is a `timestamptz` of the DATABASE's clock (`clock_timestamp()`),
-- never a host's: hosts on several machines judge it by one clock. Events
-- are their serde JSON as text (exactly the bytes weft wrote: `jsonb`
-- would reorder object keys). Ids and digests compare bytewise
-- (`COLLATE "C"`), as SQLite and Rust order them, so a run-index cursor
-- means the same everywhere.

-- Workflow locks, each distinct one once, by the SHA-256 of its text (see
-- `weft_manifest::WorkflowLock`).
CREATE TABLE workflows (
    digest text COLLATE "C" NOT NULL PRIMARY KEY,
    lock   text NOT NULL
);

-- A run is driven by one owner at a time: `lease_owner` holds it until
-- `lease_expires_at` unless renewed; NULL owner: nobody. Every grant bumps
-- `lease_epoch`, the fencing token each append must name. `wake_at` is when
-- a running run that only waits for a timer next needs attention; NULL:
-- now, or never (a settled run). Runs belong to a tenant (`default` until
-- weft has tenants).
CREATE TABLE runs (
    run_id           text COLLATE "C" NOT NULL PRIMARY KEY,
    tenant           text NOT NULL DEFAULT 'default',
    workflow_id      text COLLATE "C" NOT NULL,
    manifest         text NOT NULL,
    manifest_sha256  text NOT NULL,
    workflow_digest  text COLLATE "C" REFERENCES workflows (digest),
    status           text NOT NULL,
    last_seq         bigint NOT NULL CHECK (last_seq >= 0),
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL,
    lease_owner      text,
    lease_epoch      bigint NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0),
    lease_expires_at timestamptz,
    wake_at          bigint
);

-- The run index pages by (created_at, run_id), newest first.
CREATE INDEX runs_by_created ON runs (created_at, run_id);
CREATE INDEX runs_by_status ON runs (status, created_at, run_id);
-- What a recovering host can take: running runs by wake time (NULL, now,
-- first), one index range.
CREATE INDEX runs_claimable ON runs (wake_at NULLS FIRST, run_id) WHERE status = 'running';
-- A renewal finds an owner's runs.
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE events (
    run_id  text COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq     bigint NOT NULL CHECK (seq >= 1),
    type    text NOT NULL,
    at      bigint NOT NULL,
    payload text NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- The history of a run's pins: the lock it started with (`seq` 0) and each
-- re-pin, at the sequence number of the run's last event when it took
-- effect. `runs.workflow_digest` is the latest pin.
CREATE TABLE run_pins (
    run_id text COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq    bigint NOT NULL CHECK (seq >= 0),
    digest text COLLATE "C" NOT NULL REFERENCES workflows (digest),
    at     bigint NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Which stored locks serve a workflow id: a row per deployed version, once.
CREATE TABLE deployments (
    workflow_id text COLLATE "C" NOT NULL,
    digest      text COLLATE "C" NOT NULL REFERENCES workflows (digest),
    deployed_at bigint NOT NULL,
    PRIMARY KEY (workflow_id, digest)
);

CREATE INDEX deployments_newest ON deployments (workflow_id, deployed_at DESC, digest DESC);

-- The W3C `traceparent` a run continues; written before the run exists
-- (no foreign key), the first row for a run id wins.
CREATE TABLE run_traces (
    run_id      text COLLATE "C" NOT NULL PRIMARY KEY,
    traceparent text NOT NULL
);
