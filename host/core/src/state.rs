//! The state machine: [`RunState::apply`] and [`RunState::ready`].
//!
//! Invariants:
//! - the state changes only in `apply`, and `apply` either applies an event
//!   completely or rejects it and changes nothing;
//! - `ready` is a pure function of the state (and the workflow it was built
//!   for): the same events always yield the same next work, in any runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FailureKind, ResumeError, RunError, StepError, TransitionError};
use crate::event::Event;
use crate::id::{Repetition, RunId, StepId, StepPath, Timestamp};
use crate::runner::{StepTask, StepView};

mod flow;
#[cfg(test)]
mod tests;
use crate::workflow::{NodeKind, Workflow};

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Not started yet (no `run-started` applied).
    Pending,
    /// Started and not finished; steps may be running.
    Running,
    /// Finished with an output.
    Success,
    /// Finished with an error.
    Failed,
    /// Waiting for a resume.
    Suspended,
    /// Canceled; nothing more runs.
    Canceled,
}

impl RunStatus {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Suspended => "suspended",
            Self::Canceled => "canceled",
        }
    }

    /// The status a run has after `event`, if the event changes it.
    pub fn after(event: &Event) -> Option<Self> {
        match event {
            Event::RunStarted { .. } | Event::RunResumed { .. } => Some(Self::Running),
            Event::RunSuspended { .. } => Some(Self::Suspended),
            Event::RunCompleted { .. } => Some(Self::Success),
            Event::RunFailed { .. } => Some(Self::Failed),
            Event::RunCanceled { .. } => Some(Self::Canceled),
            _ => None,
        }
    }

    /// Parses a kebab-case status name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Success,
            Self::Failed,
            Self::Suspended,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the run can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Canceled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of one step execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// An attempt is in flight.
    Running,
    /// The last attempt failed retryably; another attempt is due.
    Retrying,
    /// Completed with an output.
    Success,
    /// Failed for good.
    Failed,
    /// Suspended, waiting for a resume.
    Suspended,
    /// Resumed; will run again with the resume payload.
    Resumed,
    /// Bailed: the workflow ends with its output.
    Bailed,
    /// The run ended while this execution was unfinished (canceled while in
    /// flight; canceled, failed or completed by a bail while it waited for a
    /// retry or a resume): it will never finish.
    Canceled,
}

/// The record of one step execution (one path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The execution's path.
    pub path: StepPath,
    /// The step it runs. (qualified inside a nested workflow: `charge-flow/charge`).
    #[serde(deserialize_with = "StepId::deserialize_qualified")]
    pub step: StepId,
    /// Its status.
    pub status: StepStatus,
    /// The current (or last) attempt, from 1.
    pub attempt: u32,
    /// Its input.
    pub input: Arc<Value>,
    /// Its output (success and bailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Arc<Value>>,
    /// The last attempt's error (failed, or retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// When the current attempt started.
    pub started_at: Timestamp,
    /// When the execution last ended (completed, failed, suspended, bailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// When the next attempt is due (retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    /// The payload it suspended with (kept after the resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_payload: Option<Value>,
    /// Its resume labels while suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The payload it was resumed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_payload: Option<Value>,
}

/// A composite node that started (or a map that computed its output).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Its address.
    pub path: StepPath,
    /// Its input.
    pub input: Arc<Value>,
    /// Its output, once completed.
    pub output: Option<Arc<Value>>,
    /// How far it got.
    pub(crate) progress: Progress,
    /// The state as of its start: each branch of a concurrent node (a
    /// parallel's node, a branch's arm, a foreach's item) starts from it.
    pub(crate) fork: Arc<Value>,
}

impl NodeRecord {
    /// A foreach's items (its input array, split once when it started).
    pub fn items(&self) -> &[Arc<Value>] {
        match &self.progress {
            Progress::Foreach { items, .. } => items,
            _ => &[],
        }
    }
}

