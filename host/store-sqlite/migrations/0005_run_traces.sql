-- weft event store, schema version 5: the trace a run continues.
--
-- `run_traces` holds the W3C `traceparent` a run was started under (a
-- server's `POST /v1/runs` header), so that whichever process settles the
-- run exports its spans into that trace. It is written before the run is
-- created (no foreign key: a start that is then refused leaves a row no run
-- uses, which nothing reads); the first row for a run id wins.

CREATE TABLE run_traces (
    run_id      TEXT NOT NULL PRIMARY KEY,
    traceparent TEXT NOT NULL
) STRICT, WITHOUT ROWID;
