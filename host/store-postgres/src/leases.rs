//! Leases and wake times on the `runs` table: granting, renewing and
//! releasing a run's lease, and the query for runs a recovering host may
//! take.
//!
//! Expiry is judged by the database's clock only ([`NOW`]), read inside the
//! statement that decides: hosts on several machines with clocks that
//! disagree still agree on whether a lease is live.

use postgres::GenericClient;
use weft_core::{Claimable, Lease, Owner, RunId, StoreError, Takeover, Timestamp};

use crate::pool::Session;
use crate::sql::{backend, backend_run, from_sql_ts, from_sql_u64, not_found, run_id, to_sql_u64};

/// The database's clock. `clock_timestamp()`, not `now()`: `now()` is the
/// start of the transaction, which may have waited for a row lock.
pub(crate) const NOW: &str = "clock_timestamp()";

/// The longest lease granted (a `timestamptz` ends in the year 294276; a
/// ttl of `Duration::MAX` must not overflow it): 100 years.
const MAX_TTL_US: i64 = 100 * 366 * 86_400 * 1_000_000;

/// A lease's time to live in microseconds, as a SQL integer.
pub(crate) fn ttl_us(owner: &Owner) -> i64 {
    i64::try_from(owner.ttl.as_micros()).map_or(MAX_TTL_US, |us| us.min(MAX_TTL_US))
}

/// What an append checks of its run and what it changes, read in the
/// append's transaction with the run's row locked.
#[derive(Debug, Clone)]
pub(crate) struct RunHead {
    /// The sequence number of the last event.
    pub(crate) last_seq: i64,
    /// The current lease epoch.
    pub(crate) epoch: i64,
}

/// Grants `owner` the lease on `run` if `takeover` allows (see
/// [`weft_core::EventStore::acquire`]), inside the caller's transaction,
/// with the run's row locked until it ends. Returns the lease and the
/// run's head (with the new epoch).
pub(crate) fn acquire<C: GenericClient>(
    tx: &mut Session<'_, C>,
    run: &RunId,
    owner: &Owner,
    takeover: Takeover<'_>,
) -> Result<(Lease, RunHead), StoreError> {
    let id = run.as_str();
    let row = tx
        .query_opt(
            &format!(
                "SELECT lease_owner, lease_epoch, last_seq,
                        (extract(epoch FROM lease_expires_at - {NOW}) * 1000000)::bigint
                 FROM runs WHERE run_id = $1 FOR UPDATE"
            ),
            &[&id],
        )
        .map_err(backend_run("acquire: read the lease", id))?
        .ok_or_else(|| not_found(id))?;
    let holder: Option<String> = row.get(0);
    let epoch: i64 = row.get(1);
    let last_seq: i64 = row.get(2);
    let remaining_us: Option<i64> = row.get(3);
    if let Some(holder) = holder
        && holder != owner.id
    {
        let remaining = remaining_us.unwrap_or(0);
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
    tx.execute(
        &format!(
            "UPDATE runs SET lease_owner = $2, lease_epoch = $3,
                 lease_expires_at = {NOW} + $4::bigint * interval '1 microsecond'
             WHERE run_id = $1"
        ),
        &[&id, &owner.id, &epoch, &ttl_us(owner)],
    )
    .map_err(backend_run("acquire: grant the lease", id))?;
    let lease = Lease {
        run: run.clone(),
        owner: owner.id.clone(),
        epoch: from_sql_u64(epoch, "lease epoch", id)?,
    };
    Ok((lease, RunHead { last_seq, epoch }))
}

/// Extends every lease of `owner` and lists what it holds, in one
/// statement.
pub(crate) fn renew<C: GenericClient>(
    db: &mut Session<'_, C>,
    owner: &Owner,
) -> Result<Vec<(RunId, u64)>, StoreError> {
    let rows = db
        .query(
            &format!(
                "UPDATE runs SET lease_expires_at = {NOW} + $2::bigint * interval '1 microsecond'
                 WHERE lease_owner = $1
                 RETURNING run_id, lease_epoch"
            ),
            &[&owner.id, &ttl_us(owner)],
        )
        .map_err(backend("renew leases"))?;
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        let run: &str = row.get(0);
        let epoch = from_sql_u64(row.get(1), "lease epoch", run)?;
        held.push((run_id(run)?, epoch));
    }
    Ok(held)
}

