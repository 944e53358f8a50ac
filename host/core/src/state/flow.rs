//! The interpreter: what is ready to happen in a run, found by walking the
//! flow with the run's records.
//!
//! A flow runs its nodes in order, each node's output being the next one's
//! input. A node evaluates to one [`Eval`]: done with an output, work to do
//! now, waiting (attempts in flight, or only suspended executions left),
//! failed, or bailed. Composite nodes evaluate their nested flows with
//! nested addresses (`items[3]/enrich`, `checks/fraud`, `again#2/check`,
//! `route/high/notify`), so every execution has its own record, its own
//! suspension and its own idempotency key.
//!
//! The walk is incremental: a flow resumes at its cursor (the first node not
//! finished, kept up to date by `apply`), and a composite node visits only
//! its unfinished parts (a foreach: the items in progress), so finding the
//! next work costs what is in progress, not the size of the run.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::progress::Progress;
use super::{Finish, NodeRecord, RunState, RunStatus, StepStatus, Wake, Work};
use crate::error::{ErrorCause, FailureKind, RunError, StepError};
use crate::expr::Expr;
use crate::id::{StepId, StepPath, Timestamp};
use crate::workflow::{Arm, LoopKind, Node, NodeKind, Workflow};

/// What a node (or a flow) amounts to now.
pub(super) enum Eval {
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

/// The parts of a concurrent node (a parallel's nodes, a branch's arms, a
/// foreach's items), joined. A part that failed (or bailed) stops new work
/// in the node; the node then records what the other parts already decided,
/// waits for the parts in flight and ends with the first such outcome in
/// declaration (item) order, whatever order the parts finished in.
#[derive(Default)]
struct Join {
    work: Vec<Work>,
    ended: Option<Eval>,
    in_flight: bool,
    suspended: bool,
    pending: bool,
}

impl Join {
    fn add(&mut self, eval: Eval) {
        match eval {
            Eval::Done(_) => return,
            Eval::Work(work) => self.work.extend(work),
            Eval::Waiting { suspended: true } => self.suspended = true,
            Eval::Waiting { suspended: false } => self.in_flight = true,
            ended @ (Eval::Failed(_) | Eval::Bailed { .. }) => {
                if self.ended.is_none() {
                    self.ended = Some(ended);
                }
            }
        }
        self.pending = true;
    }

    /// Whether a part ended the node: start nothing new.
    fn stopped(&self) -> bool {
        self.ended.is_some()
    }

