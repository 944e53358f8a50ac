//! The rules of the state machine, one per [`Event`]: when the event
//! applies, and what it changes.
//!
//! Each rule first checks that its event applies to the current state and
//! rejects it otherwise, having changed nothing; only then does it change
//! the state, and that part must not fail. So `apply` either applies an
//! event completely or rejects it and changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::progress::Progress;
use super::{NodeRecord, RunState, RunStatus, StepRecord, StepStatus};
use crate::error::{RunError, StepError, TransitionError};
use crate::event::{Event, Origin};
use crate::id::{RunId, StepId, StepPath, Timestamp};
use crate::workflow::NodeKind;

impl RunState {
    /// Applies `event` by its rule.
    ///
    /// # Errors
    /// When the event does not apply to the current state; the state is
    /// then unchanged.
    pub(super) fn follow_rule(&mut self, event: &Event) -> Result<(), TransitionError> {
        match event {
            Event::RunStarted {
                run,
                workflow,
                input,
                state,
                origin,
                ..
            } => self.run_started(event, run, workflow, input, state, origin),
            Event::StepStarted {
                path,
                step,
                attempt,
                input,
                at,
            } => self.step_started(event, path, step, *attempt, input, *at),
            // A custom event changes nothing; it must come from an attempt
            // in flight.
            Event::Custom { path, .. } => self.running_step(event, path),
            Event::StepCompleted {
                path,
                output,
                state,
                at,
                ..
            } => self.step_completed(event, path, output, state, *at),
            Event::StepFailed {
                path, error, at, ..
            } => self.step_failed(event, path, error, *at),
            Event::StepRetrying {
                path, attempt, due, ..
            } => self.step_retrying(event, path, *attempt, *due),
            Event::StepSuspended {
                path,
                payload,
                labels,
                state,
                at,
                ..
            } => self.step_suspended(event, path, payload, labels, state, *at),
            Event::StepBailed {
                path,
                output,
                state,
                at,
                ..
            } => self.step_bailed(event, path, output, state, *at),
            Event::NodeStarted {
                path, input, items, ..
            } => self.node_started(event, path, input, *items),
            Event::SleepStarted {
                path, input, until, ..
            } => self.sleep_started(event, path, input, *until),
            Event::BranchDecided {
                path, input, arms, ..
            } => self.branch_decided(event, path, input, arms),
            Event::LoopDecided {
                path,
                iteration,
                again,
                ..
            } => self.loop_decided(event, path, *iteration, *again),
            Event::NodeCompleted { path, output, .. } => self.node_completed(event, path, output),
            Event::RunSuspended { .. } => {
                self.require_running(event)?;
                self.status = RunStatus::Suspended;
                Ok(())
            }
            Event::RunResumed { path, payload, .. } => self.run_resumed(event, path, payload),
            Event::RunCompleted { output, at } => self.run_completed(event, output, *at),
            Event::RunFailed { error, at } => self.run_failed(event, error, *at),
            Event::RunCanceled { at, .. } => self.run_canceled(event, *at),
        }
    }

    fn reject(&self, event: &Event, reason: impl Into<String>) -> TransitionError {
        TransitionError::Rejected {
            run: self
                .run
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            event: event.name(),
            reason: reason.into(),
        }
    }

    fn require_running(&self, event: &Event) -> Result<(), TransitionError> {
        if self.status == RunStatus::Running {
            Ok(())
        } else {
            Err(self.reject(event, format!("the run is {}", self.status)))
        }
    }

    fn running_step(&self, event: &Event, path: &StepPath) -> Result<(), TransitionError> {
        self.require_running(event)?;
        match self.steps.get(path) {
            Some(r) if r.status == StepStatus::Running => Ok(()),
            Some(r) => Err(self.reject(event, format!("step `{path}` is {:?}", r.status))),
            None => Err(self.reject(event, format!("step `{path}` has not started"))),
        }
    }

    /// `run-started`: a pending run of this workflow starts.
    fn run_started(
        &mut self,
        event: &Event,
        run: &RunId,
        workflow: &StepId,
        input: &Value,
        state: &Value,
        origin: &Option<Origin>,
    ) -> Result<(), TransitionError> {
        if self.status != RunStatus::Pending {
            return Err(self.reject(event, "the run has already started"));
        }
        if workflow != self.workflow.id() {
            return Err(self.reject(
                event,
                format!(
                    "it is for workflow `{workflow}`, not `{}`",
                    self.workflow.id()
                ),
            ));
        }
        self.origin.clone_from(origin);
        self.run = Some(run.clone());
        self.status = RunStatus::Running;
        self.input = Arc::new(input.clone());
        self.state = Arc::new(state.clone());
        Ok(())
    }

