//! The interpreter: what is ready to happen in a run, found by walking the
//! flow with the run's records.
//!
//! A flow runs its nodes in order, each node's output being the next one's
//! input. A node evaluates to one [`Eval`]: done with an output, work to do
//! now, waiting (attempts in flight, or only suspended executions left),
//! failed, or bailed. Composite nodes evaluate their nested flows with
//! nested addresses (`items[3]/enrich`), so every execution has its own
//! record, its own suspension and its own idempotency key.

use std::sync::Arc;

use serde_json::Value;

use super::{Finish, NodeRecord, RunState, RunStatus, StepStatus, Work};
use crate::error::{FailureKind, RunError, StepError};
use crate::id::{StepId, StepPath};
use crate::workflow::{Node, NodeKind};

/// What a node (or a flow) amounts to now.
enum Eval {
    /// Finished with this output.
    Done(Arc<Value>),
    /// Something can happen now (other parts may be waiting).
    Work(Vec<Work>),
    /// Nothing can happen until an attempt reports (`suspended: false`) or
    /// a suspended execution is resumed (`suspended: true`: nothing is in
    /// flight).
    Waiting { suspended: bool },
    /// Failed for good.
    Failed(RunError),
    /// A step bailed: the workflow ends with this output.
    Bailed { output: Arc<Value>, path: StepPath },
}

impl RunState {
    /// The work that is ready now: attempts to start, decisions to record,
    /// or the run's end. Empty when the run is not running or waits for
    /// attempts in flight.
    pub fn ready(&self) -> Vec<Work> {
        if self.status != RunStatus::Running {
            return Vec::new();
        }
        match self.flow(self.workflow.flow(), None, &self.input, None) {
            Eval::Done(output) => vec![Work::Finish(self.finish_with(&output, None))],
            Eval::Work(work) => work,
            Eval::Waiting { suspended: true } => {
                vec![Work::Finish(Finish::Suspended(self.suspended_paths()))]
            }
            Eval::Waiting { suspended: false } => Vec::new(),
            Eval::Failed(error) => vec![Work::Finish(Finish::Failed(error))],
            Eval::Bailed { output, path } => {
                vec![Work::Finish(self.finish_with(&output, Some(path)))]
            }
        }
    }

    /// Runs `nodes` in order in `scope` (`None`: the top level), starting
    /// from `input`.
    fn flow(
        &self,
        nodes: &[Node],
        scope: Option<&StepPath>,
        input: &Arc<Value>,
        iteration: Option<u32>,
    ) -> Eval {
        let mut input = Arc::clone(input);
        for node in nodes {
            let path = scope.map_or_else(|| StepPath::root(&node.id), |s| s.child(&node.id));
            match self.eval_node(node, path, &input, iteration) {
                Eval::Done(output) => input = output,
                other => return other,
            }
        }
        Eval::Done(input)
    }

    fn eval_node(
        &self,
        node: &Node,
        path: StepPath,
        input: &Arc<Value>,
        iteration: Option<u32>,
    ) -> Eval {
        match &node.kind {
            NodeKind::Step { step } => self.step_node(step, path, input, iteration),
            NodeKind::Foreach { body, concurrency } => match self.nodes.get(&path) {
                None => start_foreach(path, input),
                Some(record) => self.foreach(record, body, *concurrency),
            },
            // `WorkflowBuilder::build` rejects every other node kind.
            other => Eval::Failed(RunError {
                step: Some(path),
                error: StepError::host(
                    FailureKind::Host,
                    format!("`{}` nodes are not implemented", other.name()),
                ),
            }),
        }
    }

    fn step_node(
        &self,
        step: &StepId,
        path: StepPath,
        input: &Arc<Value>,
        iteration: Option<u32>,
    ) -> Eval {
        let Some(record) = self.steps.get(&path) else {
            return Eval::Work(vec![Work::Execute(
                self.task(None, path, step, input, iteration),
            )]);
        };
        match record.status {
            StepStatus::Success => Eval::Done(
                record
                    .output
                    .clone()
                    .unwrap_or_else(|| Arc::new(Value::Null)),
            ),
            // A canceled run is not running: `ready` returned already.
            StepStatus::Running | StepStatus::Canceled => Eval::Waiting { suspended: false },
            StepStatus::Retrying | StepStatus::Resumed => Eval::Work(vec![Work::Execute(
                self.task(Some(record), path, step, input, iteration),
            )]),
            StepStatus::Suspended => Eval::Waiting { suspended: true },
            StepStatus::Failed if self.retries(record) => {
                let policy = self
                    .workflow
                    .step(step)
                    .map(|s| s.retry)
                    .unwrap_or_default();
                let failed_at = record.ended_at.unwrap_or(record.started_at);
                Eval::Work(vec![Work::Retry {
                    path,
                    attempt: record.attempt + 1,
                    due: failed_at.plus_millis(policy.delay_before(record.attempt + 1)),
                }])
            }
            StepStatus::Failed => Eval::Failed(RunError {
                step: Some(path),
                error: record.error.clone().unwrap_or_else(|| {
                    StepError::host(FailureKind::Host, "step failed without an error")
                }),
            }),
            StepStatus::Bailed => Eval::Bailed {
                output: record
                    .output
                    .clone()
                    .unwrap_or_else(|| Arc::new(Value::Null)),
                path,
            },
        }
    }

    /// A started foreach: its items run the body in their own scopes
    /// (`path[i]`), at most `concurrency` at once, started in item order.
    /// The output is the items' outputs in item order; the first failed item
    /// (in item order) fails the node, and no new item starts after it.
    fn foreach(&self, record: &NodeRecord, body: &[Node], concurrency: u32) -> Eval {
        if let Some(output) = &record.output {
            return Eval::Done(Arc::clone(output));
        }
        let mut outputs = Vec::with_capacity(record.items.len());
        let mut work = Vec::new();
        let (mut active, mut in_flight, mut suspended) = (0u32, false, false);
        for (index, item) in record.items.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let scope = record.path.iteration(index);
            if !self.scopes.contains(&scope) && active >= concurrency {
                // Items start in order: no later one has started either.
                break;
            }
            match self.flow(body, Some(&scope), item, Some(index)) {
                Eval::Done(output) => outputs.push(output),
                Eval::Work(more) => {
                    active += 1;
                    work.extend(more);
                }
                Eval::Waiting { suspended: s } => {
                    active += 1;
                    suspended |= s;
                    in_flight |= !s;
                }
                failed_or_bailed => return failed_or_bailed,
            }
        }
        if outputs.len() == record.items.len() {
            let output = Value::Array(outputs.iter().map(|o| Value::clone(o)).collect());
            return Eval::Work(vec![Work::CompleteNode {
                path: record.path.clone(),
                output,
            }]);
        }
        if !work.is_empty() {
            return Eval::Work(work);
        }
        Eval::Waiting {
            suspended: suspended && !in_flight,
        }
    }
}

/// A foreach that has not started: record its fan-out, or fail when its
/// input is not an array.
fn start_foreach(path: StepPath, input: &Arc<Value>) -> Eval {
    match input.as_array() {
        Some(items) => Eval::Work(vec![Work::StartNode {
            items: Some(u32::try_from(items.len()).unwrap_or(u32::MAX)),
            input: Arc::clone(input),
            path,
        }]),
        None => Eval::Failed(RunError {
            error: StepError::host(
                FailureKind::InvalidInput,
                format!(
                    "foreach `{path}`: its input must be an array, not {}",
                    kind_of(input)
                ),
            ),
            step: Some(path),
        }),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
