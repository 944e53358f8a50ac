//! [`WorkflowRegistry`]: workflow locks stored by digest, and the runs
//! pinned to them.

use serde::{Deserialize, Serialize};

use crate::id::{RunId, StepId, Timestamp};

use super::StoreError;

/// One pin of a run: from the event after `seq` on, the run runs the
/// workflow locked under `digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The sequence number of the run's last event when the pin took effect
    /// (0: from the start).
    pub seq: u64,
    /// The lock's digest.
    pub digest: String,
    /// When the run was pinned.
    pub at: Timestamp,
}

/// One deployed version of a workflow: the workflow id (the manifest's
/// `id`) served by the lock `digest` since `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The workflow id.
    pub workflow: StepId,
    /// The lock's digest.
    pub digest: String,
    /// When this version was first deployed.
    pub at: Timestamp,
}

/// Workflow locks, content-addressed, and the history of each run's pins.
/// A lock is opaque text to the store (the CLI makes, hashes and parses
/// locks: `weft_manifest::WorkflowLock`); a run is created pinned to the
/// lock named by its `RunMeta::workflow_digest`, which must be stored first.
pub trait WorkflowRegistry: Send + Sync {
    /// Stores `lock` under `digest` (its SHA-256); storing the same digest
    /// again changes nothing.
    ///
    /// # Errors
    /// Backend errors.
    fn put_workflow(&self, digest: &str, lock: &str) -> Result<(), StoreError>;

    /// The lock stored under `digest`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when there is none (a run's pin always names
    /// a stored lock) or it cannot be read.
    fn workflow(&self, digest: &str) -> Result<String, StoreError>;

    /// Pins `run` to the stored lock `digest` from now on, if its log still
    /// ends at event `expected` (the events the caller checked against the
    /// new workflow).
    ///
    /// Refused for a run a live lease holds: a repin is not an append, so
    /// no epoch fences it, and the process driving the run must not have
    /// its workflow changed under it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] when the run has
    /// other events than `expected`; [`StoreError::Leased`] when a live
    /// process holds it; [`StoreError::Backend`] when no lock `digest` is
    /// stored, and other backend errors.
    fn repin(
        &self,
        run: &RunId,
        expected: u64,
        digest: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The pins of `run`, oldest first (none for a run recorded before weft
    /// pinned runs).
    ///
    /// # Errors
    /// Backend errors.
    fn pins(&self, run: &RunId) -> Result<Vec<Pin>, StoreError>;

    /// Records that `workflow` is served by the stored lock `digest` from
    /// `at` on (a deploy). Deploying a version that is deployed already
    /// changes nothing (it keeps its first time) and returns `false`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when no lock `digest` is stored, and other
    /// backend errors.
    fn deploy(&self, workflow: &StepId, digest: &str, at: Timestamp) -> Result<bool, StoreError>;

    /// The deployed versions of `workflow` (of every workflow when `None`),
    /// newest first (by deploy time, then digest).
    ///
    /// # Errors
    /// Backend errors.
    fn deployments(&self, workflow: Option<&StepId>) -> Result<Vec<Deployment>, StoreError>;
}
