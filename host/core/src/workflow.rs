//! The validated workflow graph: step definitions and the flow that orders them.
//!
//! A [`Workflow`] can only be obtained from [`WorkflowBuilder::build`], which
//! checks every invariant the state machine relies on: the flow is not empty,
//! every node names a declared step, and sibling node ids are unique (so step
//! paths are unique). Code holding a `Workflow` never re-checks these.
//!
//! A nested workflow's steps join the parent's step table under qualified
//! ids (`charge-flow/charge`, see [`StepId::declared`]) and its nodes join
//! the parent's plan under the node's pattern, so one table and one plan
//! describe the whole tree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::RunLimits;
use crate::error::GraphError;
use crate::expr::Expr;
use crate::id::{StepId, StepPath};
use crate::schema::{Schema, SchemaError};

/// A WASI capability a step may be granted. Nothing is granted by default:
/// a step may import WASI 0.2's cli, io, clocks, random, filesystem and
/// sockets interfaces without grants, but they are virtualised (no files, no
/// network, no environment, stdout/stderr discarded, deterministic clocks and
/// random numbers); a grant makes one area real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// `wasi:cli` stdout and stderr captured into the run log (stdin and the
    /// environment stay empty).
    Stdio,
    /// The host's `wasi:clocks` wall clock and monotonic clock (else the wall
    /// clock is the attempt's start and the monotonic clock starts at 0).
    Clocks,
    /// The host's `wasi:random` generators (else a generator seeded by the
    /// idempotency key and the attempt).
    Random,
}

/// Per-execution resource limits of a step. A limit hit fails the step with a
/// [`crate::FailureKind`] naming the limit; it never affects the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock deadline of one attempt, in milliseconds.
    pub deadline_ms: u64,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Fuel (roughly: WebAssembly instructions) for one attempt; unlimited when absent.
    pub fuel: Option<u64>,
    /// Largest input (JSON text) the step accepts, in bytes.
    pub max_input_bytes: u64,
    /// Largest output, bail output or suspend payload, in bytes.
    pub max_output_bytes: u64,
    /// Largest state a step may set, in bytes.
    pub max_state_bytes: u64,
    /// Largest single emitted event or log line, in bytes.
    pub max_event_bytes: u64,
    /// Most events plus log lines one attempt may produce.
    pub max_events: u32,
    /// Largest error a step may fail with, in bytes: its code, message and
    /// details plus the code, message and details of every cause, together.
    pub max_error_bytes: u64,
    /// Most causes an error may have.
    pub max_error_causes: u32,
    /// Most resume labels a suspension may have.
    pub max_labels: u32,
    /// Largest single resume label, in bytes.
    pub max_label_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 10_000,
            memory_bytes: 64 << 20,
            fuel: None,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_state_bytes: 1 << 20,
            max_event_bytes: 64 << 10,
            max_events: 1000,
            max_error_bytes: 64 << 10,
            max_error_causes: 32,
            max_labels: 32,
            max_label_bytes: 256,
        }
    }
}

/// How often a failed step is retried. Only errors marked retryable are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = run once).
    pub max_retries: u32,
    /// Delay before the first retry, in milliseconds.
    pub delay_ms: u64,
    /// Each further retry waits this many times longer (1 = constant delay).
    pub backoff: u32,
}

impl RetryPolicy {
    /// Delay before attempt `next_attempt` (2 = the first retry).
    pub fn delay_before(&self, next_attempt: u32) -> u64 {
        let exponent = next_attempt.saturating_sub(2);
        let factor = u64::from(self.backoff.max(1)).saturating_pow(exponent);
        self.delay_ms.saturating_mul(factor)
    }
}

