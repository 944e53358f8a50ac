//! The persistence boundary of the runtimes: an append-only event log per
//! run with optimistic concurrency, **leases** (one owner per run at a time,
//! fenced by epoch) and each run's **wake time** (durable timers).
//!
//! The contract is split by job: [`EventStore`] (the log, leases, wake
//! times: what a runtime needs), [`WorkflowRegistry`] (workflow locks by
//! digest and the runs pinned to them) and [`RunIndex`] (listing runs with
//! filters and cursor paging); a [`Store`] is all three, what the CLI and a
//! server hold. Implementations: `weft-store-sqlite` (the default, embedded)
//! and `weft_runtime::MemoryStore` (not durable); one conformance suite
//! (`tests/all/store_contract.rs`) runs against each. The trait is synchronous:
//! appends are short transactions, and a runtime batches many runs' appends
//! into one call ([`EventStore::append_batch`]) to share one commit (group
//! commit).
//!
//! # Ownership
//! A process drives a run only while it holds the run's [`Lease`]: it gets
//! one with [`EventStore::create_run`] or [`EventStore::acquire`], keeps it
//! alive with [`EventStore::renew`], and gives it up with
//! [`EventStore::release`] (or by appending the event that settles the run:
//! the store releases the lease of a run that is no longer `running`). Every
//! append names the epoch of the lease it was decided under; a takeover
//! bumps the epoch, so a stale owner's append is refused
//! ([`StoreError::Fenced`]) and can never interleave with the new owner's.
//! Lease expiry is judged by the store's clock only (for SQLite the clock of
//! the one machine that can open the file), never by the owners' clocks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::id::{RunId, StepId, Timestamp};
use crate::state::RunStatus;

mod index;
mod registry;
pub mod rows;

pub use index::{RunCursor, RunFilter, RunIndex, RunPage};
pub use registry::{Deployment, Pin, WorkflowRegistry};

/// Everything a host holds: the event log, the workflow registry and the
/// run index of one store.
pub trait Store: EventStore + WorkflowRegistry + RunIndex {}

impl<T: EventStore + WorkflowRegistry + RunIndex + ?Sized> Store for T {}

/// What is stored about a run besides its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    /// The run id.
    pub run_id: RunId,
    /// The workflow id.
    pub workflow_id: StepId,
    /// Where the workflow came from (the manifest's absolute path).
    pub manifest: String,
    /// SHA-256 of the manifest text when the run started.
    pub manifest_sha256: String,
    /// The digest of the workflow lock the run is pinned to (the workflow
    /// it runs, frozen: manifest, schemas, nested manifests, component
    /// digests; see `weft_manifest::WorkflowLock`). `None` for runs
    /// recorded before weft pinned runs, which load their manifest from disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_digest: Option<String>,
}

/// A run as listed by [`RunIndex::runs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Identity and origin.
    #[serde(flatten)]
    pub meta: RunMeta,
    /// The status after the last event.
    pub status: RunStatus,
    /// How many events the run has (= the sequence number of the last one).
    pub events: u64,
    /// When the first event happened.
    pub created_at: Timestamp,
    /// When the last event happened.
    pub updated_at: Timestamp,
    /// The owner whose live lease holds the run (the process driving it
    /// now), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
}

/// Who asks for a lease, and for how long it holds without renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's id: unique per runtime instance (several runtimes of one
    /// process are distinct owners). Opaque to the store; a runtime may
    /// encode in it how to tell that the owner is gone (its host and
    /// process).
    pub id: String,
    /// How long a lease lasts from its grant or last renewal.
    pub ttl: Duration,
}

/// A lease on one run, granted to an [`Owner`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The run.
    pub run: RunId,
    /// The owner's id.
    pub owner: String,
    /// The fencing token: bumped by every grant, so each grant (and each
    /// takeover) has its own. Appends name it ([`Append::epoch`]).
    pub epoch: u64,
}