    fn finish(self, complete: impl FnOnce() -> Work) -> Eval {
        if let Some(ended) = self.ended {
            // What already happened is still recorded (a retry decided for a
            // failure, a loop's decision, a nested node's completion), so
            // that the log does not depend on which part finished first;
            // what would start something new is not.
            let records: Vec<Work> = self
                .work
                .into_iter()
                .filter(|w| {
                    matches!(
                        w,
                        Work::Retry { .. } | Work::DecideLoop { .. } | Work::CompleteNode { .. }
                    )
                })
                .collect();
            return if !records.is_empty() {
                Eval::Work(records)
            } else if self.in_flight {
                Eval::Waiting { suspended: false }
            } else {
                ended
            };
        }
        if !self.work.is_empty() {
            return Eval::Work(self.work);
        }
        if !self.pending {
            return Eval::Work(vec![complete()]);
        }
        Eval::Waiting {
            suspended: self.suspended && !self.in_flight,
        }
    }
}

impl RunState {
    /// The work that is ready now: attempts to start, decisions to record,
    /// or the run's end. Empty when the run is not running or waits for
    /// attempts in flight.
    pub fn ready(&self) -> Vec<Work> {
        if self.status != RunStatus::Running {
            return Vec::new();
        }
        match self.flow(self.workflow.flow(), None, &self.input) {
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
    /// from `input` — or from the flow's cursor, once a node finished.
    fn flow(&self, nodes: &[Node], scope: Option<&StepPath>, input: &Arc<Value>) -> Eval {
        let (start, mut input) = match self.cursors.get(&scope.cloned()) {
            Some(cursor) => (cursor.next, Arc::clone(&cursor.input)),
            None => (
                0,
                self.rerun_input(scope).unwrap_or_else(|| Arc::clone(input)),
            ),
        };
        for node in nodes.iter().skip(start) {
            let path = scope.map_or_else(|| StepPath::root(&node.id), |s| s.child(&node.id));
            if let Some(given) = self.rerun_input(Some(&path)) {
                input = given;
            }
            match self.eval_node(node, path, &input) {
                Eval::Done(output) => input = output,
                other => return other,
            }
        }
        Eval::Done(input)
    }

    /// The input a rerun gives the address `at` it starts from, until that
    /// address has started (its record then holds its input).
    fn rerun_input(&self, at: Option<&StepPath>) -> Option<Arc<Value>> {
        let origin = self.origin.as_ref()?;
        let given = origin.input.as_ref()?;
        let at = at?;
        if origin.from != *at || self.steps.contains_key(at) || self.nodes.contains_key(at) {
            return None;
        }
        Some(Arc::new(given.clone()))
    }

    fn eval_node(&self, node: &Node, path: StepPath, input: &Arc<Value>) -> Eval {
        let record = self.nodes.get(&path);
        if let Some(output) = record.and_then(|r| r.output.as_ref()) {
            return Eval::Done(Arc::clone(output));
        }
        match (&node.kind, record) {
            (NodeKind::Step { step }, _) => self.step_node(step, path, input),
            (NodeKind::Foreach { .. }, None) => start_foreach(path, input),
            (NodeKind::Parallel { .. }, None) => Eval::Work(vec![Work::StartNode {
                path,
                input: Arc::clone(input),
                items: None,
            }]),
            (NodeKind::Loop { .. }, None) => Eval::Work(vec![Work::StartNode {
                path,
                input: Arc::clone(input),
                items: None,
            }]),
            (NodeKind::Branch { arms }, None) => self.decide_branch(path, arms, input),
            (NodeKind::Map { fields }, _) => self.map(path, fields, input),
            (NodeKind::Sleep { duration_ms }, None) => Eval::Work(vec![Work::Sleep {
                path,
                input: Arc::clone(input),
                wake: Wake::After(*duration_ms),
            }]),
            (NodeKind::SleepUntil { until }, None) => self.sleep_until(path, until, input),
            (NodeKind::Workflow { workflow }, None) => {
                match workflow.input_schema().map(|s| s.validate(input)) {
                    Some(Err(e)) => Eval::Failed(RunError {
                        error: StepError::host(
                            FailureKind::InvalidInput,
                            format!(
                                "nested workflow `{}` at `{path}`: its input fails the workflow's input schema: {e}",
                                workflow.id()
                            ),
                        ),
                        step: Some(path),
                    }),
                    _ => Eval::Work(vec![Work::StartNode {
                        path,
                        input: Arc::clone(input),
                        items: None,
                    }]),
                }
            }
            (NodeKind::Workflow { workflow }, Some(record)) => self.nested(record, workflow),
            (NodeKind::Sleep { .. } | NodeKind::SleepUntil { .. }, Some(record)) => {
                let Progress::Sleep { until } = record.progress else {
                    return mismatch(record);
                };
                Eval::Work(vec![Work::Wake {
                    path,
                    due: until,
                    output: Arc::clone(&record.input),
                }])
            }
            (NodeKind::Foreach { body, concurrency }, Some(record)) => {
                self.foreach(record, body, *concurrency)
            }
            (NodeKind::Parallel { nodes }, Some(record)) => self.parallel(record, nodes),
            (NodeKind::Branch { arms }, Some(record)) => self.branch(record, arms),
            (
                NodeKind::Loop {
                    kind,
                    body,
                    condition,
                    max_iterations,
                },
                Some(record),
            ) => self.looping(
                record,
                *kind,
                body,
                condition,
                max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS),
            ),
        }
    }

    fn step_node(&self, step: &StepId, path: StepPath, input: &Arc<Value>) -> Eval {
        let Some(record) = self.steps.get(&path) else {
            return Eval::Work(vec![Work::Execute(self.task(None, path, step, input))]);
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
                self.task(Some(record), path, step, input),
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
    /// The output is the items' outputs in item order.
    fn foreach(&self, record: &NodeRecord, body: &[Node], concurrency: u32) -> Eval {
        let Progress::Foreach {
            items,
            outputs,
            started,
            active,
            done,
        } = &record.progress
        else {
            return mismatch(record);
        };
        let complete = || Work::CompleteNode {
            path: record.path.clone(),
            output: Value::Array(outputs.iter().flatten().map(|o| Value::clone(o)).collect()),
        };
        if *done == items.len() {
            return Eval::Work(vec![complete()]);
        }
        let mut join = Join::default();
        for &i in active {
            let scope = record.path.iteration(index(i));
            join.add(self.flow(body, Some(&scope), &items[i]));
        }
        let mut next = *started;
        let mut running = active.len();
        while !join.stopped() && next < items.len() && running < concurrency as usize {
            let scope = record.path.iteration(index(next));
            join.add(self.flow(body, Some(&scope), &items[next]));
            next += 1;
            running += 1;
        }
        // Items not finished keep the node pending, started or not.
        join.pending = true;
        join.finish(complete)
    }

    /// A started nested workflow: its flow runs at `<node>/…` on the node's
    /// input; its output (checked against the workflow's output schema) is
    /// the node's. A bail inside ends the nested workflow (its output is the
    /// bail's), not the run; a failure inside fails the node with the
    /// failure as its first cause.
    fn nested(&self, record: &NodeRecord, workflow: &Workflow) -> Eval {
        let Progress::Workflow { output } = &record.progress else {
            return mismatch(record);
        };
        let path = &record.path;
        let output = match output {
            Some(output) => Arc::clone(output),
            None => match self.flow(workflow.flow(), Some(path), &record.input) {
                Eval::Done(output) | Eval::Bailed { output, .. } => output,
                Eval::Failed(inner) => return Eval::Failed(nested_failure(path, workflow, inner)),
                other => return other,
            },
        };
        if let Some(Err(e)) = workflow.output_schema().map(|s| s.validate(&output)) {
            return Eval::Failed(RunError {
                step: Some(path.clone()),
                error: StepError::host(
                    FailureKind::InvalidOutput,
                    format!(
                        "nested workflow `{}` at `{path}`: its output fails the workflow's output schema: {e}",
                        workflow.id()
                    ),
                ),
            });
        }
        Eval::Work(vec![Work::CompleteNode {
            path: path.clone(),
            output: Value::clone(&output),
        }])
    }

    /// A started parallel: every node runs on the parallel's input at once;
    /// the output is an object keyed by node id.
    fn parallel(&self, record: &NodeRecord, nodes: &[Node]) -> Eval {
        let Progress::Parallel { outputs, .. } = &record.progress else {
            return mismatch(record);
        };
        let mut join = Join::default();
        for (node, output) in nodes.iter().zip(outputs) {
            if output.is_none() {
                let path = record.path.child(&node.id);
                let input = self
                    .rerun_input(Some(&path))
                    .unwrap_or_else(|| Arc::clone(&record.input));
                join.add(self.eval_node(node, path, &input));
            }
        }
        join.finish(|| Work::CompleteNode {
            path: record.path.clone(),
            output: keyed(nodes.iter().map(|n| &n.id), outputs),
        })
    }
}

/// The `max-iterations` of a loop that does not say.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;

/// The variables of an expression evaluated at an address (see README,
/// *Expressions*).
struct Scope<'a> {
    /// Where it is evaluated: its lexical scope decides `steps` and `state`.
    at: &'a StepPath,
    input: &'a Value,
    output: Option<&'a Value>,
    iteration: Option<u32>,
}

impl RunState {
    /// Evaluates `expr` in `scope`, binding only the variables it reads.
    fn evaluate(&self, expr: &Expr, scope: &Scope<'_>) -> Result<Value, String> {
        let workflow = expr
            .reads("workflow")
            .then(|| serde_json::json!({ "input": &*self.workflow_input_at(scope.at) }));
        let steps = expr.reads("steps").then(|| {
            let view = self.view(scope.at);
            Value::Object(
                view.results
                    .iter()
                    .map(|(id, output)| (id.to_string(), Value::clone(output)))
                    .collect(),
            )
        });
        let state = self.state_at(scope.at);
        let iteration = scope
            .iteration
            .or_else(|| self.iteration_at(scope.at))
            .map(Value::from);
        let mut variables: Vec<(&str, &Value)> = vec![("input", scope.input), ("state", &state)];
        if let Some(workflow) = &workflow {
            variables.push(("workflow", workflow));
        }
        if let Some(steps) = &steps {
            variables.push(("steps", steps));
        }
        if let Some(output) = scope.output {
            variables.push(("output", output));
        }
        if let Some(iteration) = &iteration {
            variables.push(("iteration", iteration));
        }
        expr.evaluate(&variables)
    }

    /// Evaluates a condition (it must yield a boolean).
    fn condition(&self, expr: &Expr, scope: &Scope<'_>) -> Result<bool, String> {
        match self.evaluate(expr, scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "the condition yields {}, not a boolean",
                kind_of(&other)
            )),
        }
    }