/// The progress of a composite node, kept up to date by `apply` so that the
/// interpreter visits only what is unfinished.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Progress {
    Foreach {
        items: Vec<Arc<Value>>,
        /// Each item's output, once its body finished.
        outputs: Vec<Option<Arc<Value>>>,
        /// Items started (they start in order: items `..started`).
        started: usize,
        /// Items started and not finished.
        active: BTreeSet<usize>,
        /// Items finished.
        done: usize,
    },
    Parallel {
        /// Each node's output, in declaration order.
        outputs: Vec<Option<Arc<Value>>>,
    },
    Branch {
        /// The arms that run, in declaration order.
        arms: Vec<StepId>,
        /// Their outputs.
        outputs: Vec<Option<Arc<Value>>>,
    },
    Loop {
        /// The current iteration, from 1.
        iteration: u32,
        /// Its input.
        input: Arc<Value>,
        /// Its body's output, once finished.
        output: Option<Arc<Value>>,
        /// Whether the loop decided to stop.
        stopped: bool,
    },
    Map,
    /// A sleep that started; it wakes at `until`.
    Sleep {
        until: Timestamp,
    },
    /// A nested workflow that started.
    Workflow {
        /// Its flow's output, once the flow finished.
        output: Option<Arc<Value>>,
    },
}

/// Where a flow in progress resumes: its first unfinished node and that
/// node's input.
#[derive(Debug, Clone)]
struct Cursor {
    next: usize,
    input: Arc<Value>,
}

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

/// Which suspended step a resume is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeTarget {
    /// The only suspended step (an error if there are several).
    Only,
    /// A step path.
    Path(StepPath),
    /// A resume label.
    Label(String),
    /// Every suspended step, with the same payload.
    All,
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
    /// The final workflow state.
    pub state: Value,
}

/// The state of one run of one workflow.
#[derive(Debug, Clone)]
pub struct RunState {
    workflow: Arc<Workflow>,
    run: Option<RunId>,
    status: RunStatus,
    input: Arc<Value>,
    state: Arc<Value>,
    steps: IndexMap<StepPath, StepRecord>,
    /// Composite nodes that started, by address.
    nodes: HashMap<StepPath, NodeRecord>,
    /// Flows in progress (`None`: the top level), by scope.
    cursors: HashMap<Option<StepPath>, Cursor>,
    /// The state as written inside each branch of a concurrent node, by
    /// the branch's scope; merged into the enclosing state when the node
    /// completes.
    forks: HashMap<StepPath, Arc<Value>>,
    /// Outputs of successful top-level executions, by node id.
    results: Arc<BTreeMap<StepId, Arc<Value>>>,
    /// Outputs of successful executions in nested scopes, by address.
    scoped: BTreeMap<StepPath, Arc<Value>>,
    output: Option<Value>,
    error: Option<RunError>,
    applied: u64,
    /// A rerun's origin (`weft rerun`): its `from` address starts on the
    /// origin's input, when it has one.
    origin: Option<crate::event::Origin>,
}

impl RunState {
    /// A run of `workflow` that has not started.
    pub fn new(workflow: Arc<Workflow>) -> Self {
        Self {
            workflow,
            run: None,
            status: RunStatus::Pending,
            input: Arc::new(Value::Null),
            state: Arc::new(Value::Null),
            steps: IndexMap::new(),
            nodes: HashMap::new(),
            cursors: HashMap::new(),
            forks: HashMap::new(),
            results: Arc::default(),
            scoped: BTreeMap::new(),
            output: None,
            error: None,
            applied: 0,
            origin: None,
        }
    }

    /// Rebuilds a run's state by applying `events` in order.
    ///
    /// # Errors
    /// The first event that does not apply.
    pub fn replay<'a>(
        workflow: Arc<Workflow>,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Self, TransitionError> {
        let mut state = Self::new(workflow);
        for event in events {
            state.apply(event)?;
        }
        Ok(state)
    }

    /// The workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    /// The run id (`None` before `run-started`).
    pub fn run_id(&self) -> Option<&RunId> {
        self.run.as_ref()
    }

    /// The status.
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// Where this run came from, if it is a rerun.
    pub fn origin(&self) -> Option<&crate::event::Origin> {
        self.origin.as_ref()
    }

    /// The committed workflow state.
    pub fn state(&self) -> &Value {
        &self.state
    }

    /// The step records, in the order they first started.
    pub fn steps(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps.values()
    }

    /// A step record by path.
    pub fn step(&self, path: &StepPath) -> Option<&StepRecord> {
        self.steps.get(path)
    }