    /// `step-started`: an attempt of a step execution starts, with the
    /// attempt number its record expects.
    fn step_started(
        &mut self,
        event: &Event,
        path: &StepPath,
        step: &StepId,
        attempt: u32,
        input: &Arc<Value>,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        let expected = match self.steps.get(path) {
            None => 1,
            Some(r) => match r.status {
                StepStatus::Retrying => r.attempt + 1,
                // Logs written before `step-retrying` existed go from
                // a retryable failure straight to the next attempt.
                StepStatus::Failed if r.error.as_ref().is_some_and(|e| e.retryable) => {
                    r.attempt + 1
                }
                StepStatus::Resumed => 1,
                // A step in flight when its runtime stopped runs again
                // with the same attempt number (at-least-once delivery).
                StepStatus::Running => r.attempt,
                other => {
                    return Err(self.reject(event, format!("step `{path}` is {other:?}")));
                }
            },
        };
        if attempt != expected {
            return Err(self.reject(
                event,
                format!("step `{path}` expects attempt {expected}, not {attempt}"),
            ));
        }
        if self.workflow.step(step).is_none() {
            return Err(self.reject(event, format!("the workflow has no step `{step}`")));
        }
        self.entered(path);
        let record = self
            .steps
            .entry(path.clone())
            .or_insert_with(|| StepRecord {
                path: path.clone(),
                step: step.clone(),
                status: StepStatus::Running,
                attempt,
                input: Arc::clone(input),
                output: None,
                error: None,
                started_at: at,
                ended_at: None,
                retry_at: None,
                suspend_payload: None,
                labels: Vec::new(),
                resume_payload: None,
            });
        record.status = StepStatus::Running;
        record.attempt = attempt;
        record.input = Arc::clone(input);
        record.started_at = at;
        record.ended_at = None;
        record.retry_at = None;
        record.error = None;
        Ok(())
    }

    /// `step-completed`: an attempt in flight succeeds.
    fn step_completed(
        &mut self,
        event: &Event,
        path: &StepPath,
        output: &Arc<Value>,
        state: &Option<Value>,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.running_step(event, path)?;
        self.commit_state(path, state);
        let record = &mut self.steps[path];
        record.status = StepStatus::Success;
        record.output = Some(Arc::clone(output));
        record.ended_at = Some(at);
        self.completed(path, output);
        Ok(())
    }

    /// `step-failed`: an attempt in flight fails.
    fn step_failed(
        &mut self,
        event: &Event,
        path: &StepPath,
        error: &StepError,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.running_step(event, path)?;
        let record = &mut self.steps[path];
        record.error = Some(error.clone());
        record.ended_at = Some(at);
        record.status = StepStatus::Failed;
        Ok(())
    }

    /// `step-retrying`: an execution that failed retryably is to run its
    /// next attempt at `due`.
    fn step_retrying(
        &mut self,
        event: &Event,
        path: &StepPath,
        attempt: u32,
        due: Timestamp,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        match self.steps.get(path) {
            Some(r)
                if r.status == StepStatus::Failed
                    && r.error.as_ref().is_some_and(|e| e.retryable) =>
            {
                if attempt != r.attempt + 1 {
                    return Err(self.reject(
                        event,
                        format!(
                            "step `{path}` would retry with attempt {}, not {attempt}",
                            r.attempt + 1
                        ),
                    ));
                }
            }
            Some(r) => {
                return Err(self.reject(
                    event,
                    format!("step `{path}` is {:?}, not failed retryably", r.status),
                ));
            }
            None => return Err(self.reject(event, format!("step `{path}` has not started"))),
        }
        let record = &mut self.steps[path];
        record.status = StepStatus::Retrying;
        record.retry_at = Some(due);
        Ok(())
    }

    /// `step-suspended`: an attempt in flight suspends.
    fn step_suspended(
        &mut self,
        event: &Event,
        path: &StepPath,
        payload: &Value,
        labels: &[String],
        state: &Option<Value>,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.running_step(event, path)?;
        self.commit_state(path, state);
        let record = &mut self.steps[path];
        record.status = StepStatus::Suspended;
        record.suspend_payload = Some(payload.clone());
        record.labels = labels.to_vec();
        record.ended_at = Some(at);
        Ok(())
    }