/// A step: a component and the contract around it.
#[derive(Debug, Clone)]
pub struct StepDef {
    /// The step id.
    pub id: StepId,
    /// Where the component comes from (an absolute path, for components loaded from files).
    pub component: String,
    /// Optional description.
    pub description: Option<String>,
    /// Schema of the step's input.
    pub input_schema: Option<Schema>,
    /// Schema of the step's output (completed output; a bail output is checked
    /// against the workflow's output schema instead).
    pub output_schema: Option<Schema>,
    /// Schema of the state this step may set (the workflow's state schema applies too).
    pub state_schema: Option<Schema>,
    /// Schema of the payload the step suspends with.
    pub suspend_schema: Option<Schema>,
    /// Schema of the payload the step must be resumed with.
    pub resume_schema: Option<Schema>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Resource limits.
    pub limits: Limits,
    /// WASI capabilities granted to the component.
    pub grants: Vec<Grant>,
}

impl StepDef {
    /// A step running `component` with no schemas, no retries, default
    /// limits and no grants.
    pub fn new(id: StepId, component: impl Into<String>) -> Self {
        Self {
            id,
            component: component.into(),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            suspend_schema: None,
            resume_schema: None,
            retry: RetryPolicy::default(),
            limits: Limits::default(),
            grants: Vec::new(),
        }
    }
}

/// Loop flavour: both run the body first, then check the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoopKind {
    /// Repeat while the condition is true.
    DoWhile,
    /// Repeat until the condition is true.
    DoUntil,
}

/// A node of the flow. Its `id` names it in step paths.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node id: unique among its siblings; for step nodes, the step id
    /// unless the manifest gives another.
    pub id: StepId,
    /// What the node does.
    pub kind: NodeKind,
}

/// One arm of a branch: its flow runs at `<branch>/<arm id>/…`.
#[derive(Debug, Clone)]
pub struct Arm {
    /// The arm id: unique among the branch's arms; the key of its output.
    pub id: StepId,
    /// The condition; `None` for the arm that runs when no other matched.
    pub when: Option<Expr>,
    /// The nodes run when the arm is taken.
    pub flow: Vec<Node>,
}

/// The control-flow language.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Run a step. Its input is the previous node's output (the workflow input
    /// for the first node).
    Step {
        /// The step to run.
        step: StepId,
    },
    /// Run every node at once; the output is an object keyed by node id.
    Parallel {
        /// The nodes to run.
        nodes: Vec<Node>,
    },
    /// Evaluate every arm's condition; run each arm whose condition holds (an
    /// arm without condition runs when no other arm matched).
    Branch {
        /// The arms, in declaration order.
        arms: Vec<Arm>,
    },
    /// Run `body`, then check `condition` to decide whether to run it again.
    Loop {
        /// While or until.
        kind: LoopKind,
        /// The loop body.
        body: Vec<Node>,
        /// Evaluated after each iteration.
        condition: Expr,
        /// Fail the run after this many iterations.
        max_iterations: Option<u32>,
    },
    /// Run `body` once per item of the previous output (an array); the output
    /// is the array of results in item order.
    Foreach {
        /// Run per item.
        body: Vec<Node>,
        /// How many items run at once.
        concurrency: u32,
    },
    /// Build the next input from expressions over the run's data.
    Map {
        /// Output field → expression.
        fields: IndexMap<String, Expr>,
    },
    /// Pause for a fixed time (durable in the evented runtime); passes its input through.
    Sleep {
        /// How long, in milliseconds.
        duration_ms: u64,
    },
    /// Pause until the time an expression yields; passes its input through.
    SleepUntil {
        /// Evaluates to a timestamp.
        until: Expr,
    },
    /// Run another workflow as one node; its output is the node's output.
    Workflow {
        /// The nested workflow.
        workflow: Arc<Workflow>,
    },
}

impl NodeKind {
    /// The node kind's name as written in manifests.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Step { .. } => "step",
            Self::Parallel { .. } => "parallel",
            Self::Branch { .. } => "branch",
            Self::Loop {
                kind: LoopKind::DoWhile,
                ..
            } => "dowhile",
            Self::Loop {
                kind: LoopKind::DoUntil,
                ..
            } => "dountil",
            Self::Foreach { .. } => "foreach",
            Self::Map { .. } => "map",
            Self::Sleep { .. } => "sleep-ms",
            Self::SleepUntil { .. } => "sleep-until",
            Self::Workflow { .. } => "workflow",
        }
    }
}