    /// A branch that has not started: evaluate every arm's condition and
    /// record the arms that run.
    fn decide_branch(&self, path: StepPath, arms: &[Arm], input: &Arc<Value>) -> Eval {
        let scope = Scope {
            at: &path,
            input,
            output: None,
            iteration: None,
        };
        let mut chosen = Vec::new();
        for arm in arms {
            let Some(when) = &arm.when else { continue };
            match self.condition(when, &scope) {
                Ok(true) => chosen.push(arm.id.clone()),
                Ok(false) => {}
                Err(message) => {
                    return expression_failed(
                        &path,
                        format!(
                            "branch `{path}`, arm `{}`: `{}`: {message}",
                            arm.id,
                            when.text()
                        ),
                    );
                }
            }
        }
        if chosen.is_empty()
            && let Some(otherwise) = arms.iter().find(|a| a.when.is_none())
        {
            chosen.push(otherwise.id.clone());
        }
        Eval::Work(vec![Work::DecideBranch {
            path,
            input: Arc::clone(input),
            arms: chosen,
        }])
    }

    /// A decided branch: its arms run at once, each at `<branch>/<arm>/…`
    /// on the branch's input; the output is an object keyed by arm id.
    fn branch(&self, record: &NodeRecord, arms: &[Arm]) -> Eval {
        let Progress::Branch {
            arms: chosen,
            outputs,
        } = &record.progress
        else {
            return mismatch(record);
        };
        let mut join = Join::default();
        for (id, output) in chosen.iter().zip(outputs) {
            let Some(arm) = arms.iter().find(|a| a.id == *id) else {
                return mismatch(record);
            };
            if output.is_none() {
                let scope = record.path.child(id);
                join.add(self.flow(&arm.flow, Some(&scope), &record.input));
            }
        }
        join.finish(|| Work::CompleteNode {
            path: record.path.clone(),
            output: keyed(chosen.iter(), outputs),
        })
    }

