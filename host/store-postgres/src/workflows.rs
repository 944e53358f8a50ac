//! Locked workflows (`workflows`), the runs pinned to them (`run_pins`) and
//! deployed versions (`deployments`): [`WorkflowRegistry`].
//!
//! The store treats a lock as opaque text under its digest: the CLI makes,
//! hashes and parses locks (`weft_manifest::WorkflowLock`).

use postgres::GenericClient;
use weft_core::{Deployment, Pin, RunId, RunMeta, StepId, StoreError, Timestamp, WorkflowRegistry};

use crate::leases::lock_unheld;
use crate::pool::Session;
use crate::sql::{
    backend, backend_run, from_sql_ts, from_sql_u64, is_foreign_key_violation, not_found,
    to_sql_ts, to_sql_u64,
};
use crate::store::{PostgresStore, in_transaction};

impl WorkflowRegistry for PostgresStore {
    fn put_workflow(&self, digest: &str, lock: &str) -> Result<(), StoreError> {
        self.retrying("put_workflow", None, |conn| {
            conn.session()
                .execute(
                    "INSERT INTO workflows (digest, lock) VALUES ($1, $2)
                     ON CONFLICT (digest) DO NOTHING",
                    &[&digest, &lock],
                )
                .map(drop)
                .map_err(backend("put_workflow"))
        })
    }

    fn workflow(&self, digest: &str) -> Result<String, StoreError> {
        self.retrying("read a workflow lock", None, |conn| {
            conn.session()
                .query_opt("SELECT lock FROM workflows WHERE digest = $1", &[&digest])
                .map_err(backend("read a workflow lock"))
        })?
        .map(|row| row.get(0))
        .ok_or_else(|| StoreError::Backend(format!("no workflow lock `{digest}` in the store")))
    }

    /// Locks the run's row, checks its last event and that no live lease
    /// holds it, then re-pins it, in one transaction.
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
        self.retrying("repin", Some(id), |conn| {
            in_transaction(conn, "repin", id, |tx| {
                let (actual, held) = lock_unheld(tx, id)?.ok_or_else(|| not_found(id))?;
                if actual != expected_sql {
                    return Err(StoreError::Conflict {
                        run: id.to_owned(),
                        expected,
                        actual: from_sql_u64(actual, "last sequence number", id)?,
                    });
                }
                if let Some(leased) = held {
                    return Err(leased);
                }
                tx.execute(
                    "UPDATE runs SET workflow_digest = $2 WHERE run_id = $1",
                    &[&id, &digest],
                )
                .map_err(|e| unknown_lock(e, id, digest, "repin: update the run"))?;
                insert_pin(tx, id, expected_sql, digest, at)
            })
        })
    }

    fn pins(&self, run: &RunId) -> Result<Vec<Pin>, StoreError> {
        let id = run.as_str();
        let rows = self.retrying("read the run's pins", Some(id), |conn| {
            conn.session()
                .query(
                    "SELECT seq, digest, at FROM run_pins WHERE run_id = $1 ORDER BY seq",
                    &[&id],
                )
                .map_err(backend_run("read the run's pins", id))
        })?;
        rows.into_iter()
            .map(|row| {
                Ok(Pin {
                    seq: from_sql_u64(row.get(0), "pin sequence number", id)?,
                    digest: row.get(1),
                    at: from_sql_ts(row.get(2), "pin time", id)?,
                })
            })
            .collect()
    }

    fn deploy(&self, workflow: &StepId, digest: &str, at: Timestamp) -> Result<bool, StoreError> {
        let id = workflow.as_str();
        let at = to_sql_ts(at, id)?;
        // Retried after a lost connection like the other statements that
        // commit alone: deploying twice is deploying once (only the answer
        // "new" may then say no for a version the lost attempt recorded).
        self.retrying("deploy", None, |conn| {
            conn.session()
                .execute(
                    "INSERT INTO deployments (workflow_id, digest, deployed_at) VALUES ($1, $2, $3)
                     ON CONFLICT (workflow_id, digest) DO NOTHING",
                    &[&id, &digest, &at],
                )
                .map(|inserted| inserted == 1)
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        StoreError::Backend(format!(
                            "workflow {id}: no workflow lock `{digest}` in the store (store it \
                             first)"
                        ))
                    } else {
                        backend("deploy")(e)
                    }
                })
        })
    }

    fn deployments(&self, workflow: Option<&StepId>) -> Result<Vec<Deployment>, StoreError> {
        let rows = self.retrying("list deployments", None, |conn| {
            conn.session()
                .query(
                    "SELECT workflow_id, digest, deployed_at FROM deployments
                     WHERE $1::text IS NULL OR workflow_id = $1
                     ORDER BY deployed_at DESC, digest DESC",
                    &[&workflow.map(StepId::as_str)],
                )
                .map_err(backend("list deployments"))
        })?;
        rows.into_iter()
            .map(|row| {
                let id: &str = row.get(0);
                Ok(Deployment {
                    workflow: StepId::new(id).map_err(|e| {
                        StoreError::Backend(format!(
                            "a stored deployment's workflow id `{id}`: {e}"
                        ))
                    })?,
                    digest: row.get(1),
                    at: from_sql_ts(row.get(2), "deploy time", id)?,
                })
            })
            .collect()
    }
}

/// Records a pin of `run` (replacing one at the same sequence number: a
/// second re-pin before any new event supersedes the first).
pub(crate) fn insert_pin<C: GenericClient>(
    tx: &mut Session<'_, C>,
    run: &str,
    seq: i64,
    digest: &str,
    at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO run_pins (run_id, seq, digest, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_id, seq) DO UPDATE SET digest = excluded.digest, at = excluded.at",
        &[&run, &seq, &digest, &at],
    )
    .map(drop)
    .map_err(|e| unknown_lock(e, run, digest, "record the run's pin"))
}

/// A run row naming a lock that is not stored: the caller forgot
/// [`WorkflowRegistry::put_workflow`].
pub(crate) fn unknown_workflow(e: postgres::Error, meta: &RunMeta, op: &'static str) -> StoreError {
    match &meta.workflow_digest {
        Some(digest) => unknown_lock(e, meta.run_id.as_str(), digest, op),
        None => backend_run(op, meta.run_id.as_str())(e),
    }
}

fn unknown_lock(e: postgres::Error, run: &str, digest: &str, op: &'static str) -> StoreError {
    if is_foreign_key_violation(&e) {
        StoreError::Backend(format!(
            "run {run}: no workflow lock `{digest}` in the store (store it first)"
        ))
    } else {
        backend_run(op, run)(e)
    }
}
