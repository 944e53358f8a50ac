//! Leases and wake times on the `runs` table (schema version 3): granting,
//! renewing and releasing a run's lease, the fencing check of an append,
//! and the query for runs a recovering host may take.
//!
//! Expiry is judged by the database's clock ([`NOW_US`]): SQLite's
//! `julianday('now')`, which for a file that only one machine can open is
//! that machine's clock, read inside the transaction that decides.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use weft_core::{Claimable, Lease, Owner, RunId, StoreError, Takeover, Timestamp};

use crate::sql::{backend, backend_run, from_sql_ts, from_sql_u64, not_found, run_id};

/// The database's clock in microseconds since the Unix epoch (millisecond
/// precision). Stable within one statement.
pub(crate) const NOW_US: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

/// A lease's time to live in microseconds, as a SQL integer.
pub(crate) fn ttl_us(owner: &Owner) -> i64 {
    i64::try_from(owner.ttl.as_micros()).unwrap_or(i64::MAX / 4)
}

/// What an append checks of its run, read in the append's transaction.
pub(crate) struct RunHead {
    /// The sequence number of the last event.
    pub last_seq: i64,
    /// The current lease epoch.
    pub epoch: i64,
    /// The stored wake time.
    pub wake_at: Option<i64>,
}

/// The run's head, or `None` when there is no such run.
pub(crate) fn head_of(conn: &Connection, run: &str) -> Result<Option<RunHead>, StoreError> {
    conn.prepare_cached("SELECT last_seq, lease_epoch, wake_at FROM runs WHERE run_id = ?1")
        .and_then(|mut s| {
            s.query_row([run], |row| {
                Ok(RunHead {
                    last_seq: row.get(0)?,
                    epoch: row.get(1)?,
                    wake_at: row.get(2)?,
                })
            })
            .optional()
        })
        .map_err(backend_run("read the run's head", run))
}

/// Grants `owner` the lease on `run` if `takeover` allows (see
/// [`weft_core::EventStore::acquire`]), inside the caller's write
/// transaction.
pub(crate) fn acquire(
    tx: &Transaction<'_>,
    run: &RunId,
    owner: &Owner,
    takeover: Takeover<'_>,
) -> Result<Lease, StoreError> {
    let id = run.as_str();
    let row = tx
        .prepare_cached(&format!(
            "SELECT lease_owner, lease_epoch, lease_expires_at - {NOW_US}
             FROM runs WHERE run_id = ?1"
        ))
        .and_then(|mut s| {
            s.query_row([id], |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .optional()
        })
        .map_err(backend_run("acquire: read the lease", id))?;
    let (holder, epoch, remaining) = row.ok_or_else(|| not_found(id))?;
    if let Some(holder) = holder
        && holder != owner.id
    {
        let remaining = remaining.unwrap_or(0);
        let allowed = match takeover {
            Takeover::IfFree => false,
            Takeover::From(gone) => gone == holder,
            Takeover::Force => true,
        };
        if remaining > 0 && !allowed {
            return Err(StoreError::Leased {
                run: id.to_owned(),
                owner: holder,
                remaining_ms: u64::try_from(remaining / 1000).unwrap_or(0),
            });
        }
    }
    let epoch = epoch.saturating_add(1);
    tx.prepare_cached(&format!(
        "UPDATE runs SET lease_owner = ?2, lease_epoch = ?3, lease_expires_at = {NOW_US} + ?4
         WHERE run_id = ?1"
    ))
    .and_then(|mut s| s.execute(params![id, owner.id, epoch, ttl_us(owner)]))
    .map_err(backend_run("acquire: grant the lease", id))?;
    Ok(Lease {
        run: run.clone(),
        owner: owner.id.clone(),
        epoch: from_sql_u64(epoch, "lease epoch", id)?,
    })
}

/// [`StoreError::Leased`] when a live lease holds `run`: a write that does
/// not go through the log (a repin) must not change a run another process
/// drives.
pub(crate) fn refuse_if_held(tx: &Transaction<'_>, run: &str) -> Result<(), StoreError> {
    let held = tx
        .prepare_cached(&format!(
            "SELECT lease_owner, lease_expires_at - {NOW_US} FROM runs
             WHERE run_id = ?1 AND lease_owner IS NOT NULL AND lease_expires_at > {NOW_US}"
        ))
        .and_then(|mut s| {
            s.query_row([run], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .optional()
        })
        .map_err(backend_run("read the lease", run))?;
    match held {
        Some((owner, remaining)) => Err(StoreError::Leased {
            run: run.to_owned(),
            owner,
            remaining_ms: u64::try_from(remaining / 1000).unwrap_or(0),
        }),
        None => Ok(()),
    }
}

/// Extends every lease of `owner` and lists what it holds, in the caller's
/// write transaction.
pub(crate) fn renew(tx: &Transaction<'_>, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError> {
    tx.prepare_cached(&format!(
        "UPDATE runs SET lease_expires_at = {NOW_US} + ?2 WHERE lease_owner = ?1"
    ))
    .and_then(|mut s| s.execute(params![owner.id, ttl_us(owner)]))
    .map_err(backend("renew leases"))?;
    let mut stmt = tx
        .prepare_cached("SELECT run_id, lease_epoch FROM runs WHERE lease_owner = ?1")
        .map_err(backend("renew leases: list them"))?;
    let rows = stmt
        .query_map([&owner.id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(backend("renew leases: list them"))?;
    let mut held = Vec::new();
    for row in rows {
        let (run, epoch) = row.map_err(backend("renew leases: list them"))?;
        let epoch = from_sql_u64(epoch, "lease epoch", &run)?;
        held.push((run_id(&run)?, epoch));
    }
    Ok(held)
}

/// Clears `lease` if it is still the run's.
pub(crate) fn release(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let id = lease.run.as_str();
    let epoch = crate::sql::to_sql_u64(lease.epoch, "lease epoch", id)?;
    conn.prepare_cached(
        "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE run_id = ?1 AND lease_epoch = ?2 AND lease_owner = ?3",
    )
    .and_then(|mut s| s.execute(params![id, epoch, lease.owner]))
    .map(drop)
    .map_err(backend_run("release the lease", id))
}

/// Running runs without a live lease that need attention by `horizon`.
pub(crate) fn claimable(
    conn: &Connection,
    horizon: Timestamp,
) -> Result<Vec<Claimable>, StoreError> {
    let horizon = i64::try_from(horizon.0).unwrap_or(i64::MAX);
    let err = || backend("claimable runs");
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT run_id, wake_at FROM runs
             WHERE status = 'running' AND (wake_at IS NULL OR wake_at <= ?1)
               AND (lease_owner IS NULL OR lease_expires_at <= {NOW_US})
             ORDER BY wake_at, run_id"
        ))
        .map_err(err())?;
    let rows = stmt
        .query_map([horizon], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
        })
        .map_err(err())?;
    let mut runs = Vec::new();
    for row in rows {
        let (run, wake) = row.map_err(err())?;
        let wake = wake
            .map(|w| from_sql_ts(w, "wake time", &run))
            .transpose()?;
        runs.push(Claimable {
            run: run_id(&run)?,
            wake,
        });
    }
    Ok(runs)
}