/// How [`EventStore::acquire`] may take a lease that another owner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover<'a> {
    /// Only a run without a live lease: none, released, or expired.
    IfFree,
    /// Also a live lease held by this owner id, which the caller has proven
    /// gone (its process no longer exists): a compare-and-swap on the holder.
    From(&'a str),
    /// Whatever holds it (a cancel, with
    /// [`EventStore::acquire_and_append`]: it fences the holder out, which
    /// then finds the run canceled).
    Force,
}

/// One append: `events` go after sequence number `expected` (the number of
/// events the writer has seen; 0 for a new run), under the lease `epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Append<'a> {
    /// The run.
    pub run: &'a RunId,
    /// The sequence number of the run's last event as the writer knows it.
    pub expected: u64,
    /// The epoch of the writer's lease on the run.
    pub epoch: u64,
    /// The events to append, in order.
    pub events: &'a [Event],
    /// When the run next needs attention though nothing happens to it
    /// before (its earliest sleep or retry time), if it only waits for a
    /// timer after these events; `None` for a run with work to do now (or
    /// one that settles).
    pub wake: Option<Timestamp>,
}

/// A running run that no live lease holds: a recovering host may take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimable {
    /// The run.
    pub run: RunId,
    /// When it next needs attention (`None`: now).
    pub wake: Option<Timestamp>,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first: the run's last event is not `expected`.
    /// The writer must reload the run and decide again.
    #[error("run {run}: concurrent update (expected event {expected}, the log has {actual})")]
    Conflict {
        /// The run.
        run: String,
        /// The sequence number the writer expected.
        expected: u64,
        /// The sequence number in the log.
        actual: u64,
    },
    /// The writer's lease was taken over (or the run was canceled by
    /// another process): nothing was written, and this writer must stop
    /// driving the run.
    #[error(
        "run {run}: the lease of epoch {epoch} is no longer held (the run is at epoch {current})"
    )]
    Fenced {
        /// The run.
        run: String,
        /// The writer's epoch.
        epoch: u64,
        /// The run's epoch now.
        current: u64,
    },
    /// Another owner holds a live lease on the run.
    #[error("run {run} is held by {owner} (for {remaining_ms} ms more unless renewed)")]
    Leased {
        /// The run.
        run: String,
        /// The holder's id.
        owner: String,
        /// How long the lease still lasts by the store's clock.
        remaining_ms: u64,
    },
    /// No such run.
    #[error("no run `{run}` in the store")]
    NotFound {
        /// The run.
        run: String,
    },
    /// A run with this id exists already.
    #[error("a run `{run}` exists already")]
    Exists {
        /// The run.
        run: String,
    },
    /// The backend failed (I/O, corruption, a stored event that does not parse).
    #[error("store: {0}")]
    Backend(String),
}