    /// How many events have been applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// What the execution at `path` can read through the host imports.
    ///
    /// `step-result(id)` resolves lexically: a result of node `id` in the
    /// execution's own scope (the same foreach item) first, then in each
    /// enclosing scope out to the top level — never "whichever ran last".
    pub fn view(&self, path: &StepPath) -> StepView {
        // A nested workflow is a world of its own: its steps see its input
        // and its results only.
        let boundary = self.nested_at(path).map(|(node, _)| node);
        let mut results = match boundary {
            Some(_) => Arc::default(),
            None => Arc::clone(&self.results),
        };
        let mut scope = path.scope();
        let mut scopes = Vec::new();
        while let Some(s) = scope {
            scope = s.scope();
            let last = Some(&s) == boundary.as_ref();
            scopes.push(s);
            if last {
                break;
            }
        }
        // Outermost first, so that inner scopes override. A parallel's
        // nodes run at once: none sees another's result.
        for scope in scopes.iter().rev() {
            if self
                .nodes
                .get(scope)
                .is_some_and(|n| matches!(n.progress, Progress::Parallel { .. }))
            {
                continue;
            }
            let start = scope.children_start();
            let prefix = start.as_str();
            let inner = self
                .scoped
                .range(start.clone()..)
                .take_while(|(p, _)| p.as_str().starts_with(prefix))
                .filter(|(p, _)| !p.as_str()[prefix.len()..].contains('/'));
            for (p, output) in inner {
                Arc::make_mut(&mut results).insert(node_id(p), Arc::clone(output));
            }
        }
        StepView {
            workflow_input: self.workflow_input_at(path),
            state: self.state_at(path),
            results,
        }
    }

    /// The innermost nested workflow node `path` runs in (its address and
    /// workflow), if any.
    pub(crate) fn nested_at(&self, path: &StepPath) -> Option<(StepPath, &Arc<Workflow>)> {
        let mut scope = path.scope();
        while let Some(here) = scope {
            if let Some(NodeKind::Workflow { workflow }) =
                self.workflow.node_at(&here).map(|n| &n.kind)
            {
                return Some((here, workflow));
            }
            scope = here.scope();
        }
        None
    }

    /// The workflow input an execution at `path` sees: its nested
    /// workflow's input, else the run's.
    pub(crate) fn workflow_input_at(&self, path: &StepPath) -> Arc<Value> {
        self.nested_at(path)
            .and_then(|(node, _)| self.nodes.get(&node))
            .map_or_else(|| Arc::clone(&self.input), |n| Arc::clone(&n.input))
    }

    /// The innermost foreach item index or loop iteration number `path`
    /// runs in, within its own workflow (a nested workflow does not see
    /// the iteration of the node that runs it).
    pub(crate) fn iteration_at(&self, path: &StepPath) -> Option<u32> {
        let mut scope = path.scope();
        while let Some(here) = scope {
            if let Some((_, Repetition::Item(n) | Repetition::Round(n))) = here.repetition() {
                return Some(n);
            }
            if matches!(
                self.workflow.node_at(&here).map(|n| &n.kind),
                Some(NodeKind::Workflow { .. })
            ) {
                return None;
            }
            scope = here.scope();
        }
        None
    }

    /// The composite node started at `path`, if it did.
    pub fn node(&self, path: &StepPath) -> Option<&NodeRecord> {
        self.nodes.get(path)
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

    /// Applies one event.
    ///
    /// # Errors
    /// When the event does not apply to the current state (see each
    /// [`Event`] variant); the state is then unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<(), TransitionError> {
        self.check(event)?;
        self.transition(event);
        self.applied += 1;
        Ok(())
    }