/// A validated workflow. See the module docs for its invariants.
#[derive(Debug, Clone)]
pub struct Workflow {
    id: StepId,
    description: Option<String>,
    input_schema: Option<Schema>,
    output_schema: Option<Schema>,
    state_schema: Option<Schema>,
    initial_state: Value,
    steps: IndexMap<StepId, StepDef>,
    flow: Vec<Node>,
    run_limits: RunLimits,
    /// Every node by pattern (its path without item indexes and iteration
    /// numbers, e.g. `items/enrich`), so that finding the node an execution
    /// runs costs the path's depth, not the flow's size.
    plan: HashMap<Box<str>, Entry>,
}

/// Where a node sits in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// Its position in its flow (or among a parallel's nodes).
    pub index: usize,
    /// The length of its flow.
    pub len: usize,
    /// Whether it is one of a parallel's nodes (which run at once, each
    /// on the parallel's input) rather than part of a sequence.
    pub parallel: bool,
}

/// A node in the plan: how to reach it from the top-level flow, and its place.
#[derive(Debug, Clone)]
struct Entry {
    /// Child indexes from the top-level flow (a branch takes two: the arm,
    /// then the node in the arm's flow).
    route: Box<[u32]>,
    place: Place,
}

/// Indexes `flow` (whose pattern prefix is `prefix`, empty at the top level).
fn index_flow(
    plan: &mut HashMap<Box<str>, Entry>,
    flow: &[Node],
    prefix: &str,
    route: &[u32],
    parallel: bool,
) {
    for (i, node) in flow.iter().enumerate() {
        let pattern = if prefix.is_empty() {
            node.id.to_string()
        } else {
            format!("{prefix}/{}", node.id)
        };
        let mut here = route.to_vec();
        here.push(u32::try_from(i).unwrap_or(u32::MAX));
        match &node.kind {
            NodeKind::Parallel { nodes } => index_flow(plan, nodes, &pattern, &here, true),
            NodeKind::Loop { body, .. } | NodeKind::Foreach { body, .. } => {
                index_flow(plan, body, &pattern, &here, false);
            }
            NodeKind::Workflow { workflow } => {
                index_flow(plan, workflow.flow(), &pattern, &here, false);
            }
            NodeKind::Branch { arms } => {
                for (a, arm) in arms.iter().enumerate() {
                    let mut arm_route = here.clone();
                    arm_route.push(u32::try_from(a).unwrap_or(u32::MAX));
                    let arm_prefix = format!("{pattern}/{}", arm.id);
                    index_flow(plan, &arm.flow, &arm_prefix, &arm_route, false);
                }
            }
            NodeKind::Step { .. }
            | NodeKind::Map { .. }
            | NodeKind::Sleep { .. }
            | NodeKind::SleepUntil { .. } => {}
        }
        plan.insert(
            pattern.into(),
            Entry {
                route: here.into(),
                place: Place {
                    index: i,
                    len: flow.len(),
                    parallel,
                },
            },
        );
    }
}

/// The parts of a workflow, checked by [`WorkflowBuilder::build`].
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    /// The workflow id.
    pub id: StepId,
    /// Optional description.
    pub description: Option<String>,
    /// Schema of the workflow input.
    pub input_schema: Option<Schema>,
    /// Schema of the workflow output.
    pub output_schema: Option<Schema>,
    /// Schema of the workflow state.
    pub state_schema: Option<Schema>,
    /// The state a run starts with (`{}` by default).
    pub initial_state: Value,
    /// The steps, by id.
    pub steps: IndexMap<StepId, StepDef>,
    /// The flow.
    pub flow: Vec<Node>,
}