    /// A started loop: run the current iteration's body at `<loop>#<n>/…`,
    /// then decide on the condition whether another iteration runs on the
    /// body's output.
    fn looping(
        &self,
        record: &NodeRecord,
        kind: LoopKind,
        body: &[Node],
        condition: &Expr,
        max_iterations: u32,
    ) -> Eval {
        let Progress::Loop {
            iteration,
            input,
            output,
            stopped,
        } = &record.progress
        else {
            return mismatch(record);
        };
        let path = &record.path;
        let round = path.round(*iteration);
        let output = match output {
            Some(output) => Arc::clone(output),
            None => match self.flow(body, Some(&round), input) {
                Eval::Done(output) => output,
                other => return other,
            },
        };
        if *stopped {
            return Eval::Work(vec![Work::CompleteNode {
                path: path.clone(),
                output: Value::clone(&output),
            }]);
        }
        // Evaluated inside the iteration just run: `steps` sees its results.
        let at = round.child(&StepId::new("condition").expect("valid literal id"));
        let scope = Scope {
            at: &at,
            input,
            output: Some(&output),
            iteration: Some(*iteration),
        };
        let (name, holds) = match kind {
            LoopKind::DoWhile => ("while", self.condition(condition, &scope)),
            LoopKind::DoUntil => ("until", self.condition(condition, &scope).map(|b| !b)),
        };
        let again = match holds {
            Ok(again) => again,
            Err(message) => {
                return expression_failed(
                    path,
                    format!(
                        "loop `{path}`, `{name}` after iteration {iteration}: `{}`: {message}",
                        condition.text()
                    ),
                );
            }
        };
        if again && *iteration >= max_iterations {
            return Eval::Failed(RunError {
                step: Some(path.clone()),
                error: StepError::host(
                    FailureKind::MaxIterations,
                    format!(
                        "loop `{path}` ran {iteration} iterations (its `max-iterations`) and its `{name}` condition asks for another"
                    ),
                ),
            });
        }
        Eval::Work(vec![Work::DecideLoop {
            path: path.clone(),
            iteration: *iteration,
            again,
        }])
    }