    /// Checks that `event` applies, without changing anything.
    fn check(&self, event: &Event) -> Result<(), TransitionError> {
        match event {
            Event::RunStarted { workflow, .. } => {
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
                Ok(())
            }
            Event::StepStarted {
                path,
                step,
                attempt,
                ..
            } => {
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
                if *attempt != expected {
                    return Err(self.reject(
                        event,
                        format!("step `{path}` expects attempt {expected}, not {attempt}"),
                    ));
                }
                if self.workflow.step(step).is_none() {
                    return Err(self.reject(event, format!("the workflow has no step `{step}`")));
                }
                Ok(())
            }
            Event::Custom { path, .. }
            | Event::StepCompleted { path, .. }
            | Event::StepFailed { path, .. }
            | Event::StepSuspended { path, .. }
            | Event::StepBailed { path, .. } => self.running_step(event, path),
            Event::StepRetrying { path, attempt, .. } => {
                self.require_running(event)?;
                match self.steps.get(path) {
                    Some(r)
                        if r.status == StepStatus::Failed
                            && r.error.as_ref().is_some_and(|e| e.retryable) =>
                    {
                        if *attempt != r.attempt + 1 {
                            return Err(self.reject(
                                event,
                                format!(
                                    "step `{path}` would retry with attempt {}, not {attempt}",
                                    r.attempt + 1
                                ),
                            ));
                        }
                        Ok(())
                    }
                    Some(r) => Err(self.reject(
                        event,
                        format!("step `{path}` is {:?}, not failed retryably", r.status),
                    )),
                    None => Err(self.reject(event, format!("step `{path}` has not started"))),
                }
            }
            Event::NodeStarted {
                path, input, items, ..
            } => {
                self.require_running(event)?;
                if self.nodes.contains_key(path) {
                    return Err(self.reject(event, format!("node `{path}` has already started")));
                }
                let len = match self.workflow.node_at(path).map(|n| &n.kind) {
                    Some(NodeKind::Foreach { .. }) => input.as_array().map(|a| a.len() as u64),
                    Some(
                        NodeKind::Parallel { .. }
                        | NodeKind::Loop { .. }
                        | NodeKind::Workflow { .. },
                    ) => None,
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
                Ok(())
            }
            Event::SleepStarted { path, .. } => {
                self.require_running(event)?;
                if self.nodes.contains_key(path) {
                    return Err(self.reject(event, format!("sleep `{path}` has already started")));
                }
                match self.workflow.node_at(path).map(|n| &n.kind) {
                    Some(NodeKind::Sleep { .. } | NodeKind::SleepUntil { .. }) => Ok(()),
                    _ => Err(self.reject(event, format!("the workflow has no sleep `{path}`"))),
                }
            }
            Event::BranchDecided { path, arms, .. } => {
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
                Ok(())
            }
            Event::LoopDecided {
                path, iteration, ..
            } => {
                self.require_running(event)?;
                match self.nodes.get(path).map(|n| &n.progress) {
                    Some(Progress::Loop {
                        iteration: current,
                        output: Some(_),
                        stopped: false,
                        ..
                    }) if current == iteration => Ok(()),
                    Some(Progress::Loop { .. }) => Err(self.reject(
                        event,
                        format!("loop `{path}`: iteration {iteration} is not awaiting a decision"),
                    )),
                    _ => Err(self.reject(event, format!("loop `{path}` has not started"))),
                }
            }
            Event::NodeCompleted { path, .. } => {
                self.require_running(event)?;
                match self.nodes.get(path) {
                    Some(node) if node.output.is_none() => Ok(()),
                    Some(_) => Err(self.reject(event, format!("node `{path}` has completed"))),
                    None if matches!(
                        self.workflow.node_at(path).map(|n| &n.kind),
                        Some(NodeKind::Map { .. })
                    ) =>
                    {
                        Ok(())
                    }
                    None => Err(self.reject(event, format!("node `{path}` has not started"))),
                }
            }
            Event::RunSuspended { .. } | Event::RunCompleted { .. } | Event::RunFailed { .. } => {
                self.require_running(event)
            }
            Event::RunResumed { path, .. } => {
                // A running run may have suspended addresses too (a suspended
                // parallel node while others run): the state machine resumes
                // an address in either; `resume` decides when a runtime may.
                if !matches!(self.status, RunStatus::Suspended | RunStatus::Running) {
                    return Err(self.reject(event, format!("the run is {}", self.status)));
                }
                match self.steps.get(path) {
                    Some(r) if r.status == StepStatus::Suspended => Ok(()),
                    _ => Err(self.reject(event, format!("step `{path}` is not suspended"))),
                }
            }
            Event::RunCanceled { .. } => {
                if matches!(self.status, RunStatus::Running | RunStatus::Suspended) {
                    Ok(())
                } else {
                    Err(self.reject(event, format!("the run is {}", self.status)))
                }
            }
        }
    }

    /// Performs a checked event. Must not fail.
    fn transition(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                run,
                input,
                state,
                origin,
                ..
            } => {
                self.origin.clone_from(origin);
                self.run = Some(run.clone());
                self.status = RunStatus::Running;
                self.input = Arc::new(input.clone());
                self.state = Arc::new(state.clone());
            }
            Event::StepStarted {
                path,
                step,
                attempt,
                input,
                at,
            } => {
                self.entered(path);
                let record = self
                    .steps
                    .entry(path.clone())
                    .or_insert_with(|| StepRecord {
                        path: path.clone(),
                        step: step.clone(),
                        status: StepStatus::Running,
                        attempt: *attempt,
                        input: Arc::clone(input),
                        output: None,
                        error: None,
                        started_at: *at,
                        ended_at: None,
                        retry_at: None,
                        suspend_payload: None,
                        labels: Vec::new(),
                        resume_payload: None,
                    });
                record.status = StepStatus::Running;
                record.attempt = *attempt;
                record.input = Arc::clone(input);
                record.started_at = *at;
                record.ended_at = None;
                record.retry_at = None;
                record.error = None;
            }
            Event::Custom { .. } => {}
            Event::StepCompleted {
                path,
                output,
                state,
                at,
            } => {
                self.commit_state(path, state);
                let record = &mut self.steps[path];
                record.status = StepStatus::Success;
                record.output = Some(Arc::clone(output));
                record.ended_at = Some(*at);
                self.completed(path, output);
            }
            Event::StepFailed { path, error, at } => {
                let record = &mut self.steps[path];
                record.error = Some(error.clone());
                record.ended_at = Some(*at);
                record.status = StepStatus::Failed;
            }
            Event::StepRetrying { path, due, .. } => {
                let record = &mut self.steps[path];
                record.status = StepStatus::Retrying;
                record.retry_at = Some(*due);
            }
            Event::StepSuspended {
                path,
                payload,
                labels,
                state,
                at,
            } => {
                self.commit_state(path, state);
                let record = &mut self.steps[path];
                record.status = StepStatus::Suspended;
                record.suspend_payload = Some(payload.clone());
                record.labels = labels.clone();
                record.ended_at = Some(*at);
            }
            Event::StepBailed {
                path,
                output,
                state,
                at,
            } => {
                self.commit_state(path, state);
                let record = &mut self.steps[path];
                record.status = StepStatus::Bailed;
                record.output = Some(Arc::new(output.clone()));
                record.ended_at = Some(*at);
            }
            Event::NodeStarted { path, input, .. } => {
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
                    // `check` allows only foreach, parallel, loop and nested workflow nodes.
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
            }
            Event::BranchDecided {
                path, input, arms, ..
            } => {
                let progress = Progress::Branch {
                    outputs: vec![None; arms.len()],
                    arms: arms.clone(),
                };
                self.started_node(path, input, progress);
            }
            Event::SleepStarted {
                path, input, until, ..
            } => self.started_node(path, input, Progress::Sleep { until: *until }),
            Event::LoopDecided { path, again, .. } => {
                if let Some(Progress::Loop {
                    iteration,
                    input,
                    output,
                    stopped,
                }) = self.nodes.get_mut(path).map(|n| &mut n.progress)
                {
                    if *again {
                        *iteration += 1;
                        *input = output.take().unwrap_or_else(|| Arc::new(Value::Null));
                    } else {
                        *stopped = true;
                    }
                }
            }
            Event::NodeCompleted { path, output, .. } => {
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
            }
            Event::RunSuspended { .. } => self.status = RunStatus::Suspended,
            Event::RunResumed { path, payload, .. } => {
                let record = &mut self.steps[path];
                record.status = StepStatus::Resumed;
                record.resume_payload = Some(payload.clone());
                record.labels.clear();
                self.status = RunStatus::Running;
            }
            Event::RunCompleted { output, at } => {
                self.status = RunStatus::Success;
                self.output = Some(output.clone());
                self.end_unfinished(*at);
            }
            Event::RunFailed { error, at } => {
                self.status = RunStatus::Failed;
                self.error = Some(error.clone());
                self.end_unfinished(*at);
            }
            Event::RunCanceled { at, .. } => {
                self.status = RunStatus::Canceled;
                self.end_unfinished(*at);
            }
        }
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