impl WorkflowBuilder {
    /// Checks the graph's invariants and returns the workflow.
    ///
    /// # Errors
    /// The first [`GraphError`] found, naming its field path (e.g. `flow[2].step`).
    pub fn build(mut self) -> Result<Workflow, GraphError> {
        check_flow(&self.flow, "flow", &self.steps)?;
        absorb(&mut self.flow, "", &mut self.steps);
        let mut plan = HashMap::new();
        index_flow(&mut plan, &self.flow, "", &[], false);
        Ok(Workflow {
            plan,
            id: self.id,
            description: self.description,
            input_schema: self.input_schema,
            output_schema: self.output_schema,
            state_schema: self.state_schema,
            initial_state: self.initial_state,
            steps: self.steps,
            flow: self.flow,
            run_limits: RunLimits::default(),
        })
    }
}

/// Gives the steps of every workflow nested in `flow` (whose pattern
/// prefix is `prefix`) qualified ids (`charge-flow/charge`) and adds them
/// to `steps`, so that the whole tree's steps are one table and a step
/// node's id names its definition wherever it sits.
fn absorb(flow: &mut [Node], prefix: &str, steps: &mut IndexMap<StepId, StepDef>) {
    for node in flow {
        let pattern = if prefix.is_empty() {
            node.id.to_string()
        } else {
            format!("{prefix}/{}", node.id)
        };
        match &mut node.kind {
            NodeKind::Parallel { nodes } => absorb(nodes, &pattern, steps),
            NodeKind::Loop { body, .. } | NodeKind::Foreach { body, .. } => {
                absorb(body, &pattern, steps);
            }
            NodeKind::Branch { arms } => {
                for arm in arms {
                    absorb(&mut arm.flow, &format!("{pattern}/{}", arm.id), steps);
                }
            }
            NodeKind::Workflow { workflow } => {
                let qualified = workflow.qualified(&pattern);
                steps.extend(qualified.steps.iter().map(|(k, v)| (k.clone(), v.clone())));
                *workflow = Arc::new(qualified);
            }
            NodeKind::Step { .. }
            | NodeKind::Map { .. }
            | NodeKind::Sleep { .. }
            | NodeKind::SleepUntil { .. } => {}
        }
    }
}

/// Renames every step node of `flow` (at any depth, nested workflows
/// included) to `prefix/<step>`.
fn qualify_flow(flow: &mut [Node], prefix: &str) {
    for node in flow {
        match &mut node.kind {
            NodeKind::Step { step } => *step = StepId::qualified(prefix, step),
            NodeKind::Parallel { nodes } => qualify_flow(nodes, prefix),
            NodeKind::Loop { body, .. } | NodeKind::Foreach { body, .. } => {
                qualify_flow(body, prefix);
            }
            NodeKind::Branch { arms } => {
                for arm in arms {
                    qualify_flow(&mut arm.flow, prefix);
                }
            }
            NodeKind::Workflow { workflow } => *workflow = Arc::new(workflow.qualified(prefix)),
            NodeKind::Map { .. } | NodeKind::Sleep { .. } | NodeKind::SleepUntil { .. } => {}
        }
    }
}

