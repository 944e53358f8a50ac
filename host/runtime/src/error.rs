//! Runtime errors: problems with a request, not with a step (those are data).

use weft_core::{ResumeError, SchemaError, TransitionError};

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
    /// The state machine refused an event the runtime produced: a bug.
    #[error("internal error: {0}")]
    Transition(#[from] TransitionError),
}
