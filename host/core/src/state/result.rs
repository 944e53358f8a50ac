//! How a run ends and what it reports: the [`Finish`] that takes it out of
//! `running`, and the [`RunResult`] both runtimes return.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RunState, RunStatus, StepRecord, StepStatus, Work};
use crate::error::{FailureKind, RunError, StepError};
use crate::event::Event;
use crate::id::{RunId, StepId, StepPath, Timestamp};

/// How a run leaves `running` when no step is left to execute.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Every node finished (or a step bailed): complete with this output.
    Completed(Value),
    /// A step failed for good, or the output failed the output schema.
    Failed(RunError),
    /// Only suspended steps are left.
    Suspended(Vec<StepPath>),
}

impl Finish {
    /// The event that performs this transition at `at`.
    pub fn into_event(self, at: Timestamp) -> Event {
        match self {
            Self::Completed(output) => Event::RunCompleted { output, at },
            Self::Failed(error) => Event::RunFailed { error, at },
            Self::Suspended(paths) => Event::RunSuspended { paths, at },
        }
    }
}

/// A suspended step as reported in a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuspendedStep {
    /// Its path.
    pub path: StepPath,
    /// Its suspend payload.
    pub payload: Value,
    /// Its resume labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What a running run waits for: a sleep to end or a retry to be due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// The sleep node or the step execution.
    pub path: StepPath,
    /// `sleep` or `retry`.
    pub kind: TimerKind,
    /// When it fires.
    pub due: Timestamp,
}

/// What a [`Timer`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    /// A sleep node's wake time.
    Sleep,
    /// A failed step's next attempt.
    Retry,
}

/// A run's result: what `weft run --json` prints and what both runtimes return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The run id.
    pub run_id: RunId,
    /// The workflow id.
    pub workflow_id: StepId,
    /// The status.
    pub status: RunStatus,
    /// The output (success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The error (failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The suspended steps (suspended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suspended: Vec<SuspendedStep>,
    /// Every step execution, in the order they first started.
    pub steps: Vec<StepRecord>,
    /// What the run waits for (running), earliest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<Timer>,
    /// The process whose live lease holds the run, when read from a store
    /// (`weft status`, the API); a runtime's answer leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// The final workflow state.
    pub state: Value,
}

impl RunState {
    pub(super) fn finish_with(&self, output: &Value, step: Option<StepPath>) -> Finish {
        match self.workflow.output_schema().map(|s| s.validate(output)) {
            Some(Err(e)) => Finish::Failed(RunError {
                step,
                error: StepError::host(
                    FailureKind::InvalidOutput,
                    format!("the workflow output fails the output schema: {e}"),
                ),
            }),
            _ => Finish::Completed(output.clone()),
        }
    }

    pub(super) fn suspended_paths(&self) -> Vec<StepPath> {
        self.steps
            .values()
            .filter(|r| r.status == StepStatus::Suspended)
            .map(|r| r.path.clone())
            .collect()
    }

    /// The run's result as both runtimes report it.
    pub fn result(&self) -> RunResult {
        RunResult {
            run_id: self
                .run
                .clone()
                .unwrap_or_else(|| RunId::new("-").expect("valid literal id")),
            workflow_id: self.workflow.id().clone(),
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            suspended: if self.status == RunStatus::Suspended {
                self.steps
                    .values()
                    .filter(|r| r.status == StepStatus::Suspended)
                    .map(|r| SuspendedStep {
                        path: r.path.clone(),
                        payload: r.suspend_payload.clone().unwrap_or(Value::Null),
                        labels: r.labels.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            steps: self.steps.values().cloned().collect(),
            timers: self.timers(),
            held_by: None,
            state: (*self.state).clone(),
        }
    }

    /// The sleeps and retries a running run waits for, earliest first.
    fn timers(&self) -> Vec<Timer> {
        if self.status != RunStatus::Running {
            return Vec::new();
        }
        let mut timers: Vec<Timer> = self
            .ready()
            .into_iter()
            .filter_map(|work| match work {
                Work::Wake { path, due, .. } => Some(Timer {
                    path,
                    kind: TimerKind::Sleep,
                    due,
                }),
                Work::Execute(task) => task.not_before.map(|due| Timer {
                    path: task.path,
                    kind: TimerKind::Retry,
                    due,
                }),
                _ => None,
            })
            .collect();
        timers.sort_by(|a, b| (a.due, &a.path).cmp(&(b.due, &b.path)));
        timers
    }
}