    /// A map: its output is an object of its fields' values.
    fn map(&self, path: StepPath, fields: &IndexMap<String, Expr>, input: &Arc<Value>) -> Eval {
        let scope = Scope {
            at: &path,
            input,
            output: None,
            iteration: None,
        };
        let mut output = Map::new();
        for (name, expr) in fields {
            match self.evaluate(expr, &scope) {
                Ok(value) => {
                    output.insert(name.clone(), value);
                }
                Err(message) => {
                    return expression_failed(
                        &path,
                        format!("map `{path}`, field `{name}`: `{}`: {message}", expr.text()),
                    );
                }
            }
        }
        Eval::Work(vec![Work::CompleteNode {
            path,
            output: Value::Object(output),
        }])
    }
}

impl RunState {
    /// A `sleep-until` that has not started: its expression decides the
    /// wake time, once (recorded in `sleep-started`).
    fn sleep_until(&self, path: StepPath, until: &Expr, input: &Arc<Value>) -> Eval {
        let scope = Scope {
            at: &path,
            input,
            output: None,
            iteration: None,
        };
        let wake = self
            .evaluate(until, &scope)
            .and_then(|value| wake_time(&value));
        match wake {
            Ok(at) => Eval::Work(vec![Work::Sleep {
                path,
                input: Arc::clone(input),
                wake: Wake::At(at),
            }]),
            Err(message) => expression_failed(
                &path,
                format!("sleep-until `{path}`: `{}`: {message}", until.text()),
            ),
        }
    }
}

/// The time a `sleep-until` expression's value names: a timestamp (CEL
/// `timestamp(…)`, which reaches JSON as RFC 3339 text), RFC 3339 text, or
/// an integer of milliseconds since the Unix epoch.
fn wake_time(value: &Value) -> Result<Timestamp, String> {
    match value {
        Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp: {e}"))
            .map(|t| Timestamp(u64::try_from(t.timestamp_micros()).unwrap_or(0))),
        Value::Number(n) => match n.as_u64() {
            Some(millis) => Ok(Timestamp(0).plus_millis(millis)),
            None => Err(format!(
                "{n} is not a time (milliseconds since the Unix epoch must be a non-negative integer)"
            )),
        },
        other => Err(format!("yields {}, not a timestamp", kind_of(other))),
    }
}

/// The failure of a nested workflow node at `path` whose flow failed with
/// `inner`: same kind and code, the inner failure as its first cause.
fn nested_failure(path: &StepPath, workflow: &Workflow, inner: RunError) -> RunError {
    let at = inner
        .step
        .as_ref()
        .map_or_else(|| path.to_string(), ToString::to_string);
    let error = inner.error;
    let mut causes = Vec::with_capacity(error.causes.len() + 1);
    causes.push(ErrorCause {
        code: error.code.clone(),
        message: error.message.clone(),
        details: error.details.clone(),
    });
    causes.extend(error.causes);
    RunError {
        step: Some(path.clone()),
        error: StepError {
            kind: error.kind,
            code: error.code,
            message: format!(
                "nested workflow `{}` failed at `{at}`: {}",
                workflow.id(),
                error.message
            ),
            details: error.details,
            retryable: false,
            causes,
        },
    }
}

fn expression_failed(path: &StepPath, message: String) -> Eval {
    Eval::Failed(RunError {
        step: Some(path.clone()),
        error: StepError::host(FailureKind::Expression, message),
    })
}

/// An object keyed by `ids` of the finished `outputs`.
fn keyed<'a>(ids: impl Iterator<Item = &'a StepId>, outputs: &[Option<Arc<Value>>]) -> Value {
    let mut map = Map::new();
    for (id, output) in ids.zip(outputs) {
        if let Some(output) = output {
            map.insert(id.to_string(), Value::clone(output));
        }
    }
    Value::Object(map)
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// A record whose progress does not match its node: a bug, reported as a
/// host failure rather than a panic.
fn mismatch(record: &NodeRecord) -> Eval {
    Eval::Failed(RunError {
        step: Some(record.path.clone()),
        error: StepError::host(
            FailureKind::Host,
            format!("node `{}`: its record does not match its kind", record.path),
        ),
    })
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

pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