/// Clears each of `leases` that is still its run's, in one statement,
/// which notifies `channel` (a wake-up hint, sent at commit) if a run it
/// released is running: it is claimable now, or at its wake time.
/// Idempotent: a second release changes nothing.
pub(crate) fn release<C: GenericClient>(
    db: &mut Session<'_, C>,
    leases: &[Lease],
    channel: &str,
) -> Result<(), StoreError> {
    let Some(first) = leases.first() else {
        return Ok(());
    };
    let mut runs = Vec::with_capacity(leases.len());
    let mut epochs = Vec::with_capacity(leases.len());
    let mut owners = Vec::with_capacity(leases.len());
    for lease in leases {
        let run = lease.run.as_str();
        epochs.push(to_sql_u64(lease.epoch, "lease epoch", run)?);
        runs.push(run);
        owners.push(lease.owner.as_str());
    }
    db.execute(
        "WITH released AS (
             UPDATE runs AS r SET lease_owner = NULL, lease_expires_at = NULL
             FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS l (run_id, epoch, owner)
             WHERE r.run_id = l.run_id AND r.lease_epoch = l.epoch AND r.lease_owner = l.owner
             RETURNING r.status
         )
         SELECT pg_notify($4, '') FROM released WHERE status = 'running' LIMIT 1",
        &[&runs, &epochs, &owners, &channel],
    )
    .map(drop)
    .map_err(backend_run("release the lease", first.run.as_str()))
}

/// [`StoreError::Leased`] when a live lease holds `run`: a write that does
/// not go through the log (a repin) must not change a run another process
/// drives. Reads and locks the run's row in the caller's transaction;
/// returns its last sequence number (`None`: no such run).
pub(crate) fn lock_unheld<C: GenericClient>(
    tx: &mut Session<'_, C>,
    run: &str,
) -> Result<Option<(i64, Option<StoreError>)>, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT last_seq, lease_owner,
                        (extract(epoch FROM lease_expires_at - {NOW}) * 1000000)::bigint
                 FROM runs WHERE run_id = $1 FOR UPDATE"
            ),
            &[&run],
        )
        .map_err(backend_run("read the lease", run))?;
    Ok(row.map(|row| {
        let last_seq: i64 = row.get(0);
        let owner: Option<String> = row.get(1);
        let remaining: i64 = row.get::<_, Option<i64>>(2).unwrap_or(0);
        let held = owner
            .filter(|_| remaining > 0)
            .map(|owner| StoreError::Leased {
                run: run.to_owned(),
                owner,
                remaining_ms: u64::try_from(remaining / 1000).unwrap_or(0),
            });
        (last_seq, held)
    }))
}

/// Running runs without a live lease that need attention by `horizon`,
/// earliest wake first (now first): one range of the `runs_claimable`
/// index.
///
/// A plain read, not a claim: taking a run is [`acquire`], whose row lock
/// and lease check make it safe for any number of hosts to read the same
/// list and race for the same runs (one wins, the others get
/// [`StoreError::Leased`]).
pub(crate) fn claimable<C: GenericClient>(
    db: &mut Session<'_, C>,
    horizon: Timestamp,
) -> Result<Vec<Claimable>, StoreError> {
    let horizon = i64::try_from(horizon.0).unwrap_or(i64::MAX);
    let rows = db
        .query(
            &format!(
                "SELECT run_id, wake_at FROM runs
                 WHERE status = 'running' AND (wake_at IS NULL OR wake_at <= $1)
                   AND (lease_owner IS NULL OR lease_expires_at <= {NOW})
                 ORDER BY wake_at NULLS FIRST, run_id"
            ),
            &[&horizon],
        )
        .map_err(backend("claimable runs"))?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in rows {
        let run: &str = row.get(0);
        let wake = row
            .get::<_, Option<i64>>(1)
            .map(|w| from_sql_ts(w, "wake time", run))
            .transpose()?;
        runs.push(Claimable {
            run: run_id(run)?,
            wake,
        });
    }
    Ok(runs)
}
