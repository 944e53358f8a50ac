-- weft event store, schema version 4: deployed workflows.
--
-- `deployments` says which stored workflow locks serve a workflow id (the
-- manifest's `id`): `weft deploy` / `POST /v1/workflows` add a row per
-- version, once (deploying the same version again keeps its first time). A
-- start by workflow id runs the newest version unless it names another.

CREATE TABLE deployments (
    workflow_id TEXT    NOT NULL,
    digest      TEXT    NOT NULL REFERENCES workflows (digest),
    deployed_at INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, digest)
) STRICT, WITHOUT ROWID;

CREATE INDEX deployments_newest ON deployments (workflow_id, deployed_at DESC, digest DESC);
