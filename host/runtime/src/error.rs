//! Runtime errors: problems with a request, not with a step (those are data).

use weft_core::{InputError, ResumeError, StoreError, TransitionError};

/// Why a runtime request was refused. Step failures are never errors here:
/// they are part of the run's result.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The workflow input is too large or fails the workflow's input
    /// schema; no run was created.
    //
    // Context fields carry their error under a name other than `source`, and
    // the message includes it: printed as a chain, it appears once.
    #[error("workflow `{workflow}`: {reason}")]
    InvalidInput {
        /// The workflow id.
        workflow: String,
        /// What is wrong.
        reason: InputError,
    },
    /// A resume request was refused; the run is unchanged.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// Saved events do not replay onto the workflow (a corrupt file, or a
    /// workflow that changed incompatibly since the run started).
    #[error("run {run}: stored events do not replay onto workflow `{workflow}`: {reason}")]
    Replay {
        /// The run id.
        run: String,
        /// The workflow id.
        workflow: String,
        /// The first event that did not apply.
        reason: TransitionError,
    },
    /// A saved run belongs to another workflow.
    #[error("run {run} belongs to workflow `{saved}`, not `{given}`")]
    WrongWorkflow {
        /// The run id.
        run: String,
        /// The workflow the run was saved for.
        saved: String,
        /// The workflow given.
        given: String,
    },
    /// Another process changed the run first and kept changing it while
    /// this request was decided again: it was not applied.
    #[error("run {run} was changed concurrently by another process; this request was not applied")]
    Conflict {
        /// The run.
        run: String,
    },
    /// Another process changed the run while this one drove it, and is
    /// still driving it: this process stopped; the run goes on there.
    #[error("run {run} is being driven by another weft process")]
    DrivenElsewhere {
        /// The run.
        run: String,
    },
    /// Another live process holds the run's lease (it is driving the run):
    /// this runtime did not touch it.
    #[error(
        "run {run} is held by another weft process ({owner}); its lease lasts {remaining_ms} ms more unless renewed"
    )]
    Leased {
        /// The run.
        run: String,
        /// The lease holder's id.
        owner: String,
        /// How long the lease lasts without renewal, by the store's clock.
        remaining_ms: u64,
    },
    /// This process's lease on the run was taken over (it was presumed
    /// dead, e.g. stopped longer than the lease's time to live): it stopped
    /// driving the run and committed nothing more; the new owner drives it.
    #[error(
        "run {run}: this process lost its lease on the run (another process took it over); it stopped driving the run, which goes on there"
    )]
    LeaseLost {
        /// The run.
        run: String,
    },
    /// No run with this id is stored.
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
    /// The store failed; the run is left as its last committed events say
    /// (recoverable with `weft recover`).
    #[error("run {run}: {reason}")]
    Store {
        /// The run.
        run: String,
        /// The store error.
        reason: StoreError,
    },
    /// The runtime has shut down.
    #[error("the runtime has shut down")]
    ShutDown,
    /// The evented runtime's orchestrator panicked (a bug): it answers no
    /// more requests; runs it drove stay as their last committed events say.
    #[error("internal error: the orchestrator stopped: {0}")]
    Panicked(String),
    /// The state machine refused an event the runtime produced: a bug.
    #[error("internal error: an event the runtime produced does not apply")]
    Transition(#[from] TransitionError),
}
