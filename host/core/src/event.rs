//! The events that change a run's state.
//!
//! Every transition of a run is one of these; [`crate::RunState::apply`] is the
//! only code that interprets them. They are plain data (serde), identical in
//! both runtimes, and persisted as they are by the evented runtime, so their
//! serialized form is a compatibility surface: add variants and optional
//! fields, never change existing ones.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{RunError, StepError};
use crate::id::{RunId, StepId, StepPath, Timestamp};
use crate::runner::Measured;

/// A custom event a step emitted through the `emit` host import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomEvent {
    /// The step's own event kind, e.g. `progress`.
    pub kind: String,
    /// The event's data.
    pub data: Value,
}

/// Where a rerun came from: the old run, the address it executes from,
/// and the input that address was given instead of its recorded one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The run it reruns (unchanged by the rerun).
    pub run: RunId,
    /// The address it executes from; the old run's results of everything
    /// before it were taken over.
    pub from: StepPath,
    /// The input given to `from` instead of what precedes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// One transition of a run. Each variant says what it does and when it is
/// rejected (with [`crate::TransitionError`], leaving the state unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// Starts the run: status `running`, with its input and initial state.
    /// Rejected once the run has started.
    RunStarted {
        /// The run id.
        run: RunId,
        /// The workflow id.
        workflow: StepId,
        /// The workflow input (already validated).
        input: Value,
        /// The initial workflow state.
        state: Value,
        /// When.
        at: Timestamp,
        /// A rerun (`weft rerun`): the run and address it was started from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<Origin>,
    },
    /// An attempt of a step execution starts: its record becomes `running`.
    /// Rejected unless the run is `running` and the path is ready to run
    /// (never started, waiting for a retry, or resumed).
    StepStarted {
        /// The execution's path.
        path: StepPath,
        /// The step it runs. (qualified inside a nested workflow: `charge-flow/charge`).
        #[serde(deserialize_with = "StepId::deserialize_qualified")]
        step: StepId,
        /// 1 for the first attempt.
        attempt: u32,
        /// The step's input.
        input: Arc<Value>,
        /// When.
        at: Timestamp,
    },
    /// A custom event the running step emitted. Changes nothing but is part
    /// of the run's history. Rejected unless the path is `running`.
    Custom {
        /// The emitting execution.
        path: StepPath,
        /// The event.
        event: CustomEvent,
        /// When.
        at: Timestamp,
    },
    /// The attempt succeeded: the record becomes `success` with `output`, and
    /// `state` (when the step set one) becomes the workflow state, atomically.
    /// Rejected unless the path is `running`.
    StepCompleted {
        /// The execution's path.
        path: StepPath,
        /// The output (validated).
        output: Arc<Value>,
        /// The new workflow state, if the step set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<Value>,
        /// What the attempt consumed, when a sandbox measured it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measured: Option<Measured>,
        /// When.
        at: Timestamp,
    },
    /// The attempt failed: the record becomes `failed` with the error. Any
    /// state the step set is discarded. Whether it is retried is a decision
    /// the driver records next ([`Event::StepRetrying`]); without one the run
    /// fails. Rejected unless the path is `running`.
    StepFailed {
        /// The execution's path.
        path: StepPath,
        /// The error.
        error: StepError,
        /// What the attempt consumed, when a sandbox measured it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measured: Option<Measured>,
        /// When.
        at: Timestamp,
    },
    /// The driver decided to retry a failed execution: the record becomes
    /// `retrying`, and attempt `attempt` may start at `due` (the failure's
    /// time plus the policy's delay, computed once, here: replay never
    /// consults the retry policy or the clock). Rejected unless the path is
    /// `failed` with a retryable error and `attempt` is the next attempt.
    StepRetrying {
        /// The execution's path.
        path: StepPath,
        /// The attempt that will run.
        attempt: u32,
        /// When it may start.
        due: Timestamp,
        /// When the decision was made.
        at: Timestamp,
    },
    /// The step suspended: the record becomes `suspended` with the payload and
    /// labels, and `state` (if set) is committed. Rejected unless `running`.
    StepSuspended {
        /// The execution's path.
        path: StepPath,
        /// The suspend payload (validated).
        payload: Value,
        /// Labels that resume this execution.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        labels: Vec<String>,
        /// The new workflow state, if the step set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<Value>,
        /// What the attempt consumed, when a sandbox measured it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measured: Option<Measured>,
        /// When.
        at: Timestamp,
    },
    /// The step bailed: the record becomes `bailed`, `state` (if set) is
    /// committed, and the run will complete with `output`. Rejected unless `running`.
    StepBailed {
        /// The execution's path.
        path: StepPath,
        /// The workflow's output.
        output: Value,
        /// The new workflow state, if the step set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<Value>,
        /// What the attempt consumed, when a sandbox measured it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measured: Option<Measured>,
        /// When.
        at: Timestamp,
    },
    /// A composite node (a `foreach`, `parallel` or loop) starts at `path`
    /// with its input. For a foreach the driver decides its fan-out from the
    /// input once, here: `items` is the number of items (the input array's
    /// length), and replay reads the items from `input` instead of
    /// recomputing them. Rejected unless the run is `running`, the path names
    /// such a node of the workflow and it has not started.
    NodeStarted {
        /// The node's address.
        path: StepPath,
        /// Its input.
        input: Arc<Value>,
        /// A foreach's number of items.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<u32>,
        /// When.
        at: Timestamp,
    },
    /// A sleep node at `path` started on `input`; it wakes at `until`. The
    /// wake time is decided once, here (a `sleep-ms` adds its duration to
    /// `at`, a `sleep-until` evaluated its expression), so replay and
    /// recovery never recompute it. Its `node-completed` (output: its input)
    /// is recorded once `until` has passed. Rejected unless the run is
    /// `running` and the path names a sleep node that has not started.
    SleepStarted {
        /// The node's address.
        path: StepPath,
        /// Its input (also its output).
        input: Arc<Value>,
        /// When it wakes.
        until: Timestamp,
        /// When.
        at: Timestamp,
    },
    /// A composite node completed with `output` (a foreach: the items'
    /// outputs in item order; a parallel or branch: an object keyed by node
    /// or arm id; a loop: its last iteration's output), or a `map` node
    /// computed its output (a map records only this event). Rejected unless
    /// it started (a map: it has not run) and has not completed.
    NodeCompleted {
        /// The node's address.
        path: StepPath,
        /// Its output.
        output: Arc<Value>,
        /// When.
        at: Timestamp,
    },
    /// A branch at `path` evaluated its conditions on `input` and runs
    /// `arms` (arm ids, in declaration order; empty when none matched and
    /// there is no default arm). Replay reads the choice, never the
    /// conditions. Rejected unless the run is `running`, the path names a
    /// branch that has not started and every arm is one of its arms.
    BranchDecided {
        /// The branch's address.
        path: StepPath,
        /// Its input (each arm's input).
        input: Arc<Value>,
        /// The arms that run.
        arms: Vec<StepId>,
        /// When.
        at: Timestamp,
    },
    /// A loop at `path` evaluated its condition after iteration `iteration`
    /// (from 1): `again` runs iteration `iteration + 1` on this iteration's
    /// output; otherwise the loop completes with it (`node-completed`
    /// follows). Rejected unless the loop's iteration `iteration` has
    /// finished and is not decided yet.
    LoopDecided {
        /// The loop's address.
        path: StepPath,
        /// The iteration just run.
        iteration: u32,
        /// Whether another iteration runs.
        again: bool,
        /// When.
        at: Timestamp,
    },
    /// The run has nothing left to do but wait for a resume: status `suspended`.
    /// Rejected unless `running`.
    RunSuspended {
        /// The suspended executions.
        paths: Vec<StepPath>,
        /// When.
        at: Timestamp,
    },
    /// Resumes a suspended execution with `payload` (already validated against
    /// its resume schema): the record becomes `resumed`, the run `running`.
    /// Rejected unless the run is `suspended` and the path is `suspended`
    /// (so of two resumes of one step, the second is rejected).
    RunResumed {
        /// The execution to resume.
        path: StepPath,
        /// The resume payload.
        payload: Value,
        /// When.
        at: Timestamp,
    },
    /// The run succeeded with `output`. Rejected unless `running`.
    RunCompleted {
        /// The workflow output (validated).
        output: Value,
        /// When.
        at: Timestamp,
    },
    /// The run failed. Rejected unless `running`.
    RunFailed {
        /// Why.
        error: RunError,
        /// When.
        at: Timestamp,
    },
    /// The run was canceled; it runs nothing more. Rejected once the run has finished.
    RunCanceled {
        /// Optional reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        at: Timestamp,
    },
}

