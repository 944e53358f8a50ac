-- weft event store, schema version 1.
--
-- The event log (`events`) is the source of truth. `runs` caches what the
-- log implies (status, last sequence number, timestamps) so listing runs needs
-- no replay; `step_results` is a projection for inspection only. Both are
-- updated in the same transaction as the events they derive from.
--
-- Timestamps are microseconds since the Unix epoch. JSON columns hold
-- serde_json text.

CREATE TABLE runs (
    run_id          TEXT    NOT NULL PRIMARY KEY,
    workflow_id     TEXT    NOT NULL,
    manifest        TEXT    NOT NULL,
    manifest_sha256 TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    last_seq        INTEGER NOT NULL CHECK (last_seq >= 0),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

-- `list_runs` with and without a status filter, newest first.
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_status ON runs (status, created_at);

CREATE TABLE events (
    run_id  TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    type    TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    payload TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE step_results (
    run_id     TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    path       TEXT    NOT NULL,
    step       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    output     TEXT,
    error      TEXT,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    PRIMARY KEY (run_id, path)
) STRICT, WITHOUT ROWID;

CREATE TABLE timers (
    run_id TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    key    TEXT    NOT NULL,
    due    INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX timers_by_due ON timers (due);
