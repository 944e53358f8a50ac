//! Failures: a step's own error, sandbox limit hits, graph and transition errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{StepId, StepPath};

/// What kind of failure a [`StepError`] is. The guest's own `step-error` is
/// [`FailureKind::Step`]; everything else is decided by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The step returned its own structured error (WIT `step-error`).
    Step,
    /// The guest trapped (panic, `unreachable`, out-of-bounds access...).
    Trap,
    /// The guest ran past its wall-clock deadline.
    Deadline,
    /// The guest ran out of fuel.
    Fuel,
    /// The guest tried to grow its memory past its cap.
    Memory,
    /// An input, output, state, event or log payload exceeded its size limit.
    PayloadTooLarge,
    /// The step's input failed its input schema (the step did not run).
    InvalidInput,
    /// The step's output (or bail output) was not JSON or failed its output schema.
    InvalidOutput,
    /// The state the step set was not JSON or failed the state schema.
    InvalidState,
    /// The suspend payload was not JSON or failed the suspend schema.
    InvalidSuspend,
    /// The host itself failed while running the step (e.g. instantiation).
    Host,
    /// An expression (a branch or loop condition, a map field) failed to
    /// evaluate, or a condition did not yield a boolean.
    Expression,
    /// A loop reached its `max-iterations` with its condition still saying
    /// to go on.
    MaxIterations,
    /// The run would have gone past one of its budgets ([`crate::RunLimits`]:
    /// events, bytes or attempts over the whole run).
    RunLimit,
}

impl FailureKind {
    /// The kebab-case name, also used as the error code of host-decided failures.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Trap => "trap",
            Self::Deadline => "deadline",
            Self::Fuel => "fuel",
            Self::Memory => "memory",
            Self::PayloadTooLarge => "payload-too-large",
            Self::InvalidInput => "invalid-input",
            Self::InvalidOutput => "invalid-output",
            Self::InvalidState => "invalid-state",
            Self::InvalidSuspend => "invalid-suspend",
            Self::Host => "host",
            Self::Expression => "expression",
            Self::MaxIterations => "max-iterations",
            Self::RunLimit => "run-limit",
        }
    }
}

/// One link of an error's cause chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCause {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Optional structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// A failed step execution, as data. It crosses every boundary (WIT, events,
/// storage, CLI output) unchanged, so an error keeps its identity in both runtimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    /// Who decided the failure and why.
    pub kind: FailureKind,
    /// Machine-readable code: the guest's own code for [`FailureKind::Step`],
    /// the kind's name otherwise.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Optional structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether a retry may succeed (retries only happen for retryable errors).
    pub retryable: bool,
    /// The cause chain, direct cause first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<ErrorCause>,
}

impl StepError {
    /// A host-decided failure of `kind` with `message`; its code is the kind's
    /// name. Only [`FailureKind::Deadline`] and [`FailureKind::Host`] failures
    /// are retryable: the others are deterministic for the same input.
    pub fn host(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: kind.as_str().to_owned(),
            message: message.into(),
            details: None,
            retryable: matches!(kind, FailureKind::Deadline | FailureKind::Host),
            causes: Vec::new(),
        }
    }

    /// The same error with `details` attached.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// Why a run failed: the failing step's error, and which step it was
/// (`None` for failures of the run itself, such as its output schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    /// The step execution that failed the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepPath>,
    /// The error itself.
    #[serde(flatten)]
    pub error: StepError,
}

/// A workflow graph that cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// The flow has no nodes.
    #[error("the flow is empty: a workflow needs at least one node")]
    EmptyFlow {
        /// Where (`flow`, or the node holding the empty body).
        at: String,
    },
    /// A node names a step that is not declared.
    #[error("unknown step `{step}` (declared steps: {declared})")]
    UnknownStep {
        /// Where, as a field path such as `flow[2].step`.
        at: String,
        /// The unknown id.
        step: String,
        /// The declared step ids, comma-separated.
        declared: String,
    },
    /// Two sibling nodes have the same id, so their paths would collide.
    #[error("duplicate node id `{id}`: give one of them another `id`")]
    DuplicateNode {
        /// Where, as a field path such as `flow[3]`.
        at: String,
        /// The duplicated id.
        id: StepId,
    },
}

impl GraphError {
    /// The field path the error is about, e.g. `flow[2].step`.
    pub fn at(&self) -> &str {
        match self {
            Self::EmptyFlow { at }
            | Self::UnknownStep { at, .. }
            | Self::DuplicateNode { at, .. } => at,
        }
    }
}

/// An event that does not apply to the run's current state. Appending one is
/// a bug in the driver or a race lost (e.g. two resumes of one step); the
/// state is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// Only `run-started` applies to a run that has not started, and only once.
    #[error("run {run}: {event} does not apply: {reason}")]
    Rejected {
        /// The run id (or `-` before the run started).
        run: String,
        /// The event type.
        event: &'static str,
        /// Why.
        reason: String,
    },
}

/// A resume (or cancel) request that cannot be honoured. The run is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The run is not suspended.
    #[error("run {run} is not suspended (status: {status})")]
    NotSuspended {
        /// The run.
        run: String,
        /// Its status.
        status: String,
    },
    /// The path names no suspended step (it may have been resumed already).
    #[error("run {run}: step `{path}` is not suspended (suspended: {suspended})")]
    NotSuspendedStep {
        /// The run.
        run: String,
        /// The requested path.
        path: String,
        /// The suspended paths, comma-separated.
        suspended: String,
    },
    /// The path names no step of the workflow (a typo, most likely).
    #[error("run {run}: the workflow has no step at path `{path}` (suspended: {suspended})")]
    UnknownStep {
        /// The run.
        run: String,
        /// The requested path.
        path: String,
        /// The suspended paths, comma-separated.
        suspended: String,
    },
    /// No suspended step has this label.
    #[error("run {run}: no suspended step has the resume label `{label}` (labels: {known})")]
    UnknownLabel {
        /// The run.
        run: String,
        /// The requested label.
        label: String,
        /// The labels of suspended steps, comma-separated.
        known: String,
    },
    /// Several steps are suspended; the request must say which.
    #[error(
        "run {run}: several steps are suspended ({suspended}); say which with a step path or a label, or resume them all"
    )]
    Ambiguous {
        /// The run.
        run: String,
        /// The suspended paths, comma-separated.
        suspended: String,
    },
    /// Only running or suspended runs can be canceled.
    #[error("run {run} cannot be canceled: it is {status}")]
    NotCancelable {
        /// The run.
        run: String,
        /// Its status.
        status: String,
    },
    /// The resume payload fails the step's resume schema.
    #[error("run {run}: resume data for step `{path}` fails its resume schema: {message}")]
    InvalidPayload {
        /// The run.
        run: String,
        /// The step being resumed.
        path: String,
        /// The schema violations.
        message: String,
    },
}