impl Event {
    /// The event's type name, as serialized.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "run-started",
            Self::StepStarted { .. } => "step-started",
            Self::Custom { .. } => "custom",
            Self::StepCompleted { .. } => "step-completed",
            Self::StepFailed { .. } => "step-failed",
            Self::StepRetrying { .. } => "step-retrying",
            Self::NodeStarted { .. } => "node-started",
            Self::NodeCompleted { .. } => "node-completed",
            Self::SleepStarted { .. } => "sleep-started",
            Self::BranchDecided { .. } => "branch-decided",
            Self::LoopDecided { .. } => "loop-decided",
            Self::StepSuspended { .. } => "step-suspended",
            Self::StepBailed { .. } => "step-bailed",
            Self::RunSuspended { .. } => "run-suspended",
            Self::RunResumed { .. } => "run-resumed",
            Self::RunCompleted { .. } => "run-completed",
            Self::RunFailed { .. } => "run-failed",
            Self::RunCanceled { .. } => "run-canceled",
        }
    }

    /// The address the event is about, if it is about one (run-level
    /// events are not; `run-suspended` lists several).
    pub fn path(&self) -> Option<&StepPath> {
        match self {
            Self::StepStarted { path, .. }
            | Self::Custom { path, .. }
            | Self::StepCompleted { path, .. }
            | Self::StepFailed { path, .. }
            | Self::StepRetrying { path, .. }
            | Self::NodeStarted { path, .. }
            | Self::NodeCompleted { path, .. }
            | Self::SleepStarted { path, .. }
            | Self::BranchDecided { path, .. }
            | Self::LoopDecided { path, .. }
            | Self::StepSuspended { path, .. }
            | Self::StepBailed { path, .. }
            | Self::RunResumed { path, .. } => Some(path),
            Self::RunStarted { .. }
            | Self::RunSuspended { .. }
            | Self::RunCompleted { .. }
            | Self::RunFailed { .. }
            | Self::RunCanceled { .. } => None,
        }
    }

    /// When the event happened.
    pub fn at(&self) -> Timestamp {
        match self {
            Self::RunStarted { at, .. }
            | Self::StepStarted { at, .. }
            | Self::Custom { at, .. }
            | Self::StepCompleted { at, .. }
            | Self::StepFailed { at, .. }
            | Self::StepRetrying { at, .. }
            | Self::NodeStarted { at, .. }
            | Self::NodeCompleted { at, .. }
            | Self::SleepStarted { at, .. }
            | Self::BranchDecided { at, .. }
            | Self::LoopDecided { at, .. }
            | Self::StepSuspended { at, .. }
            | Self::StepBailed { at, .. }
            | Self::RunSuspended { at, .. }
            | Self::RunResumed { at, .. }
            | Self::RunCompleted { at, .. }
            | Self::RunFailed { at, .. }
            | Self::RunCanceled { at, .. } => *at,
        }
    }
}
