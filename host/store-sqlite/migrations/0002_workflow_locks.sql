-- weft event store, schema version 2: runs pinned to locked workflows.
--
-- `workflows` holds each distinct workflow lock once (JSON text, see
-- `weft_manifest::WorkflowLock`), keyed by the SHA-256 of that text. A run
-- references the lock it is pinned to; runs recorded before this migration
-- have none (NULL) and keep loading their manifest from disk.
--
-- `run_pins` is the history of a run's pins: the lock it started with
-- (`seq` 0) and each re-pin by `weft resume --upgrade`, at the sequence
-- number of the run's last event when it took effect. `runs.workflow_digest`
-- is the latest pin.

CREATE TABLE workflows (
    digest TEXT NOT NULL PRIMARY KEY,
    lock   TEXT NOT NULL
) STRICT, WITHOUT ROWID;

ALTER TABLE runs ADD COLUMN workflow_digest TEXT REFERENCES workflows (digest);

CREATE TABLE run_pins (
    run_id TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL CHECK (seq >= 0),
    digest TEXT    NOT NULL REFERENCES workflows (digest),
    at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;