    /// `step-bailed`: an attempt in flight bails.
    fn step_bailed(
        &mut self,
        event: &Event,
        path: &StepPath,
        output: &Value,
        state: &Option<Value>,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.running_step(event, path)?;
        self.commit_state(path, state);
        let record = &mut self.steps[path];
        record.status = StepStatus::Bailed;
        record.output = Some(Arc::new(output.clone()));
        record.ended_at = Some(at);
        Ok(())
    }

    /// `node-started`: a foreach (with its number of items), parallel, loop
    /// or nested workflow node starts.
    fn node_started(
        &mut self,
        event: &Event,
        path: &StepPath,
        input: &Arc<Value>,
        items: Option<u32>,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        if self.nodes.contains_key(path) {
            return Err(self.reject(event, format!("node `{path}` has already started")));
        }
        let len = match self.workflow.node_at(path).map(|n| &n.kind) {
            Some(NodeKind::Foreach { .. }) => input.as_array().map(|a| a.len() as u64),
            Some(NodeKind::Parallel { .. } | NodeKind::Loop { .. } | NodeKind::Workflow { .. }) => {
                None
            }
            _ => {
                return Err(self.reject(
                    event,
                    format!(
                        "the workflow has no foreach, parallel, loop or nested workflow `{path}`"
                    ),
                ));
            }
        };
        if items.map(u64::from) != len {
            return Err(self.reject(
                event,
                format!("node `{path}`: {items:?} items for an input of {len:?}"),
            ));
        }
        let progress = match self.workflow.node_at(path).map(|n| &n.kind) {
            Some(NodeKind::Parallel { nodes }) => Progress::Parallel {
                outputs: vec![None; nodes.len()],
            },
            Some(NodeKind::Loop { .. }) => Progress::Loop {
                iteration: 1,
                input: Arc::clone(input),
                output: None,
                stopped: false,
            },
            Some(NodeKind::Workflow { .. }) => Progress::Workflow { output: None },
            // Checked above: only foreach, parallel, loop and nested workflow nodes.
            _ => {
                let items: Vec<Arc<Value>> = input
                    .as_array()
                    .map(|items| items.iter().cloned().map(Arc::new).collect())
                    .unwrap_or_default();
                Progress::Foreach {
                    outputs: vec![None; items.len()],
                    items,
                    started: 0,
                    active: BTreeSet::new(),
                    done: 0,
                }
            }
        };
        self.started_node(path, input, progress);
        Ok(())
    }

    /// `sleep-started`: a sleep node starts, to wake at `until`.
    fn sleep_started(
        &mut self,
        event: &Event,
        path: &StepPath,
        input: &Arc<Value>,
        until: Timestamp,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        if self.nodes.contains_key(path) {
            return Err(self.reject(event, format!("sleep `{path}` has already started")));
        }
        match self.workflow.node_at(path).map(|n| &n.kind) {
            Some(NodeKind::Sleep { .. } | NodeKind::SleepUntil { .. }) => {}
            _ => return Err(self.reject(event, format!("the workflow has no sleep `{path}`"))),
        }
        self.started_node(path, input, Progress::Sleep { until });
        Ok(())
    }

    /// `branch-decided`: a branch node starts with the arms it chose.
    fn branch_decided(
        &mut self,
        event: &Event,
        path: &StepPath,
        input: &Arc<Value>,
        arms: &[StepId],
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        if self.nodes.contains_key(path) {
            return Err(self.reject(event, format!("branch `{path}` has already started")));
        }
        let Some(NodeKind::Branch { arms: declared }) =
            self.workflow.node_at(path).map(|n| &n.kind)
        else {
            return Err(self.reject(event, format!("the workflow has no branch `{path}`")));
        };
        let mut known = declared.iter().map(|a| &a.id);
        // Chosen arms are declared arms, in declaration order, once each.
        if !arms.iter().all(|arm| known.any(|k| k == arm)) {
            return Err(self.reject(
                event,
                format!("branch `{path}`: the arms are not its arms in declaration order"),
            ));
        }
        let progress = Progress::Branch {
            outputs: vec![None; arms.len()],
            arms: arms.to_vec(),
        };
        self.started_node(path, input, progress);
        Ok(())
    }

