//! The manifest format: the serde model of a workflow manifest file.
//!
//! TOML and JSON manifests share this model; keys are identical in both
//! (kebab-case, e.g. `input-schema`). Every table rejects unknown keys. These
//! types are what is *written*; [`crate::Manifest`] turns them into a
//! validated [`weft_core::Workflow`] (resolving files, compiling schemas and
//! expressions, merging defaults). Expressions (`when`, `while`, `until`,
//! `map` values, `sleep-until`) are CEL text here, compiled when lowered.
//!
//! ```toml
//! id = "order-approval"
//! input-schema = { type = "object", required = ["order_id"] }
//! flow = [
//!   { step = "validate" },
//!   { step = "charge" },
//! ]
//!
//! [defaults]
//! retry = { max-retries = 2, delay-ms = 100, backoff = 2 }
//!
//! [run-limits]
//! max-bytes = 67108864
//!
//! [steps.validate]
//! component = "../guest-examples/dist/validate-order.wasm"
//!
//! [steps.charge]
//! component = "../guest-examples/dist/charge-payment.wasm"
//! limits = { fuel = 1000000 }
//! grants = ["clocks"]
//! ```

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use weft_core::{Grant, Limits, RetryPolicy, RunLimits, StepId};

/// A workflow manifest file.
#[derive(Debug, Clone, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManifestFile {
    /// The workflow id (1–64 characters from `a-z A-Z 0-9 _ -`, starting with a letter).
    pub id: StepId,
    /// What the workflow does, for people.
    pub description: Option<String>,
    /// Schema of the workflow input.
    pub input_schema: Option<SchemaRef>,
    /// Schema of the workflow output.
    pub output_schema: Option<SchemaRef>,
    /// Schema of the workflow state; `initial-state` is checked against it at load.
    pub state_schema: Option<SchemaRef>,
    /// The state a run starts with; `{}` when absent.
    pub initial_state: Option<Value>,
    /// The flow: the nodes run in order (in TOML, an inline array or `[[flow]]` tables).
    pub flow: Vec<NodeSpec>,
    /// Settings applied to every step unless the step overrides them.
    #[serde(default)]
    pub defaults: Defaults,
    /// The steps, by id, in declaration order.
    #[serde(default)]
    pub steps: IndexMap<StepId, StepSpec>,
    /// Limits on a run as a whole (over all its attempts); only a root
    /// manifest's apply (a nested workflow runs inside its parent's run).
    #[serde(default)]
    pub run_limits: RunLimitsSpec,
}

/// A JSON Schema: written inline (a TOML table or JSON object, or a boolean),
/// or as a string naming a `.json` schema file relative to the manifest's directory.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaRef {
    /// A path to a JSON file holding the schema, relative to the manifest's directory.
    File(String),
    /// The schema itself.
    Inline(Value),
}

impl<'de> Deserialize<'de> for SchemaRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::String(path) => Self::File(path),
            schema => Self::Inline(schema),
        })
    }
}

/// Settings every step inherits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    /// The retry policy of steps that set none (no retries when absent).
    #[serde(default, deserialize_with = "some_table")]
    pub retry: Option<RetryPolicy>,
    /// Limits of every step; a step's own `limits` override them field by field.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// WASI capabilities of steps that set no `grants` (none when absent).
    pub grants: Option<Vec<Grant>>,
}

/// A step: a WebAssembly component and the contract around it.
#[derive(Debug, Clone, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepSpec {
    /// The component file, relative to the manifest's directory. It must exist.
    pub component: String,
    /// What the step does, for people.
    pub description: Option<String>,
    /// Schema of the step's input.
    pub input_schema: Option<SchemaRef>,
    /// Schema of the step's output.
    pub output_schema: Option<SchemaRef>,
    /// Schema of the state this step may set (the workflow's `state-schema` applies too).
    pub state_schema: Option<SchemaRef>,
    /// Schema of the payload the step suspends with.
    pub suspend_schema: Option<SchemaRef>,
    /// Schema of the payload the step must be resumed with.
    pub resume_schema: Option<SchemaRef>,
    /// The retry policy; replaces `defaults.retry` as a whole.
    #[serde(default, deserialize_with = "some_table")]
    pub retry: Option<RetryPolicy>,
    /// Resource limits; each one named here overrides `defaults.limits`.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// WASI capabilities (`stdio`, `clocks`, `random`); replaces `defaults.grants`.
    pub grants: Option<Vec<Grant>>,
}

