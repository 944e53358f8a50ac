//! [`RunIndex`] on the `runs` table: listing runs with filters and keyset
//! paging, who holds a run, run counts, and the trace a run continues.

use weft_core::{
    RunCursor, RunFilter, RunId, RunIndex, RunMeta, RunPage, RunStatus, RunSummary, StepId,
    StoreError, Timestamp,
};

use postgres::types::ToSql;

use crate::leases::NOW;
use crate::pool::Params;
use crate::sql::{backend, backend_run, from_sql_ts, from_sql_u64, run_id};
use crate::store::PostgresStore;

/// A workflow id read back from the database.
pub(crate) fn workflow_id_of(text: &str, run: &str) -> Result<StepId, StoreError> {
    StepId::new(text).map_err(|e| {
        StoreError::Backend(format!("run {run}: the stored workflow id is invalid: {e}"))
    })
}

impl RunIndex for PostgresStore {
    /// Keyset paging on the `runs_by_created` / `runs_by_status` indexes:
    /// `(created_at, run_id) < cursor`, newest first.
    fn runs(
        &self,
        filter: &RunFilter,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<RunPage, StoreError> {
        let ts = |t: Timestamp| i64::try_from(t.0).unwrap_or(i64::MAX);
        let status = filter.status.map(RunStatus::as_str);
        let workflow = filter.workflow.as_ref().map(StepId::as_str);
        let from = filter.created_from.map(ts);
        let before = filter.created_before.map(ts);
        let cursor = after.map(|c| (ts(c.created_at), c.run.as_str()));
        // One more than asked: whether there is a next page.
        let fetch = i64::try_from(limit.max(1).saturating_add(1)).unwrap_or(i64::MAX);

        // Only the filters that are set go into the statement, so that the
        // planner sees each shape as it is (each is prepared once per
        // connection).
        let mut sql = format!(
            "SELECT run_id, workflow_id, manifest, manifest_sha256, status, last_seq,
                    created_at, updated_at, workflow_digest,
                    CASE WHEN lease_expires_at > {NOW} THEN lease_owner END
             FROM runs WHERE true"
        );
        let mut clauses: Vec<(&str, &(dyn ToSql + Sync))> = Vec::new();
        if let Some(status) = &status {
            clauses.push((" AND status = ?", status));
        }
        if let Some(workflow) = &workflow {
            clauses.push((" AND workflow_id = ?", workflow));
        }
        if let Some(from) = &from {
            clauses.push((" AND created_at >= ?", from));
        }
        if let Some(before) = &before {
            clauses.push((" AND created_at < ?", before));
        }
        if let Some((at, run)) = &cursor {
            clauses.push((" AND (created_at, run_id) < (?", at));
            clauses.push((", ?::text)", run));
        }
        clauses.push((" ORDER BY created_at DESC, run_id DESC LIMIT ?", &fetch));
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(clauses.len());
        for (clause, value) in clauses {
            params.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", params.len())));
        }
        let params: &Params<'_> = &params;
        let rows = self.retrying("list runs", None, |conn| {
            conn.session()
                .query(&sql, params)
                .map_err(backend("list runs"))
        })?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in rows {
            let run: &str = row.get(0);
            let stored_status: &str = row.get(4);
            let status = RunStatus::parse(stored_status).ok_or_else(|| {
                StoreError::Backend(format!(
                    "run {run}: the stored status `{stored_status}` is unknown"
                ))
            })?;
            runs.push(RunSummary {
                status,
                events: from_sql_u64(row.get(5), "last sequence number", run)?,
                created_at: from_sql_ts(row.get(6), "creation time", run)?,
                updated_at: from_sql_ts(row.get(7), "update time", run)?,
                held_by: row.get(9),
                meta: RunMeta {
                    run_id: run_id(run)?,
                    workflow_id: workflow_id_of(row.get(1), run)?,
                    manifest: row.get(2),
                    manifest_sha256: row.get(3),
                    workflow_digest: row.get(8),
                },
            });
        }
        Ok(page(runs, fetch))
    }

    fn holder(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        let id = run.as_str();
        let row = self.retrying("read the run's lease holder", Some(id), |conn| {
            conn.session()
                .query_opt(
                    &format!(
                        "SELECT lease_owner FROM runs
                         WHERE run_id = $1 AND lease_expires_at > {NOW}"
                    ),
                    &[&id],
                )
                .map_err(backend_run("read the run's lease holder", id))
        })?;
        Ok(row.and_then(|row| row.get(0)))
    }

    fn put_trace(&self, run: &RunId, traceparent: &str) -> Result<(), StoreError> {
        let id = run.as_str();
        self.retrying("record the run's trace", Some(id), |conn| {
            conn.session()
                .execute(
                    "INSERT INTO run_traces (run_id, traceparent) VALUES ($1, $2)
                     ON CONFLICT (run_id) DO NOTHING",
                    &[&id, &traceparent],
                )
                .map(drop)
                .map_err(backend_run("record the run's trace", id))
        })
    }

    fn trace(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        let id = run.as_str();
        let row = self.retrying("read the run's trace", Some(id), |conn| {
            conn.session()
                .query_opt(
                    "SELECT traceparent FROM run_traces WHERE run_id = $1",
                    &[&id],
                )
                .map_err(backend_run("read the run's trace", id))
        })?;
        Ok(row.map(|row| row.get(0)))
    }

    fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let rows = self.retrying("count runs", None, |conn| {
            conn.session()
                .query("SELECT status, count(*) FROM runs GROUP BY status", &[])
                .map_err(backend("count runs"))
        })?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            let status: &str = row.get(0);
            let count: i64 = row.get(1);
            let status = RunStatus::parse(status).ok_or_else(|| {
                StoreError::Backend(format!("a stored run has an unknown status `{status}`"))
            })?;
            counts.push((status, u64::try_from(count).unwrap_or_default()));
        }
        counts.sort_by_key(|(status, _)| *status);
        Ok(counts)
    }
}

/// A page of `runs` fetched with one more than the page holds (`fetched`).
fn page(mut runs: Vec<RunSummary>, fetched: i64) -> RunPage {
    let more = i64::try_from(runs.len()).unwrap_or(i64::MAX) >= fetched;
    if more {
        runs.pop();
    }
    let next = more.then(|| runs.last()).flatten().map(|last| RunCursor {
        created_at: last.created_at,
        run: last.meta.run_id.clone(),
    });
    RunPage { runs, next }
}