    /// `loop-decided`: a loop whose iteration finished runs another one
    /// (`again`) or stops.
    fn loop_decided(
        &mut self,
        event: &Event,
        path: &StepPath,
        iteration: u32,
        again: bool,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        match self.nodes.get(path).map(|n| &n.progress) {
            Some(Progress::Loop {
                iteration: current,
                output: Some(_),
                stopped: false,
                ..
            }) if *current == iteration => {}
            Some(Progress::Loop { .. }) => {
                return Err(self.reject(
                    event,
                    format!("loop `{path}`: iteration {iteration} is not awaiting a decision"),
                ));
            }
            _ => return Err(self.reject(event, format!("loop `{path}` has not started"))),
        }
        if let Some(Progress::Loop {
            iteration,
            input,
            output,
            stopped,
        }) = self.nodes.get_mut(path).map(|n| &mut n.progress)
        {
            if again {
                *iteration += 1;
                *input = output.take().unwrap_or_else(|| Arc::new(Value::Null));
            } else {
                *stopped = true;
            }
        }
        Ok(())
    }

    /// `node-completed`: a composite node that started completes (its
    /// branches' states merge), or a map computes its output.
    fn node_completed(
        &mut self,
        event: &Event,
        path: &StepPath,
        output: &Arc<Value>,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        match self.nodes.get(path) {
            Some(node) if node.output.is_none() => {}
            Some(_) => return Err(self.reject(event, format!("node `{path}` has completed"))),
            None if matches!(
                self.workflow.node_at(path).map(|n| &n.kind),
                Some(NodeKind::Map { .. })
            ) => {}
            None => return Err(self.reject(event, format!("node `{path}` has not started"))),
        }
        if self.nodes.contains_key(path) {
            self.merge(path);
        } else {
            // A map: it records only its output.
            self.entered(path);
            let record = NodeRecord {
                path: path.clone(),
                input: Arc::new(Value::Null),
                output: None,
                progress: Progress::Map,
                fork: Arc::new(Value::Null),
            };
            self.nodes.insert(path.clone(), record);
        }
        if let Some(node) = self.nodes.get_mut(path) {
            node.output = Some(Arc::clone(output));
        }
        self.completed(path, output);
        Ok(())
    }

    /// `run-resumed`: a suspended step is resumed with `payload`.
    fn run_resumed(
        &mut self,
        event: &Event,
        path: &StepPath,
        payload: &Value,
    ) -> Result<(), TransitionError> {
        // A running run may have suspended addresses too (a suspended
        // parallel node while others run): the state machine resumes
        // an address in either; `resume` decides when a runtime may.
        if !matches!(self.status, RunStatus::Suspended | RunStatus::Running) {
            return Err(self.reject(event, format!("the run is {}", self.status)));
        }
        match self.steps.get(path) {
            Some(r) if r.status == StepStatus::Suspended => {}
            _ => return Err(self.reject(event, format!("step `{path}` is not suspended"))),
        }
        let record = &mut self.steps[path];
        record.status = StepStatus::Resumed;
        record.resume_payload = Some(payload.clone());
        record.labels.clear();
        self.status = RunStatus::Running;
        Ok(())
    }

    /// `run-completed`: a running run succeeds with `output`.
    fn run_completed(
        &mut self,
        event: &Event,
        output: &Value,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        self.status = RunStatus::Success;
        self.output = Some(output.clone());
        self.end_unfinished(at);
        Ok(())
    }

    /// `run-failed`: a running run fails with `error`.
    fn run_failed(
        &mut self,
        event: &Event,
        error: &RunError,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        self.require_running(event)?;
        self.status = RunStatus::Failed;
        self.error = Some(error.clone());
        self.end_unfinished(at);
        Ok(())
    }

    /// `run-canceled`: a running or suspended run is canceled.
    fn run_canceled(&mut self, event: &Event, at: Timestamp) -> Result<(), TransitionError> {
        if !matches!(self.status, RunStatus::Running | RunStatus::Suspended) {
            return Err(self.reject(event, format!("the run is {}", self.status)));
        }
        self.status = RunStatus::Canceled;
        self.end_unfinished(at);
        Ok(())
    }

    /// The run ended (canceled, failed, or completed by a bail) with
    /// executions unfinished — waiting for a retry or a resume (or in
    /// flight, for a cancel): they end `canceled`, so that no record of an
    /// ended run says it will still run.
    fn end_unfinished(&mut self, at: Timestamp) {
        for record in self.steps.values_mut() {
            if matches!(
                record.status,
                StepStatus::Running
                    | StepStatus::Retrying
                    | StepStatus::Suspended
                    | StepStatus::Resumed
            ) {
                record.status = StepStatus::Canceled;
                record.ended_at = Some(at);
                record.retry_at = None;
                record.labels.clear();
            }
        }
    }
}
