//! The rows of `runs` and `events`: reading and writing them inside a
//! transaction the caller holds.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use weft_core::{
    Event, RunCursor, RunFilter, RunMeta, RunPage, RunStatus, RunSummary, StepId, StoreError,
    Timestamp,
};

use crate::encode::EncodedEvent;
use crate::leases::NOW_US;
use crate::sql::{backend, backend_run, from_sql_ts, from_sql_u64, run_id};

/// The run's `last_seq`, or `None` when there is no such run.
pub(crate) fn last_seq_of(conn: &Connection, run: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached("SELECT last_seq FROM runs WHERE run_id = ?1")
        .and_then(|mut s| s.query_row([run], |row| row.get(0)).optional())
        .map_err(backend_run("read the run's last sequence number", run))
}

/// Inserts `events` as `after + 1 ..`.
pub(crate) fn write_events(
    tx: &Transaction<'_>,
    run: &str,
    after: i64,
    events: &[EncodedEvent],
) -> Result<(), StoreError> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO events (run_id, seq, type, at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(backend_run("insert events", run))?;
    for (seq, event) in (after + 1..).zip(events) {
        insert
            .execute(params![run, seq, event.name, event.at, event.payload])
            .map_err(backend_run("insert events", run))?;
    }
    Ok(())
}

/// Reads and parses the events `after + 1 ..= last_seq` of `run` (the
/// run's last event, or the last of a page), checking that none is missing.
pub(crate) fn read_events(
    tx: &Transaction<'_>,
    run: &str,
    after: i64,
    last_seq: i64,
) -> Result<Vec<Event>, StoreError> {
    let err = || backend_run("read events", run);
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, payload FROM events WHERE run_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
        )
        .map_err(err())?;
    let mut rows = stmt.query(params![run, after, last_seq]).map_err(err())?;
    let mut events = Vec::new();
    let mut next = after + 1;
    while let Some(row) = rows.next().map_err(err())? {
        let seq: i64 = row.get(0).map_err(err())?;
        if seq != next {
            return Err(StoreError::Backend(format!(
                "run {run}: the event log is missing event {next} (the next stored one is {seq})"
            )));
        }
        let payload = row
            .get_ref(1)
            .and_then(|v| Ok(v.as_str()?))
            .map_err(err())?;
        let event = serde_json::from_str(payload).map_err(|e| {
            StoreError::Backend(format!("run {run}: stored event {seq} does not parse: {e}"))
        })?;
        events.push(event);
        next += 1;
    }
    if next - 1 != last_seq {
        return Err(StoreError::Backend(format!(
            "run {run}: the run's last event is {last_seq} but the log ends at {}",
            next - 1
        )));
    }
    Ok(events)
}

pub(crate) fn workflow_id_of(text: &str, run: &str) -> Result<StepId, StoreError> {
    StepId::new(text).map_err(|e| {
        StoreError::Backend(format!("run {run}: the stored workflow id is invalid: {e}"))
    })
}

/// Up to `limit` runs passing `filter`, newest first (creation time, then
/// run id, descending), after `after` (keyset paging on the
/// `runs_by_created` / `runs_by_status` indexes).
pub(crate) fn runs(
    conn: &Connection,
    filter: &RunFilter,
    after: Option<&RunCursor>,
    limit: usize,
) -> Result<RunPage, StoreError> {
    let err = || backend("list runs");
    let mut sql = format!(
        "SELECT run_id, workflow_id, manifest, manifest_sha256, status, last_seq,
                created_at, updated_at, workflow_digest,
                CASE WHEN lease_expires_at > {NOW_US} THEN lease_owner END
         FROM runs WHERE 1 = 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(status) = filter.status {
        arg(
            &mut sql,
            " AND status = ?",
            status.as_str().to_owned().into(),
        );
    }
    if let Some(workflow) = &filter.workflow {
        arg(
            &mut sql,
            " AND workflow_id = ?",
            workflow.as_str().to_owned().into(),
        );
    }
    let ts = |t: Timestamp| i64::try_from(t.0).unwrap_or(i64::MAX);
    if let Some(from) = filter.created_from {
        arg(&mut sql, " AND created_at >= ?", ts(from).into());
    }
    if let Some(before) = filter.created_before {
        arg(&mut sql, " AND created_at < ?", ts(before).into());
    }
    if let Some(after) = after {
        arg(
            &mut sql,
            " AND (created_at, run_id) < (?",
            ts(after.created_at).into(),
        );
        arg(&mut sql, ", ?)", after.run.as_str().to_owned().into());
    }
    // One more than asked: whether there is a next page.
    let limit = i64::try_from(limit.max(1).saturating_add(1)).unwrap_or(i64::MAX);
    arg(
        &mut sql,
        " ORDER BY created_at DESC, run_id DESC LIMIT ?",
        limit.into(),
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(err())?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            Ok(RawRun {
                run_id: row.get(0)?,
                workflow_id: row.get(1)?,
                manifest: row.get(2)?,
                manifest_sha256: row.get(3)?,
                status: row.get(4)?,
                last_seq: row.get(5)?,
                created_at: row.get(6)?,
                updated_at: row.get(7)?,
                workflow_digest: row.get(8)?,
                held_by: row.get(9)?,
            })
        })
        .map_err(err())?;
    let mut runs = Vec::new();
    for raw in rows {
        runs.push(raw.map_err(err())?.decode()?);
    }
    Ok(page(runs, limit))
}

/// A page of `runs` fetched with one more than the page holds (`fetched`).
pub(crate) fn page(mut runs: Vec<RunSummary>, fetched: i64) -> RunPage {
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

/// A `runs` row as stored.
struct RawRun {
    run_id: String,
    workflow_id: String,
    manifest: String,
    manifest_sha256: String,
    status: String,
    last_seq: i64,
    created_at: i64,
    updated_at: i64,
    workflow_digest: Option<String>,
    held_by: Option<String>,
}

impl RawRun {
    fn decode(self) -> Result<RunSummary, StoreError> {
        let run = self.run_id.as_str();
        let status = RunStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Backend(format!(
                "run {run}: the stored status `{}` is unknown",
                self.status
            ))
        })?;
        Ok(RunSummary {
            status,
            events: from_sql_u64(self.last_seq, "last sequence number", run)?,
            created_at: from_sql_ts(self.created_at, "creation time", run)?,
            updated_at: from_sql_ts(self.updated_at, "update time", run)?,
            held_by: self.held_by,
            meta: RunMeta {
                run_id: run_id(run)?,
                workflow_id: workflow_id_of(&self.workflow_id, run)?,
                manifest: self.manifest,
                manifest_sha256: self.manifest_sha256,
                workflow_digest: self.workflow_digest,
            },
        })
    }
}