    /// Whether the failed execution `record` is to be retried: its error is
    /// retryable and its step's policy has attempts left. Consulted only by
    /// the driver deciding; replay reads the recorded `step-retrying`.
    fn retries(&self, record: &StepRecord) -> bool {
        let policy = self
            .workflow
            .step(&record.step)
            .map(|s| s.retry)
            .unwrap_or_default();
        record.error.as_ref().is_some_and(|e| e.retryable) && record.attempt <= policy.max_retries
    }

    fn commit_state(&mut self, path: &StepPath, state: &Option<Value>) {
        if let Some(state) = state {
            self.write_state(path, Arc::new(state.clone()));
        }
    }

    /// The concurrent branch `path` runs in, innermost first: its scope (a
    /// parallel's node, a branch's arm `route/high`, a foreach's item
    /// `items[3]`) and the concurrent node's record.
    fn branch_of(&self, path: &StepPath) -> Option<(StepPath, &NodeRecord)> {
        let mut at = Some(path.clone());
        while let Some(here) = at {
            match here.repetition() {
                Some((node, Repetition::Item(_))) => {
                    return self.nodes.get(&node).map(|r| (here, r));
                }
                // A loop's iterations run one after the other in the loop's
                // own branch: go on from the loop node.
                Some((node, Repetition::Round(_))) => {
                    at = Some(node);
                    continue;
                }
                None => {}
            }
            let parent = here.scope();
            if let Some(record) = parent.as_ref().and_then(|p| self.nodes.get(p))
                && matches!(
                    record.progress,
                    Progress::Parallel { .. } | Progress::Branch { .. }
                )
            {
                return Some((here, record));
            }
            at = parent;
        }
        None
    }

