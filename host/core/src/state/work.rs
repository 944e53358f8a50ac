//! The next work of a run, as the interpreter hands it to a driver: what to
//! record or run ([`Work`]), and the task of each step attempt to execute.

use std::sync::Arc;

use serde_json::Value;

use super::{Finish, RunState, StepRecord, StepStatus};
use crate::id::{RunId, StepId, StepPath, Timestamp};
use crate::runner::StepTask;

/// The next thing a driver must do for a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Execute a step attempt: append `step-started`, run it, append its result.
    Execute(StepTask),
    /// Record a composite node's start and fan-out (`node-started`).
    StartNode {
        /// The node.
        path: StepPath,
        /// Its input.
        input: Arc<Value>,
        /// A foreach's number of items.
        items: Option<u32>,
    },
    /// Record a branch's choice of arms (`branch-decided`).
    DecideBranch {
        /// The branch.
        path: StepPath,
        /// Its input.
        input: Arc<Value>,
        /// The arms that run.
        arms: Vec<StepId>,
    },
    /// Record a loop's decision after an iteration (`loop-decided`).
    DecideLoop {
        /// The loop.
        path: StepPath,
        /// The iteration just run.
        iteration: u32,
        /// Whether another iteration runs.
        again: bool,
    },
    /// Record a sleep's start and wake time (`sleep-started`).
    Sleep {
        /// The sleep node.
        path: StepPath,
        /// Its input (and output).
        input: Arc<Value>,
        /// When it wakes.
        wake: Wake,
    },
    /// A sleep wakes at `due`: then record its completion (`node-completed`
    /// with `output`, its input).
    Wake {
        /// The sleep node.
        path: StepPath,
        /// When it wakes.
        due: Timestamp,
        /// Its output.
        output: Arc<Value>,
    },
    /// Record a composite node's completion (`node-completed`).
    CompleteNode {
        /// The node.
        path: StepPath,
        /// Its output.
        output: Value,
    },
    /// Record the decision to retry a failed execution (`step-retrying`).
    Retry {
        /// The execution.
        path: StepPath,
        /// The next attempt.
        attempt: u32,
        /// When it may start.
        due: Timestamp,
    },
    /// Append the run's finishing event.
    Finish(Finish),
}

/// When a sleep that starts wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// This many milliseconds after it starts (`sleep-ms`).
    After(u64),
    /// At this time (`sleep-until`; a time already past wakes at once).
    At(Timestamp),
}

impl RunState {
    /// Whether the failed execution `record` is to be retried: its error is
    /// retryable and its step's policy has attempts left. Consulted only by
    /// the driver deciding; replay reads the recorded `step-retrying`.
    pub(super) fn retries(&self, record: &StepRecord) -> bool {
        let policy = self
            .workflow
            .step(&record.step)
            .map(|s| s.retry)
            .unwrap_or_default();
        record.error.as_ref().is_some_and(|e| e.retryable) && record.attempt <= policy.max_retries
    }

    pub(super) fn task(
        &self,
        record: Option<&StepRecord>,
        path: StepPath,
        step: &StepId,
        input: &Arc<Value>,
    ) -> StepTask {
        let run = self
            .run
            .clone()
            .unwrap_or_else(|| RunId::new("-").expect("valid literal id"));
        let (attempt, input, resume_payload, suspend_payload, not_before) = match record {
            None => (1, Arc::clone(input), None, None, None),
            Some(r) if r.status == StepStatus::Retrying => (
                r.attempt + 1,
                r.input.clone(),
                r.resume_payload.clone(),
                r.suspend_payload.clone(),
                r.retry_at,
            ),
            Some(r) if r.status == StepStatus::Running => (
                r.attempt,
                r.input.clone(),
                r.resume_payload.clone(),
                r.suspend_payload.clone(),
                None,
            ),
            Some(r) => (
                1,
                r.input.clone(),
                r.resume_payload.clone(),
                r.suspend_payload.clone(),
                None,
            ),
        };
        let workflow = self
            .nested_at(&path)
            .map_or_else(|| self.workflow.id(), |(_, w)| w.id())
            .clone();
        StepTask {
            idempotency_key: format!("{run}/{path}"),
            iteration: self.iteration_at(&path),
            run,
            workflow,
            step: step.clone(),
            path,
            attempt,
            input,
            resume_payload,
            suspend_payload,
            not_before,
            // Set by the driver when it decides the attempt's `step-started`.
            started_at: Timestamp::default(),
        }
    }

    /// Attempts recorded as running, as tasks to execute again (same attempt
    /// and idempotency key): used to recover executions that were in flight
    /// when their process stopped.
    pub fn in_flight(&self) -> Vec<StepTask> {
        self.steps
            .values()
            .filter(|r| r.status == StepStatus::Running)
            .map(|r| self.task(Some(r), r.path.clone(), &r.step, &r.input))
            .collect()
    }
}