/// Resource limits, each optional: a limit not named here is inherited
/// (from `defaults.limits`, then from weft's built-in defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsSpec {
    /// Wall-clock deadline of one attempt, in milliseconds (default 10000).
    pub deadline_ms: Option<u64>,
    /// Cap on the guest's linear memory, in bytes (default 64 MiB).
    pub memory_bytes: Option<u64>,
    /// Fuel (roughly: WebAssembly instructions) per attempt (default unlimited).
    pub fuel: Option<u64>,
    /// Largest input (JSON text) the step accepts, in bytes (default 1 MiB).
    pub max_input_bytes: Option<u64>,
    /// Largest output, bail output or suspend payload, in bytes (default 1 MiB).
    pub max_output_bytes: Option<u64>,
    /// Largest state a step may set, in bytes (default 1 MiB).
    pub max_state_bytes: Option<u64>,
    /// Largest single event or log line, in bytes (default 64 KiB).
    pub max_event_bytes: Option<u64>,
    /// Most events plus log lines per attempt (default 1000).
    pub max_events: Option<u32>,
    /// Largest error (code, message, details and those of every cause,
    /// together), in bytes (default 64 KiB).
    pub max_error_bytes: Option<u64>,
    /// Most causes of an error (default 32).
    pub max_error_causes: Option<u32>,
    /// Most resume labels of a suspension (default 32).
    pub max_labels: Option<u32>,
    /// Largest resume label, in bytes (default 256).
    pub max_label_bytes: Option<u64>,
}

impl LimitsSpec {
    /// `base` with every limit named here replaced.
    pub fn over(&self, base: Limits) -> Limits {
        Limits {
            deadline_ms: self.deadline_ms.unwrap_or(base.deadline_ms),
            memory_bytes: self.memory_bytes.unwrap_or(base.memory_bytes),
            fuel: self.fuel.or(base.fuel),
            max_input_bytes: self.max_input_bytes.unwrap_or(base.max_input_bytes),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
            max_state_bytes: self.max_state_bytes.unwrap_or(base.max_state_bytes),
            max_event_bytes: self.max_event_bytes.unwrap_or(base.max_event_bytes),
            max_events: self.max_events.unwrap_or(base.max_events),
            max_error_bytes: self.max_error_bytes.unwrap_or(base.max_error_bytes),
            max_error_causes: self.max_error_causes.unwrap_or(base.max_error_causes),
            max_labels: self.max_labels.unwrap_or(base.max_labels),
            max_label_bytes: self.max_label_bytes.unwrap_or(base.max_label_bytes),
        }
    }
}

/// Limits on a run as a whole, each optional: a limit not named here is
/// weft's built-in default ([`RunLimits::default`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunLimitsSpec {
    /// Most events the run records (default 1,000,000).
    pub max_events: Option<u64>,
    /// Most bytes of events (their JSON text) the run records (default 256 MiB).
    pub max_bytes: Option<u64>,
    /// Most attempts the run starts (default 500,000).
    pub max_attempts: Option<u64>,
}

impl RunLimitsSpec {
    /// `base` with every limit named here replaced.
    pub fn over(&self, base: RunLimits) -> RunLimits {
        RunLimits {
            max_events: self.max_events.unwrap_or(base.max_events),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
        }
    }
}