    /// The state an execution at `path` sees: the state of its concurrent
    /// branch (as of the fork, plus the branch's own writes), else the run's.
    fn state_at(&self, path: &StepPath) -> Arc<Value> {
        match self.branch_of(path) {
            Some((scope, record)) => self.forks.get(&scope).unwrap_or(&record.fork).clone(),
            None => Arc::clone(&self.state),
        }
    }

    fn write_state(&mut self, path: &StepPath, state: Arc<Value>) {
        match self.branch_of(path).map(|(scope, _)| scope) {
            Some(scope) => {
                self.forks.insert(scope, state);
            }
            None => self.state = state,
        }
    }

    /// A composite node starts: its record, with the state it forks from.
    fn started_node(&mut self, path: &StepPath, input: &Arc<Value>, progress: Progress) {
        self.entered(path);
        let record = NodeRecord {
            path: path.clone(),
            input: Arc::clone(input),
            output: None,
            progress,
            fork: self.state_at(path),
        };
        self.nodes.insert(path.clone(), record);
    }

    /// Something starts at `path`: when that is inside a foreach item, the
    /// item has started.
    fn entered(&mut self, path: &StepPath) {
        let Some((node, Repetition::Item(i))) = path.scope().and_then(|s| s.repetition()) else {
            return;
        };
        if let Some(Progress::Foreach {
            outputs,
            started,
            active,
            ..
        }) = self.nodes.get_mut(&node).map(|n| &mut n.progress)
        {
            let i = i as usize;
            if outputs.get(i).is_some_and(Option::is_none) {
                active.insert(i);
                *started = (*started).max(i + 1);
            }
        }
    }

    /// The node at `path` finished with `output`: its result becomes
    /// visible, its flow moves on, and a flow that finished hands its
    /// output to the node that runs it.
    fn completed(&mut self, path: &StepPath, output: &Arc<Value>) {
        if path.scope().is_some() {
            self.scoped.insert(path.clone(), Arc::clone(output));
        } else {
            Arc::make_mut(&mut self.results).insert(node_id(path), Arc::clone(output));
        }
        let Some(place) = self.workflow.place(path) else {
            return;
        };
        let scope = path.scope();
        if place.parallel {
            let owner = scope.as_ref().and_then(|s| self.nodes.get_mut(s));
            if let Some(Progress::Parallel { outputs }) = owner.map(|n| &mut n.progress)
                && let Some(slot) = outputs.get_mut(place.index)
            {
                *slot = Some(Arc::clone(output));
            }
            return;
        }
        let cursor = Cursor {
            next: place.index + 1,
            input: Arc::clone(output),
        };
        let Some(scope) = scope else {
            self.cursors.insert(None, cursor);
            return;
        };
        if place.index + 1 < place.len {
            self.cursors.insert(Some(scope), cursor);
            return;
        }
        // The flow in `scope` finished: its owner takes it from here.
        self.cursors.remove(&Some(scope.clone()));
        if let Some(Progress::Workflow { output: slot }) =
            self.nodes.get_mut(&scope).map(|n| &mut n.progress)
        {
            *slot = Some(Arc::clone(output));
            return;
        }
        if let Some((node, repetition)) = scope.repetition() {
            match (
                repetition,
                self.nodes.get_mut(&node).map(|n| &mut n.progress),
            ) {
                (
                    Repetition::Item(i),
                    Some(Progress::Foreach {
                        outputs,
                        active,
                        done,
                        ..
                    }),
                ) => {
                    let i = i as usize;
                    if let Some(slot @ None) = outputs.get_mut(i) {
                        *slot = Some(Arc::clone(output));
                        active.remove(&i);
                        *done += 1;
                    }
                }
                (
                    Repetition::Round(n),
                    Some(Progress::Loop {
                        iteration,
                        output: slot,
                        ..
                    }),
                ) if n == *iteration => *slot = Some(Arc::clone(output)),
                _ => {}
            }
        } else if let Some(owner) = scope.scope() {
            let arm = scope.last();
            if let Some(Progress::Branch { arms, outputs }) =
                self.nodes.get_mut(&owner).map(|n| &mut n.progress)
                && let Some(i) = arms.iter().position(|a| a.as_str() == arm)
            {
                outputs[i] = Some(Arc::clone(output));
            }
        }
    }

