//! The state machine: [`RunState::apply`] and [`RunState::ready`].
//!
//! Invariants:
//! - the state changes only in `apply`, and `apply` either applies an event
//!   completely or rejects it and changes nothing;
//! - `ready` is a pure function of the state (and the workflow it was built
//!   for): the same events always yield the same next work, in any runtime.
//!
//! This file holds [`RunState`] itself; the rest is split by concern:
//! - `rules`: one rule per [`Event`], checking it and applying it;
//! - `records`: the run's and each execution's status and records;
//! - `progress`: how far each flow and composite node got;
//! - `fork`: the state each concurrent branch forks and merges back;
//! - `view`: what an execution sees, resolved from its address;
//! - `flow`: the interpreter that finds the ready [`Work`];
//! - `work`: that work, and the task of each step attempt;
//! - `requests`: resume and cancel requests, validated into events;
//! - `result`: how a run finishes and the [`RunResult`] it reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;

use crate::budget::Usage;
use crate::error::{RunError, TransitionError};
use crate::event::Event;
use crate::id::{RunId, StepId, StepPath};
use crate::workflow::Workflow;

mod flow;
mod fork;
mod progress;
mod records;
mod requests;
mod result;
mod rules;
#[cfg(test)]
mod tests;
mod view;
mod work;

pub use records::{NodeRecord, RunStatus, StepRecord, StepStatus};
pub use requests::ResumeTarget;
pub use result::{Finish, RunResult, SuspendedStep, Timer, TimerKind};
pub use work::{Wake, Work};

use progress::Cursor;

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
    /// What the run has recorded so far (its budgets' measure).
    usage: Usage,
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
            usage: Usage::default(),
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
        self.usage.events
    }

    /// What the run has recorded: its events, their bytes and its attempts,
    /// counted as they applied (so a replay counts the same).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The composite node started at `path`, if it did.
    pub fn node(&self, path: &StepPath) -> Option<&NodeRecord> {
        self.nodes.get(path)
    }

    /// Applies one event.
    ///
    /// # Errors
    /// When the event does not apply to the current state (see each
    /// [`Event`] variant); the state is then unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<(), TransitionError> {
        self.apply_costing(event, Usage::of(event))
    }

    /// [`RunState::apply`] of an event whose cost is known already.
    pub(crate) fn apply_costing(
        &mut self,
        event: &Event,
        cost: Usage,
    ) -> Result<(), TransitionError> {
        self.follow_rule(event)?;
        self.usage = self.usage.plus(cost);
        Ok(())
    }
}
