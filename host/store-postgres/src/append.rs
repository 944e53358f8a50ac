//! Appending to runs inside a transaction: the fencing checks of each
//! append against its run's locked row, then every event of every run in
//! ONE statement (a multi-row `INSERT` from arrays, with the runs' rows
//! updated in the same statement).

use std::collections::HashMap;

use postgres::GenericClient;
use weft_core::{Append, RunStatus, StoreError};

use crate::encode::EncodedEvent;
use crate::leases::{NOW, RunHead};
use crate::pool::Session;
use crate::sql::{backend, backend_run, from_sql_u64, not_found, to_sql_u64};

/// One append, encoded before a connection is taken.
pub(crate) struct Encoded<'a> {
    /// The append.
    pub(crate) append: &'a Append<'a>,
    /// Its expected sequence number as a SQL integer.
    pub(crate) expected: i64,
    /// Its events, serialized.
    pub(crate) events: Vec<EncodedEvent>,
}

/// Locks the rows of `runs` (in run id order, so that two transactions
/// locking overlapping sets never deadlock) and reads their heads; a run
/// that does not exist is absent from the map.
pub(crate) fn lock_heads<C: GenericClient>(
    tx: &mut Session<'_, C>,
    runs: &[&str],
) -> Result<HashMap<String, RunHead>, StoreError> {
    let rows = tx
        .query(
            "SELECT run_id, last_seq, lease_epoch FROM runs
             WHERE run_id = ANY($1::text[]) ORDER BY run_id FOR UPDATE",
            &[&runs],
        )
        .map_err(|e| match runs.first() {
            Some(run) => backend_run("append: lock the runs", run)(e),
            None => backend("append: lock the runs")(e),
        })?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let head = RunHead {
                last_seq: row.get(1),
                epoch: row.get(2),
            };
            (row.get(0), head)
        })
        .collect())
}

/// What a batch changes of one run's row.
struct Change {
    last_seq: i64,
    updated_at: i64,
    /// The status after the batch, if it changes it.
    status: Option<RunStatus>,
    /// Whether the run left `running` in the batch (its lease goes).
    release: bool,
    wake: Option<i64>,
}

/// Checks and writes `appends` in order against `heads` (the locked rows:
/// see [`lock_heads`]), so a batch may append to one run twice if the
/// second append's `expected` counts the first one's events. An append
/// without events only checks `expected`. The first append that fails
/// fails the whole: the caller's transaction then rolls back.
///
/// A run left `running` without a live lease by the batch (appended to
/// under a lease that expired or was released) is claimable: the same
/// statement then notifies `channel` (a wake-up hint, sent at commit).
pub(crate) fn append_all<C: GenericClient>(
    tx: &mut Session<'_, C>,
    heads: &mut HashMap<String, RunHead>,
    appends: &[Encoded<'_>],
    channel: &str,
) -> Result<(), StoreError> {
    let total: usize = appends.iter().map(|a| a.events.len()).sum();
    let (mut runs, mut seqs, mut types, mut ats, mut payloads, mut epochs) = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    let mut changes: Vec<(&str, Change)> = Vec::new();
    for Encoded {
        append,
        expected,
        events,
    } in appends
    {
        let run = append.run.as_str();
        let head = heads.get_mut(run).ok_or_else(|| not_found(run))?;
        let epoch = to_sql_u64(append.epoch, "lease epoch", run)?;
        if head.epoch != epoch {
            return Err(StoreError::Fenced {
                run: run.to_owned(),
                epoch: append.epoch,
                current: from_sql_u64(head.epoch, "lease epoch", run)?,
            });
        }
        if head.last_seq != *expected {
            return Err(StoreError::Conflict {
                run: run.to_owned(),
                expected: append.expected,
                actual: from_sql_u64(head.last_seq, "last sequence number", run)?,
            });
        }
        let Some(last) = events.last() else {
            continue;
        };
        for (seq, event) in (head.last_seq + 1..).zip(events) {
            runs.push(run);
            seqs.push(seq);
            types.push(event.name);
            ats.push(event.at);
            payloads.push(event.payload.as_str());
            epochs.push(epoch);
        }
        head.last_seq = to_sql_u64(
            append.expected.saturating_add(events.len() as u64),
            "sequence number",
            run,
        )?;
        let status = events.iter().rev().find_map(|e| e.status);
        let wake = append
            .wake
            .map(|w| crate::sql::to_sql_ts(w, run))
            .transpose()?;
        let release = status.is_some_and(|s| s != RunStatus::Running);
        match changes.iter_mut().find(|(r, _)| *r == run) {
            Some((_, change)) => {
                change.last_seq = head.last_seq;
                change.updated_at = last.at;
                change.status = status.or(change.status);
                change.release |= release;
                change.wake = wake;
            }
            None => changes.push((
                run,
                Change {
                    last_seq: head.last_seq,
                    updated_at: last.at,
                    status,
                    release,
                    wake,
                },
            )),
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    let changed: Vec<&str> = changes.iter().map(|(run, _)| *run).collect();
    let last_seqs: Vec<i64> = changes.iter().map(|(_, c)| c.last_seq).collect();
    let updated: Vec<i64> = changes.iter().map(|(_, c)| c.updated_at).collect();
    let statuses: Vec<Option<&str>> = changes
        .iter()
        .map(|(_, c)| c.status.map(RunStatus::as_str))
        .collect();
    let wakes: Vec<Option<i64>> = changes.iter().map(|(_, c)| c.wake).collect();
    let releases: Vec<bool> = changes.iter().map(|(_, c)| c.release).collect();
    // One statement, one round trip, whatever the number of runs and
    // events: the events go in from arrays, the runs' rows are updated by
    // the same statement, and so is the hint sent.
    tx.execute(
        &format!(
            "WITH written AS (
                 INSERT INTO events (run_id, seq, type, at, payload, epoch)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[],
                                      $5::text[], $13::bigint[])
             ), changed AS (
                 UPDATE runs AS r SET
                     last_seq = c.last_seq,
                     updated_at = c.updated_at,
                     status = COALESCE(c.status, r.status),
                     wake_at = c.wake_at,
                     lease_owner = CASE WHEN c.release THEN NULL ELSE r.lease_owner END,
                     lease_expires_at = CASE WHEN c.release THEN NULL ELSE r.lease_expires_at END
                 FROM UNNEST($6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[],
                             $11::bool[])
                     AS c (run_id, last_seq, updated_at, status, wake_at, release)
                 WHERE r.run_id = c.run_id
                 RETURNING r.status = 'running'
                     AND (r.lease_owner IS NULL OR r.lease_expires_at <= {NOW}) AS claimable
             )
             SELECT pg_notify($12, '') FROM changed WHERE claimable LIMIT 1"
        ),
        &[
            &runs, &seqs, &types, &ats, &payloads, &changed, &last_seqs, &updated, &statuses,
            &wakes, &releases, &channel, &epochs,
        ],
    )
    .map(drop)
    .map_err(backend_run("append: write the events", runs[0]))
}