    /// A concurrent node at `path` completes: the states its branches wrote
    /// merge into the enclosing state in declaration (item) order. Each
    /// branch's changes are the top-level keys it added, changed or removed
    /// relative to the fork; a branch whose state is not an object replaces
    /// the whole state.
    fn merge(&mut self, path: &StepPath) {
        let Some(record) = self.nodes.get(path) else {
            return;
        };
        let scopes: Vec<StepPath> = match (&record.progress, self.workflow.node_at(path)) {
            (Progress::Foreach { items, .. }, _) => (0..items.len())
                .map(|i| path.iteration(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect(),
            (Progress::Branch { arms, .. }, _) => arms.iter().map(|a| path.child(a)).collect(),
            (Progress::Parallel { .. }, Some(node)) => match &node.kind {
                NodeKind::Parallel { nodes } => nodes.iter().map(|n| path.child(&n.id)).collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        if scopes.iter().all(|s| !self.forks.contains_key(s)) {
            return;
        }
        let fork = Arc::clone(&record.fork);
        let mut merged = Value::clone(&fork);
        for scope in &scopes {
            if let Some(written) = self.forks.remove(scope) {
                merge_changes(&mut merged, &fork, &written);
            }
        }
        self.write_state(path, Arc::new(merged));
    }

    fn task(
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

    fn finish_with(&self, output: &Value, step: Option<StepPath>) -> Finish {
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

    fn suspended_paths(&self) -> Vec<StepPath> {
        self.steps
            .values()
            .filter(|r| r.status == StepStatus::Suspended)
            .map(|r| r.path.clone())
            .collect()
    }

    /// Turns a resume request into the `run-resumed` events to append (one,
    /// or one per suspended address for [`ResumeTarget::All`]), after
    /// checking the run is suspended — or running with suspended addresses,
    /// which only the runtime driving it may resume (see
    /// [`RunState::resume_stored`]) — resolving the target and validating
    /// the payload against each step's resume schema.
    ///
    /// # Errors
    /// A [`ResumeError`] naming the run, the step and what is wrong.
    pub fn resume(
        &self,
        target: &ResumeTarget,
        payload: Value,
        at: Timestamp,
    ) -> Result<Vec<Event>, ResumeError> {
        let run = self
            .run
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        let suspended = self.suspended_paths();
        // A running run with suspended addresses (a suspended parallel node
        // while others run) can be resumed by the runtime driving it.
        let resumable = match self.status {
            RunStatus::Suspended => true,
            RunStatus::Running => !suspended.is_empty(),
            _ => false,
        };
        if !resumable {
            return Err(ResumeError::NotSuspended {
                run,
                status: self.status.to_string(),
            });
        }
        let list = |paths: &[StepPath]| {
            paths
                .iter()
                .map(StepPath::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let paths = match target {
            ResumeTarget::All => suspended.clone(),
            ResumeTarget::Only => match suspended.as_slice() {
                [only] => vec![only.clone()],
                _ => {
                    return Err(ResumeError::Ambiguous {
                        run,
                        suspended: list(&suspended),
                    });
                }
            },
            ResumeTarget::Path(path) => vec![{
                if !self.steps.contains_key(path) && !self.workflow.has_path(path) {
                    return Err(ResumeError::UnknownStep {
                        run,
                        path: path.to_string(),
                        suspended: list(&suspended),
                    });
                }
                if !suspended.contains(path) {
                    return Err(ResumeError::NotSuspendedStep {
                        run,
                        path: path.to_string(),
                        suspended: list(&suspended),
                    });
                }
                path.clone()
            }],
            ResumeTarget::Label(label) => {
                let mut matching = self
                    .steps
                    .values()
                    .filter(|r| r.status == StepStatus::Suspended && r.labels.contains(label));
                match (matching.next(), matching.next()) {
                    (Some(r), None) => vec![r.path.clone()],
                    (Some(_), Some(_)) => {
                        return Err(ResumeError::Ambiguous {
                            run,
                            suspended: list(&suspended),
                        });
                    }
                    (None, _) => {
                        let mut known: Vec<&str> = self
                            .steps
                            .values()
                            .filter(|r| r.status == StepStatus::Suspended)
                            .flat_map(|r| r.labels.iter().map(String::as_str))
                            .collect();
                        known.sort_unstable();
                        known.dedup();
                        return Err(ResumeError::UnknownLabel {
                            run,
                            label: label.clone(),
                            known: known.join(", "),
                        });
                    }
                }
            }
        };
        let mut events = Vec::with_capacity(paths.len());
        for path in paths {
            let step = &self.steps[&path].step;
            if let Some(schema) = self
                .workflow
                .step(step)
                .and_then(|s| s.resume_schema.as_ref())
            {
                schema
                    .validate(&payload)
                    .map_err(|e| ResumeError::InvalidPayload {
                        run: run.clone(),
                        path: path.to_string(),
                        message: e.message,
                    })?;
            }
            events.push(Event::RunResumed {
                path,
                payload: payload.clone(),
                at,
            });
        }
        Ok(events)
    }

    /// [`RunState::resume`] for a runtime that does not drive the run (it
    /// loaded it from the store): the run must be suspended, since a running
    /// run is being driven by someone else.
    ///
    /// # Errors
    /// As [`RunState::resume`].
    pub fn resume_stored(
        &self,
        target: &ResumeTarget,
        payload: Value,
        at: Timestamp,
    ) -> Result<Vec<Event>, ResumeError> {
        if self.status != RunStatus::Suspended {
            return Err(ResumeError::NotSuspended {
                run: self
                    .run
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                status: self.status.to_string(),
            });
        }
        self.resume(target, payload, at)
    }

    /// The `run-canceled` event that cancels this run, after checking it is
    /// running or suspended.
    ///
    /// # Errors
    /// [`ResumeError::NotCancelable`] when the run has not started or has finished.
    pub fn cancel(&self, reason: Option<String>, at: Timestamp) -> Result<Event, ResumeError> {
        if matches!(self.status, RunStatus::Running | RunStatus::Suspended) {
            Ok(Event::RunCanceled { reason, at })
        } else {
            Err(ResumeError::NotCancelable {
                run: self
                    .run
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                status: self.status.to_string(),
            })
        }
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
            state: (*self.state).clone(),
        }
    }
}

/// Applies to `merged` the top-level changes `written` makes to `fork`.
fn merge_changes(merged: &mut Value, fork: &Value, written: &Value) {
    match (merged, fork, written) {
        (Value::Object(merged), Value::Object(fork), Value::Object(written)) => {
            for (key, value) in written {
                if fork.get(key) != Some(value) {
                    merged.insert(key.clone(), value.clone());
                }
            }
            for key in fork.keys() {
                if !written.contains_key(key) {
                    merged.remove(key);
                }
            }
        }
        (merged, fork, written) => {
            if fork != written {
                *merged = written.clone();
            }
        }
    }
}

/// The node id of the last segment of `path` (without an iteration index):
/// the key of `step-result`.
fn node_id(path: &StepPath) -> StepId {
    let last = path.as_str().rsplit('/').next().unwrap_or_default();
    let id = last.split(['[', '#']).next().unwrap_or_default();
    StepId::new(id).unwrap_or_else(|_| StepId::new("invalid").expect("valid literal id"))
}