/// An append-only, per-run event log with leases and wake times.
pub trait EventStore: Send + Sync {
    /// Creates a run whose first events are `events` (starting with
    /// `run-started`), leased to `owner` (epoch 1; held only if the run is
    /// `running` after them), with its wake time (as [`Append::wake`]), in
    /// one transaction.
    ///
    /// # Errors
    /// [`StoreError::Exists`] when the run id is taken; backend errors.
    fn create_run(
        &self,
        meta: &RunMeta,
        events: &[Event],
        owner: &Owner,
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError>;

    /// Grants `owner` the lease on `run` with a new epoch (the previous one
    /// plus 1), if `takeover` allows: a run with no live lease always; a
    /// run leased by `owner` itself is granted again (a new epoch). A run
    /// that is not `running` can be leased too (to resume or cancel it).
    ///
    /// # Errors
    /// [`StoreError::Leased`] when another owner holds a live lease that
    /// `takeover` does not allow taking; [`StoreError::NotFound`]; backend
    /// errors.
    fn acquire(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
    ) -> Result<Lease, StoreError>;

    /// [`EventStore::acquire`] and an append of `events` after sequence
    /// number `expected` under the new lease, in ONE transaction, with the
    /// run's wake time (as [`Append::wake`]). This is how a cancel takes a
    /// run from the process that drives it (`Takeover::Force`): the run is
    /// canceled in the store at the very moment its driver is fenced out,
    /// so a driver that finds its lease gone always finds the reason too.
    /// As with [`EventStore::append_batch`], a run that is not `running`
    /// after `events` keeps no lease.
    ///
    /// # Errors
    /// As [`EventStore::acquire`]; [`StoreError::Conflict`] when the run's
    /// log does not end at `expected` (nothing was written: neither the
    /// lease nor the events). Backend errors.
    fn acquire_and_append(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
        expected: u64,
        events: &[Event],
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError>;

    /// Extends every lease `owner` holds by its ttl, and returns the runs it
    /// still holds with their epochs (a lease taken over meanwhile is not
    /// among them). One call per owner, whatever the number of its runs.
    ///
    /// # Errors
    /// Backend errors.
    fn renew(&self, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError>;

    /// Gives up `lease` (a no-op when it was taken over meanwhile). The run
    /// stays as stored: a running run is then [`EventStore::claimable`].
    ///
    /// # Errors
    /// Backend errors.
    fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Gives up every one of `leases` (each a no-op when it was taken over
    /// meanwhile), in one commit where the store can: a host letting go of
    /// thousands of sleeping runs at shutdown must not pay a commit each.
    ///
    /// # Errors
    /// Backend errors (then none, or for a store without transactions
    /// some, are released; the rest expire by themselves).
    fn release_all(&self, leases: &[Lease]) -> Result<(), StoreError> {
        leases.iter().try_for_each(|lease| self.release(lease))
    }

    /// Appends to several runs in ONE transaction: all appends land or none.
    /// The lease of a run whose status after its append is not `running`
    /// is released in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when a run's epoch is not the append's (its
    /// lease was taken over), [`StoreError::Conflict`] when a run's log does
    /// not end at its `expected` sequence number, naming the first such
    /// run; then nothing was written. Backend errors.
    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError>;

    /// A run's metadata and every event, in order.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; backend errors.
    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError>;

    /// A page of [`EventStore::load`]: the run's metadata and at most
    /// `limit` of its events after sequence number `after`, in order (fewer
    /// only at the end of the log), so that a run of any size is read in
    /// bounded memory, page after page.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; backend errors.
    fn load_page(
        &self,
        run: &RunId,
        after: u64,
        limit: usize,
    ) -> Result<(RunMeta, Vec<Event>), StoreError>;

    /// Events of a run after sequence number `after` (for following a run).
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; backend errors.
    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError>;

    /// Which of `runs` (each with the sequence number its caller last
    /// saw) have events after that number: one question for many runs (a
    /// driver checking the runs it keeps waiting, for a cancel). The
    /// default asks run by run.
    ///
    /// # Errors
    /// Backend errors.
    fn changed_since(&self, runs: &[(RunId, u64)]) -> Result<Vec<RunId>, StoreError> {
        let mut changed = Vec::new();
        for (run, seen) in runs {
            if !self.events_after(run, *seen)?.is_empty() {
                changed.push(run.clone());
            }
        }
        Ok(changed)
    }

    /// Running runs that no live lease holds and that need attention at or
    /// before `horizon` (their wake time, or now), earliest wake first:
    /// what a recovering host can take. One indexed query.
    ///
    /// # Errors
    /// Backend errors.
    fn claimable(&self, horizon: Timestamp) -> Result<Vec<Claimable>, StoreError>;

    /// Waits up to `timeout` for a hint that a run may have become
    /// claimable in this store (a lease released while the run is
    /// running, whoever released it): `true` when one came, `false` when
    /// `timeout` passed without one. A hint is never the data and may be
    /// lost: a host looks with [`EventStore::claimable`] either way, and
    /// keeps polling at its wake times and every few seconds.
    ///
    /// The default, for a store that gives no hints, sleeps for `timeout`
    /// and returns `false` (a store shared by processes on one machine
    /// only, such as SQLite, is polled). `weft-store-postgres` waits on
    /// `LISTEN/NOTIFY`.
    fn wait_for_hint(&self, timeout: Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }
}