fn check_flow(
    flow: &[Node],
    at: &str,
    steps: &IndexMap<StepId, StepDef>,
) -> Result<(), GraphError> {
    if flow.is_empty() {
        return Err(GraphError::EmptyFlow { at: at.to_owned() });
    }
    let mut seen = HashSet::new();
    for (i, node) in flow.iter().enumerate() {
        let here = format!("{at}[{i}]");
        if !seen.insert(&node.id) {
            return Err(GraphError::DuplicateNode {
                at: here,
                id: node.id.clone(),
            });
        }
        match &node.kind {
            NodeKind::Step { step } => {
                if !steps.contains_key(step) {
                    return Err(GraphError::UnknownStep {
                        at: format!("{here}.step"),
                        step: step.to_string(),
                        declared: steps
                            .keys()
                            .map(StepId::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            NodeKind::Foreach { body, .. } => check_flow(body, &format!("{here}.foreach"), steps)?,
            NodeKind::Parallel { nodes } => check_flow(nodes, &format!("{here}.parallel"), steps)?,
            NodeKind::Branch { arms } => {
                let mut ids = HashSet::new();
                for (j, arm) in arms.iter().enumerate() {
                    if !ids.insert(&arm.id) {
                        return Err(GraphError::DuplicateNode {
                            at: format!("{here}.branch[{j}]"),
                            id: arm.id.clone(),
                        });
                    }
                    check_flow(&arm.flow, &format!("{here}.branch[{j}].flow"), steps)?;
                }
            }
            NodeKind::Loop { kind, body, .. } => {
                let name = match kind {
                    LoopKind::DoWhile => "dowhile",
                    LoopKind::DoUntil => "dountil",
                };
                check_flow(body, &format!("{here}.{name}"), steps)?;
            }
            // A nested workflow was checked when it was built.
            NodeKind::Map { .. }
            | NodeKind::Sleep { .. }
            | NodeKind::SleepUntil { .. }
            | NodeKind::Workflow { .. } => {}
        }
    }
    Ok(())
}

impl Workflow {
    /// The workflow id.
    pub fn id(&self) -> &StepId {
        &self.id
    }

    /// Limits on a run of this workflow as a whole ([`RunLimits::default`]
    /// unless set with [`Workflow::with_run_limits`]). Only a root
    /// workflow's apply: a nested one runs inside its parent's run.
    pub fn run_limits(&self) -> &RunLimits {
        &self.run_limits
    }

    /// This workflow with `limits` on each of its runs as a whole.
    #[must_use]
    pub fn with_run_limits(mut self, limits: RunLimits) -> Self {
        self.run_limits = limits;
        self
    }

    /// The description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Schema of the workflow input.
    pub fn input_schema(&self) -> Option<&Schema> {
        self.input_schema.as_ref()
    }

    /// Schema of the workflow output.
    pub fn output_schema(&self) -> Option<&Schema> {
        self.output_schema.as_ref()
    }

    /// Schema of the workflow state.
    pub fn state_schema(&self) -> Option<&Schema> {
        self.state_schema.as_ref()
    }

    /// The state a run starts with.
    pub fn initial_state(&self) -> &Value {
        &self.initial_state
    }

    /// The steps, in declaration order.
    pub fn steps(&self) -> impl Iterator<Item = &StepDef> {
        self.steps.values()
    }

    /// A step by id. Every id a node of this workflow names is present.
    pub fn step(&self, id: &StepId) -> Option<&StepDef> {
        self.steps.get(id)
    }

    /// The top-level flow.
    pub fn flow(&self) -> &[Node] {
        &self.flow
    }

    /// Whether `path` names a node of this workflow: each segment (without
    /// its item index or iteration number) is a node id in the flow its
    /// parent encloses (for a branch: `<branch>/<arm>/<node>`).
    pub fn has_path(&self, path: &StepPath) -> bool {
        self.plan.contains_key(path.pattern().as_str())
    }

    /// This workflow as nested at node pattern `prefix` of another: its
    /// steps (its own nested workflows' too) renamed `prefix/<id>`.
    fn qualified(&self, prefix: &str) -> Workflow {
        let mut copy = self.clone();
        copy.steps = self
            .steps
            .iter()
            .map(|(id, def)| {
                let id = StepId::qualified(prefix, id);
                let mut def = def.clone();
                def.id = id.clone();
                (id, def)
            })
            .collect();
        qualify_flow(&mut copy.flow, prefix);
        copy
    }

    /// The node an execution at `path` runs.
    pub fn node_at(&self, path: &StepPath) -> Option<&Node> {
        let entry = self.plan.get(path.pattern().as_str())?;
        let mut hops = entry.route.iter().map(|&i| i as usize);
        let mut node = self.flow.get(hops.next()?)?;
        while let Some(i) = hops.next() {
            node = match &node.kind {
                NodeKind::Parallel { nodes } => nodes.get(i)?,
                NodeKind::Loop { body, .. } | NodeKind::Foreach { body, .. } => body.get(i)?,
                NodeKind::Branch { arms } => arms.get(i)?.flow.get(hops.next()?)?,
                NodeKind::Workflow { workflow } => workflow.flow().get(i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Where the node an execution at `path` runs sits in its flow.
    pub(crate) fn place(&self, path: &StepPath) -> Option<Place> {
        self.plan.get(path.pattern().as_str()).map(|e| e.place)
    }

    /// The largest workflow input a run accepts, as JSON text: the largest
    /// `max-input-bytes` of its steps (an input no step may receive is
    /// refused before anything is stored).
    pub fn max_input_bytes(&self) -> u64 {
        self.steps
            .values()
            .map(|s| s.limits.max_input_bytes)
            .max()
            .unwrap_or(Limits::default().max_input_bytes)
    }

    /// Checks a workflow input before a run is created: its size (see
    /// [`Workflow::max_input_bytes`]), then the workflow's input schema.
    ///
    /// # Errors
    /// An [`InputError`] saying what is wrong.
    pub fn check_input(&self, input: &Value) -> Result<(), InputError> {
        let limit = self.max_input_bytes();
        let bytes = json_len(input, limit);
        if bytes > limit {
            return Err(InputError::TooLarge { limit });
        }
        if let Some(schema) = &self.input_schema {
            schema.validate(input).map_err(InputError::Schema)?;
        }
        Ok(())
    }
}

/// Why a workflow input is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InputError {
    /// Larger than [`Workflow::max_input_bytes`].
    #[error("input is larger than {limit} bytes of JSON")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Fails the workflow's input schema.
    #[error("input fails the input schema: {0}")]
    Schema(SchemaError),
}

/// The length of `value` as compact JSON text, counting at most a little
/// past `limit` (so that measuring a huge value is cheap).
fn json_len(value: &Value, limit: u64) -> u64 {
    struct Counter {
        bytes: u64,
        limit: u64,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes += buf.len() as u64;
            if self.bytes > self.limit {
                // Stop serializing: the answer is known.
                return Err(std::io::Error::other("limit reached"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { bytes: 0, limit };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StepId {
        StepId::new(s).unwrap()
    }

    fn def(s: &str) -> StepDef {
        StepDef::new(id(s), format!("/c/{s}.wasm"))
    }

    fn builder(flow: Vec<Node>) -> WorkflowBuilder {
        WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: Value::Object(Default::default()),
            steps: [("a", def("a"))]
                .into_iter()
                .map(|(k, v)| (id(k), v))
                .collect(),
            flow,
        }
    }

    fn step(node: &str, step: &str) -> Node {
        Node {
            id: id(node),
            kind: NodeKind::Step { step: id(step) },
        }
    }

    #[test]
    fn rejects_unknown_steps_and_duplicates() {
        let err = builder(vec![step("a", "a"), step("b", "b")])
            .build()
            .unwrap_err();
        assert_eq!(err.at(), "flow[1].step");
        assert!(err.to_string().contains("unknown step `b`"), "{err}");

        let err = builder(vec![step("a", "a"), step("a", "a")])
            .build()
            .unwrap_err();
        assert_eq!(err.at(), "flow[1]");

        let err = builder(vec![]).build().unwrap_err();
        assert_eq!(err.at(), "flow");

        assert!(
            builder(vec![step("a", "a"), step("again", "a")])
                .build()
                .is_ok()
        );
    }

    #[test]
    fn retry_delays_back_off() {
        let p = RetryPolicy {
            max_retries: 3,
            delay_ms: 100,
            backoff: 2,
        };
        assert_eq!(
            [p.delay_before(2), p.delay_before(3), p.delay_before(4)],
            [100, 200, 400]
        );
        let constant = RetryPolicy {
            max_retries: 3,
            delay_ms: 50,
            backoff: 0,
        };
        assert_eq!(constant.delay_before(4), 50);
    }
}
