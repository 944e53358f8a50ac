//! Runtime errors: problems with a request, not with a step (those are data).

use weft_core::{ResumeError, SchemaError, StoreError, TransitionError};

/// Why a runtime request was refused. Step failures are never errors here:
/// they are part of the run's result.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The workflow input fails the workflow's input schema; no run was created.
    #[error("workflow `{workflow}`: input fails the input schema: {source}")]
    InvalidInput {
        /// The workflow id.
        workflow: String,
        /// The violations.
        source: SchemaError,
    },
    /// A resume request was refused; the run is unchanged.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// Saved events do not replay onto the workflow (a corrupt file, or a
    /// workflow that changed incompatibly since the run started).
    #[error("run {run}: saved events do not replay onto workflow `{workflow}`: {source}")]
    Replay {
        /// The run id.
        run: String,
        /// The workflow id.
        workflow: String,
        /// The first event that did not apply.
        source: TransitionError,
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
    /// Another process changed the run first (e.g. two concurrent resumes of
    /// one step): this request was not applied.
    #[error(
        "run {run} was changed concurrently by another process (already resumed or recovered there); this request was not applied"
    )]
    Conflict {
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
    #[error("run {run}: {source}")]
    Store {
        /// The run.
        run: String,
        /// The store error.
        source: StoreError,
    },
    /// The runtime has shut down.
    #[error("the runtime has shut down")]
    ShutDown,
    /// The state machine refused an event the runtime produced: a bug.
    #[error("internal error: {0}")]
    Transition(#[from] TransitionError),
}
