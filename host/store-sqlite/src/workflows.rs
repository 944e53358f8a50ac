//! Locked workflows (`workflows`) and the runs pinned to them (`run_pins`):
//! see `migrations/0002_workflow_locks.sql`.
//!
//! The store treats a lock as opaque text under its digest: the CLI makes,
//! hashes and parses locks (`weft_manifest::WorkflowLock`).

use rusqlite::{OptionalExtension as _, Transaction, TransactionBehavior, params};
use weft_core::{Deployment, Pin, RunId, RunMeta, StepId, StoreError, Timestamp, WorkflowRegistry};

use crate::rows::last_seq_of;
use crate::sql::{
    backend, backend_run, from_sql_ts, from_sql_u64, is_foreign_key_violation, not_found,
    to_sql_ts, to_sql_u64,
};
use crate::store::SqliteStore;

impl WorkflowRegistry for SqliteStore {
    fn put_workflow(&self, digest: &str, lock: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO workflows (digest, lock) VALUES (?1, ?2) ON CONFLICT (digest) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![digest, lock]))
        .map(drop)
        .map_err(backend("put_workflow"))
    }

    /// The workflow lock stored under `digest`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when there is none (a run's pin always names
    /// a stored lock) or it cannot be read.
    fn workflow(&self, digest: &str) -> Result<String, StoreError> {
        let conn = self.lock();
        conn.prepare_cached("SELECT lock FROM workflows WHERE digest = ?1")
            .and_then(|mut s| s.query_row([digest], |row| row.get(0)).optional())
            .map_err(backend("read a workflow lock"))?
            .ok_or_else(|| StoreError::Backend(format!("no workflow lock `{digest}` in the store")))
    }

    /// Pins `run` to the stored lock `digest` from now on, if its log still
    /// ends at event `expected` (the events the caller checked against the
    /// new workflow).
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] when the run has
    /// other events than `expected`; [`StoreError::Backend`] when no lock
    /// `digest` is stored, and other backend errors.
    fn repin(
        &self,
        run: &RunId,
        expected: u64,
        digest: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let id = run.as_str();
        let expected_sql = to_sql_u64(expected, "expected sequence number", id)?;
        let at = to_sql_ts(at, id)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend_run("repin: begin", id))?;
        let actual = last_seq_of(&tx, id)?.ok_or_else(|| not_found(id))?;
        if actual != expected_sql {
            return Err(StoreError::Conflict {
                run: id.to_owned(),
                expected,
                actual: from_sql_u64(actual, "last sequence number", id)?,
            });
        }
        crate::leases::refuse_if_held(&tx, id)?;
        tx.prepare_cached("UPDATE runs SET workflow_digest = ?2 WHERE run_id = ?1")
            .and_then(|mut s| s.execute(params![id, digest]))
            .map_err(|e| unknown_lock(e, id, digest, "repin: update the run"))?;
        insert_pin(&tx, id, expected_sql, digest, at)?;
        tx.commit().map_err(backend_run("repin: commit", id))
    }

    /// The pins of `run`, oldest first (none for a run recorded before weft
    /// pinned runs).
    ///
    /// # Errors
    /// Backend errors.
    fn pins(&self, run: &RunId) -> Result<Vec<Pin>, StoreError> {
        let id = run.as_str();
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT seq, digest, at FROM run_pins WHERE run_id = ?1 ORDER BY seq")
            .map_err(backend_run("read the run's pins", id))?;
        let rows = stmt
            .query_map([id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(backend_run("read the run's pins", id))?;
        let mut pins = Vec::new();
        for row in rows {
            let (seq, digest, at) = row.map_err(backend_run("read the run's pins", id))?;
            pins.push(Pin {
                seq: from_sql_u64(seq, "pin sequence number", id)?,
                digest,
                at: from_sql_ts(at, "pin time", id)?,
            });
        }
        Ok(pins)
    }

    fn deploy(&self, workflow: &StepId, digest: &str, at: Timestamp) -> Result<bool, StoreError> {
        let id = workflow.as_str();
        let at = to_sql_ts(at, id)?;
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO deployments (workflow_id, digest, deployed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (workflow_id, digest) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![id, digest, at]))
        .map(|inserted| inserted == 1)
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::Backend(format!(
                    "workflow {id}: no workflow lock `{digest}` in the store (store it first)"
                ))
            } else {
                backend("deploy")(e)
            }
        })
    }

    fn deployments(&self, workflow: Option<&StepId>) -> Result<Vec<Deployment>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT workflow_id, digest, deployed_at FROM deployments
                 WHERE ?1 IS NULL OR workflow_id = ?1
                 ORDER BY deployed_at DESC, digest DESC",
            )
            .map_err(backend("list deployments"))?;
        let rows = stmt
            .query_map([workflow.map(StepId::as_str)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(backend("list deployments"))?;
        let mut listed = Vec::new();
        for row in rows {
            let (id, digest, at) = row.map_err(backend("list deployments"))?;
            listed.push(Deployment {
                workflow: StepId::new(&id).map_err(|e| {
                    StoreError::Backend(format!("a stored deployment's workflow id `{id}`: {e}"))
                })?,
                at: from_sql_ts(at, "deploy time", &id)?,
                digest,
            });
        }
        Ok(listed)
    }
}

/// Records a pin of `run` (replacing one at the same sequence number: a
/// second re-pin before any new event supersedes the first).
pub(crate) fn insert_pin(
    tx: &Transaction<'_>,
    run: &str,
    seq: i64,
    digest: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO run_pins (run_id, seq, digest, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (run_id, seq) DO UPDATE SET digest = excluded.digest, at = excluded.at",
    )
    .and_then(|mut s| s.execute(params![run, seq, digest, at]))
    .map(drop)
    .map_err(|e| unknown_lock(e, run, digest, "record the run's pin"))
}

/// A run row naming a lock that is not stored: the caller forgot
/// [`WorkflowRegistry::put_workflow`].
pub(crate) fn unknown_workflow(e: rusqlite::Error, meta: &RunMeta, op: &'static str) -> StoreError {
    match &meta.workflow_digest {
        Some(digest) => unknown_lock(e, meta.run_id.as_str(), digest, op),
        None => backend_run(op, meta.run_id.as_str())(e),
    }
}

fn unknown_lock(e: rusqlite::Error, run: &str, digest: &str, op: &'static str) -> StoreError {
    if is_foreign_key_violation(&e) {
        StoreError::Backend(format!(
            "run {run}: no workflow lock `{digest}` in the store (store it first)"
        ))
    } else {
        backend_run(op, run)(e)
    }
}
