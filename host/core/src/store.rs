//! The persistence boundary of the evented runtime: an append-only event log
//! per run with optimistic concurrency, plus durable timers.
//!
//! Implementations: `weft-store-sqlite` (the default, embedded). The trait is
//! synchronous: appends are short transactions, and a runtime batches many
//! runs' appends into one call ([`EventStore::append_batch`]) to share one
//! commit (group commit).

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::id::{RunId, StepId, Timestamp};
use crate::state::RunStatus;

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

/// A run as listed by [`EventStore::list_runs`].
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
}

/// One append: `events` go after sequence number `expected` (the number of
/// events the writer has seen; 0 for a new run).
#[derive(Debug, Clone, PartialEq)]
pub struct Append<'a> {
    /// The run.
    pub run: &'a RunId,
    /// The sequence number of the run's last event as the writer knows it.
    pub expected: u64,
    /// The events to append, in order.
    pub events: &'a [Event],
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

/// An append-only, per-run event log.
pub trait EventStore: Send + Sync {
    /// Creates a run whose first events are `events` (starting with `run-started`).
    ///
    /// # Errors
    /// [`StoreError::Exists`] when the run id is taken; backend errors.
    fn create_run(&self, meta: &RunMeta, events: &[Event]) -> Result<(), StoreError>;

    /// Appends to several runs in ONE transaction: all appends land or none.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] (naming the first conflicting run) when any
    /// run's log does not end at its `expected` sequence number; then nothing
    /// was written. Backend errors.
    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError>;

    /// A run's metadata and every event, in order.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; backend errors.
    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError>;

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

    /// Runs, newest first, optionally only those with `status`.
    ///
    /// # Errors
    /// Backend errors.
    fn list_runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError>;

    /// Schedules (or moves) the durable timer `key` of `run` to fire at `due`.
    ///
    /// # Errors
    /// Backend errors.
    fn set_timer(&self, run: &RunId, key: &str, due: Timestamp) -> Result<(), StoreError>;

    /// Removes a timer (no error if it does not exist).
    ///
    /// # Errors
    /// Backend errors.
    fn clear_timer(&self, run: &RunId, key: &str) -> Result<(), StoreError>;

    /// Timers due at or before `now`, earliest first.
    ///
    /// # Errors
    /// Backend errors.
    fn due_timers(&self, now: Timestamp) -> Result<Vec<Timer>, StoreError>;
}

/// A durable timer: survives restarts; the runtime fires it once due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The run.
    pub run: RunId,
    /// The timer's key within the run (e.g. a step path).
    pub key: String,
    /// When it is due.
    pub due: Timestamp,
}