/// A node of the flow. It has exactly one *kind* key (`step`, `parallel`,
/// `branch`, `dowhile`, `dountil`, `foreach`, `map`, `sleep-ms`, `sleep-until`
/// or `workflow`); `while`, `until`, `max-iterations` and `concurrency` only
/// go with their kind; `id` goes with any kind.
///
/// Nodes are kept flat (rather than a serde enum) so that a misplaced key gets
/// a message saying where it belongs instead of serde's "did not match any variant".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSpec {
    /// Run this step.
    pub step: Option<StepId>,
    /// The node id, unique among its siblings; it names the node in step paths.
    /// Defaults to the step id for `step` nodes and to `<kind>-<n>` for the
    /// others, `n` being the node's 1-based position in its list (e.g. `parallel-3`).
    pub id: Option<StepId>,
    /// Run these nodes at once; the output is an object keyed by node id.
    pub parallel: Option<Vec<NodeSpec>>,
    /// Run each arm whose `when` holds; an arm without `when` runs when no other matched.
    pub branch: Option<Vec<ArmSpec>>,
    /// Run this body, then again while `while` holds.
    pub dowhile: Option<Vec<NodeSpec>>,
    /// The condition of a `dowhile` node (an expression), checked after each iteration.
    #[serde(rename = "while")]
    pub while_: Option<String>,
    /// Run this body, then again until `until` holds.
    pub dountil: Option<Vec<NodeSpec>>,
    /// The condition of a `dountil` node (an expression), checked after each iteration.
    pub until: Option<String>,
    /// For `dowhile` and `dountil`: fail the run after this many iterations.
    pub max_iterations: Option<u32>,
    /// Run this body once per item of the previous output (an array).
    pub foreach: Option<Vec<NodeSpec>>,
    /// For `foreach`: how many items run at once (default 1).
    pub concurrency: Option<u32>,
    /// Build the next input: output field → expression over the run's data.
    pub map: Option<IndexMap<String, String>>,
    /// Pause for this many milliseconds; passes the input through.
    pub sleep_ms: Option<u64>,
    /// Pause until the time this expression yields; passes the input through.
    pub sleep_until: Option<String>,
    /// Run another workflow, given as a manifest path relative to this manifest's directory.
    pub workflow: Option<String>,
}

/// One arm of a `branch` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArmSpec {
    /// The arm id (default: the id of its only node, else `arm-<n>`).
    pub id: Option<StepId>,
    /// The condition (an expression); an arm without one is the `else` arm.
    pub when: Option<String>,
    /// The nodes to run when the arm is taken.
    pub flow: Vec<NodeSpec>,
}

/// A table of the format. serde's derived `Deserialize` also accepts a
/// sequence holding the fields in order (`["a", "x"]` for a node); a manifest
/// must name its fields, so every table deserializes through [`table`], which
/// takes a TOML table or JSON object only.
trait Table<'de>: Sized {
    /// What the table is called in messages (`invalid type: ..., expected a node table`).
    const WHAT: &'static str;

    /// Deserializes the table's fields.
    fn from_map<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

fn table<'de, T: Table<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    struct TableVisitor<T>(PhantomData<T>);

    impl<'de, T: Table<'de>> Visitor<'de> for TableVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::WHAT)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::from_map(MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(TableVisitor(PhantomData))
}

/// For optional fields holding a table of a type defined elsewhere.
fn some_table<'de, T: Table<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    table(deserializer).map(Some)
}

/// Implements [`Table`] and `Deserialize` for a struct of this module; its
/// derive (with `remote = "Self"`) provides the inherent `deserialize`.
macro_rules! tables {
    ($($ty:ident => $what:literal,)*) => {$(
        impl<'de> Table<'de> for $ty {
            const WHAT: &'static str = $what;

            fn from_map<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $ty::deserialize(deserializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                table(deserializer)
            }
        }
    )*};
}

tables! {
    ManifestFile => "a manifest table",
    Defaults => "a defaults table",
    StepSpec => "a step table",
    LimitsSpec => "a limits table",
    RunLimitsSpec => "a run-limits table",
    NodeSpec => "a node table",
    ArmSpec => "a branch arm table",
}

impl<'de> Table<'de> for RetryPolicy {
    const WHAT: &'static str = "a retry table";

    fn from_map<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <RetryPolicy as Deserialize>::deserialize(deserializer)
    }
}
