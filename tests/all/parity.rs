//! The differential parity harness: every scenario under `tests/scenarios/`
//! runs on BOTH runtimes (default, and evented over a SQLite file), and the
//! two must agree after the start and after every action. Each scenario's own
//! expectations are checked too (on the default runtime's result).
//!
//! A third setup runs every scenario on the evented runtime over
//! PostgreSQL (`weft-store-postgres`; the test database is
//! [`crate::support::postgres_url`]), compared with the default runtime
//! exactly as the evented runtime over SQLite is: a concurrent scenario
//! there under its first seed only (the reordering is the runtime's, the
//! same over any store; the seeds are SQLite's to go through). Each
//! scenario running has a schema to itself, emptied before it (so every
//! run is `parity-run`, as on SQLite: a step's context and its
//! deterministic random numbers depend on the run id); there are as many
//! schemas as scenarios ran at once, dropped at the end. The scenarios'
//! commits are real, synchronous ones.
//!
//! **Sequential scenarios** must agree exactly: the action's outcome, status,
//! output, error, state, suspended steps, the step records in order and the
//! whole event sequence (timestamps excluded).
//!
//! **Concurrent scenarios** — the workflow has a `parallel` or `branch` node
//! or a `foreach` with `concurrency > 1` at any depth, or the scenario says
//! `seeds = N` — legitimately finish their steps in different orders on the
//! two runtimes. The evented runtime runs them once per seed (20 by default;
//! `seeds = N` in the scenario, or the `WEFT_PARITY_SEEDS` environment
//! variable for every concurrent scenario, overrides it) in its seeded
//! reordering mode ([`weft_runtime::EventedOptions::reorder_seed`]: the
//! reports of a run's attempts are held until none is in flight, then applied
//! one at a time in an order drawn from the seed), and each seed must agree
//! with the default runtime on: the action's outcome, status, output, error,
//! state, the suspended addresses as a set, the step records as a map by
//! address, and the events grouped by address (`path`; events without one
//! form the run-level group), each group in order. There, `expect.steps` is
//! compared as a map too. A failure names the scenario, the seed and what
//! differs.
//!
//! Scenarios run a few at a time, each over its own SQLite files, which do
//! not sync commits to the disk (durability is `crash.rs`'s business), on a
//! manual clock starting at 2026-01-01T00:00:00Z that jumps instead of
//! sleeping (sleeps and retry delays take no time).
//!
//! A scenario is one TOML file:
//!
//! ```toml
//! description = "what it shows"
//! input = { action = "complete", output = 1 }   # or input-json = 'any JSON text'
//! seeds = 50                        # optional: concurrent, run under this many seeds
//!
//! [[actions]]                       # optional, applied in order after the start
//! resume = { label = "approve", data = { ok = true } }   # or step = "path"; neither = the only one
//! error = "is not suspended"        # optional: the action must fail with this text
//!
//! [[actions]]
//! cancel = { reason = "no longer needed" }   # or cancel = {}
//!
//! [[actions]]                       # `weft rerun` from an address (input optional);
//! rerun = { from = "items[1]/b", input = { n = 5 } }   # the new run is observed from then on
//!
//! [expect]
//! status = "success"                # required
//! output = { n = 1 }                # optional (or output-json)
//! error = { code = "boom", kind = "step", step = "a", retryable = false, causes = ["root"] }
//! steps = { a = "success", b = "failed" }   # optional: status per path, in order of first start
//!                                   #   (any order when concurrent); unlisted paths must not exist
//! attempts = { a = 3 }              # optional
//! state = { n = 1 }                 # optional
//! events = ["run-started", "step-started", "..."]   # optional: the event types, in order
//!
//! [workflow]                        # the manifest, inline; `component` names a guest in guest-examples/dist
//! id = "wf"
//! flow = [ { step = "a" } ]
//! [workflow.steps.a]
//! component = "test-steps"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use weft_core::{
    Clock, Event, ManualClock, Node, NodeKind, ResumeTarget, RunId, RunResult, StepPath,
    StepRunner, Timestamp,
};
use weft_manifest::Manifest;
use weft_runtime::{
    DefaultRuntime, EventedOptions, EventedRuntime, Registered, Request, RunObserver, Runtime,
};
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};
use weft_store_postgres::PostgresStore;
use weft_store_sqlite::{Durability, SqliteStore};

use crate::support::{PgSchema, cache_dir, guest, postgres_url, root};

/// One scenario file, loaded.
pub(crate) struct Scenario {
    pub(crate) path: PathBuf,
    pub(crate) input: Value,
    pub(crate) actions: Vec<toml::Table>,
    pub(crate) expect: toml::Table,
    pub(crate) manifest: Manifest,
    /// `Some(n)`: concurrent, compared under `n` seeds; `None`: sequential.
    pub(crate) seeds: Option<u64>,
}

/// Seeds per concurrent scenario unless it says otherwise.
const DEFAULT_SEEDS: u64 = 20;

/// Whether steps of a flow may run at the same time: a `parallel` or
/// `branch` node, or a `foreach` with `concurrency > 1`, at any depth.
pub(crate) fn concurrent(nodes: &[Node]) -> bool {
    nodes.iter().any(|node| match &node.kind {
        NodeKind::Parallel { .. } | NodeKind::Branch { .. } => true,
        NodeKind::Foreach { body, concurrency } => *concurrency > 1 || concurrent(body),
        NodeKind::Loop { body, .. } => concurrent(body),
        NodeKind::Workflow { workflow } => concurrent(workflow.flow()),
        NodeKind::Step { .. }
        | NodeKind::Map { .. }
        | NodeKind::Sleep { .. }
        | NodeKind::SleepUntil { .. } => false,
    })
}

pub(crate) fn to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).expect("TOML values are JSON values")
}

pub(crate) fn json_field(table: &toml::Table, key: &str) -> Option<Value> {
    if let Some(v) = table.get(key) {
        return Some(to_json(v));
    }
    table
        .get(&format!("{key}-json"))
        .and_then(toml::Value::as_str)
        .map(|text| serde_json::from_str(text).unwrap_or_else(|e| panic!("{key}-json: {e}")))
}

/// Loads a scenario whose `component`s name guests in `guest-examples/dist`.
pub(crate) fn load(path: &Path) -> Scenario {
    load_with(path, guest, &[])
}

/// Loads a scenario, with `component(name)` the file of the component
/// a step names, and `grants` added to every step's.
pub(crate) fn load_with(
    path: &Path,
    component: impl Fn(&str) -> PathBuf,
    grants: &[&str],
) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap();
    let mut table: toml::Table =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut workflow = match table.remove("workflow") {
        Some(toml::Value::Table(t)) => t,
        _ => panic!("{}: no [workflow] table", path.display()),
    };
    if let Some(toml::Value::Table(steps)) = workflow.get_mut("steps") {
        for (_, step) in steps.iter_mut() {
            if let Some(toml::Value::String(name)) = step.get_mut("component") {
                *name = component(name.as_str()).display().to_string();
            }
            if !grants.is_empty() {
                let table = step.as_table_mut().expect("a step is a table");
                let list = table
                    .entry("grants")
                    .or_insert_with(|| toml::Value::Array(Vec::new()))
                    .as_array_mut()
                    .expect("grants is an array");
                for grant in grants {
                    if !list.iter().any(|g| g.as_str() == Some(grant)) {
                        list.push(toml::Value::String((*grant).to_owned()));
                    }
                }
            }
        }
    }
    let manifest_text = toml::to_string(&workflow).unwrap();
    let manifest = Manifest::from_toml_str(&manifest_text, path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{manifest_text}", path.display()));
    let actions = match table.get("actions") {
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|a| a.as_table().expect("an action is a table").clone())
            .collect(),
        _ => Vec::new(),
    };
    let expect = table
        .get("expect")
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_else(|| panic!("{}: no [expect] table", path.display()));
    let seeds = match table.get("seeds") {
        Some(n) => Some(
            n.as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("{}: seeds must be a positive integer", path.display())),
        ),
        None if concurrent(manifest.workflow().flow()) => Some(
            std::env::var("WEFT_PARITY_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(DEFAULT_SEEDS),
        ),
        None => None,
    };
    Scenario {
        path: path.to_owned(),
        input: json_field(&table, "input").unwrap_or(json!({})),
        actions,
        expect,
        manifest,
        seeds,
    }
}

/// Removes what legitimately differs between runs: timestamps (see
/// [`wake_times`] for what is kept of them) and what an attempt was
/// measured to consume (a step stopped at its deadline used what it used).
pub(crate) fn normalize(mut value: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for key in [
                    "at",
                    "due",
                    "until",
                    "started_at",
                    "ended_at",
                    "retry_at",
                    "measured",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

/// What a runtime produced after the start or an action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observed {
    pub(crate) outcome: Result<Value, String>,
    pub(crate) result: Value,
    pub(crate) events: Vec<Value>,
}

fn observe(outcome: Result<(), String>, result: &RunResult, events: &[Event]) -> Observed {
    Observed {
        outcome: outcome.map(|()| Value::Null),
        result: normalize(serde_json::to_value(result).unwrap()),
        events: wake_times(events).into_iter().map(normalize).collect(),
    }
}

/// The events as JSON, each wake time replaced by what the runtimes must
/// agree on: a retry's delay (`due` after the failure it retries, ms) and a
/// sleep's length (`until` after the sleep started, to the nearest ms). Both
/// runtimes read the same manual clock, but not the same number of times,
/// so absolute times differ by microseconds.
pub(crate) fn wake_times(events: &[Event]) -> Vec<Value> {
    let mut failed_at = std::collections::HashMap::new();
    events
        .iter()
        .map(|event| {
            let mut value = serde_json::to_value(event).unwrap();
            match event {
                Event::StepFailed { path, at, .. } => {
                    failed_at.insert(path.clone(), *at);
                }
                Event::StepRetrying { path, due, .. } => {
                    let failed = failed_at.get(path).copied().unwrap_or(*due);
                    value["delay_ms"] = (due.micros_since(failed) / 1000).into();
                }
                Event::SleepStarted { until, at, .. } => {
                    value["sleeps_ms"] = ((until.micros_since(*at) + 500) / 1000).into();
                }
                _ => {}
            }
            value
        })
        .collect()
}

/// What an action asks for.
pub(crate) enum Action {
    Resume(ResumeTarget, Value),
    Cancel(Option<String>),
    /// `weft rerun` of the current run from an address, optionally with
    /// an input for it; the new run is the current run from then on.
    Rerun(StepPath, Option<Value>),
}

pub(crate) fn action(action: &toml::Table) -> Action {
    if let Some(rerun) = action.get("rerun").and_then(toml::Value::as_table) {
        let from = rerun
            .get("from")
            .and_then(toml::Value::as_str)
            .expect("rerun = { from = \"path\" }");
        return Action::Rerun(StepPath::parse(from).unwrap(), json_field(rerun, "input"));
    }
    if let Some(cancel) = action.get("cancel") {
        let reason = cancel
            .get("reason")
            .and_then(toml::Value::as_str)
            .map(str::to_owned);
        return Action::Cancel(reason);
    }
    let (target, data) = target(action);
    Action::Resume(target, data)
}

fn target(action: &toml::Table) -> (ResumeTarget, Value) {
    let resume = action
        .get("resume")
        .and_then(toml::Value::as_table)
        .expect("resume = { .. }");
    let data = json_field(resume, "data").unwrap_or(json!({}));
    let target = if let Some(step) = resume.get("step").and_then(toml::Value::as_str) {
        ResumeTarget::Path(StepPath::parse(step).unwrap())
    } else if let Some(label) = resume.get("label").and_then(toml::Value::as_str) {
        ResumeTarget::Label(label.to_owned())
    } else {
        ResumeTarget::Only
    };
    (target, data)
}

/// The scenario's workflow as the runtimes take it, its steps run by `steps`.
pub(crate) fn registered(s: &Scenario, steps: Arc<dyn StepRunner>) -> Arc<Registered> {
    Arc::new(Registered {
        workflow: s.manifest.workflow().clone(),
        runner: steps,
        manifest: s.path.display().to_string(),
        manifest_sha256: "0".repeat(64),
        workflow_digest: None,
    })
}

/// A SQLite store in `dir`. Commits are not synced to the disk: this
/// harness compares behaviour, and fsyncs (one per commit, and the seeded
/// reordering commits once per report) would dominate its time; durability
/// is `crash.rs`'s business.
fn store(dir: &Path) -> SqliteStore {
    SqliteStore::open_with(&dir.join("weft.db"), Durability::Normal).unwrap()
}

/// Both runtimes run on a manual clock starting at 2026-01-01T00:00:00Z: a
/// sleep or a retry delay jumps it instead of waiting, and `sleep-until`
/// scenarios name times relative to that start.
fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp(1_767_225_600_000_000)))
}

/// The first events of the run action `i` (a rerun of the run `old` holds)
/// starts, and its id (`<id>-rerun-<i>`).
fn rerun_events(
    registered: &Registered,
    old: &[Event],
    id: &RunId,
    i: usize,
    from: StepPath,
    input: Option<Value>,
    clock: &dyn Clock,
) -> Result<(RunId, Vec<Event>), String> {
    let new = RunId::new(&format!("{id}-rerun-{i}")).unwrap();
    weft_core::rerun(
        &registered.workflow,
        old,
        new.clone(),
        from,
        input,
        clock.now(),
    )
    .map(|first| (new, first))
    .map_err(|e| e.to_string())
}

/// The default runtime over its own SQLite file: what it records must be
/// what the evented runtime records.
pub(crate) fn run_default(s: &Scenario, steps: Arc<dyn StepRunner>, id: &RunId) -> Vec<Observed> {
    run_on(s, steps, id, &|store, clock| {
        Box::new(DefaultRuntime::new(store, clock))
    })
}

/// The evented runtime (as `options` say) over its own SQLite file.
pub(crate) fn run_evented(
    s: &Scenario,
    steps: Arc<dyn StepRunner>,
    id: &RunId,
    options: EventedOptions,
) -> Vec<Observed> {
    run_on(s, steps, id, &|store, clock| {
        Box::new(EventedRuntime::with_options(store, clock, 2, options))
    })
}

/// The evented runtime (as `options` say) over PostgreSQL: a schema of
/// the harness's, emptied first and lent to this run alone (see the
/// module's documentation).
pub(crate) fn run_evented_postgres(
    s: &Scenario,
    steps: Arc<dyn StepRunner>,
    id: &RunId,
    options: EventedOptions,
) -> Vec<Observed> {
    let scratch = PgScratch::take();
    let seen = run_over(s, steps, id, scratch.store.clone(), &|store, clock| {
        Box::new(EventedRuntime::with_options(store, clock, 2, options))
    });
    scratch.give_back();
    seen
}

/// A PostgreSQL store for the harness, lent to one scenario at a time.
struct PgScratch {
    store: Arc<PostgresStore>,
    /// Empties the schema between scenarios.
    client: ::postgres::Client,
    name: String,
    /// Dropped last: the schema goes with the scratch.
    _schema: PgSchema,
}

/// The harness's PostgreSQL stores not lent out: as many as scenarios ran
/// at once, dropped (with their schemas) by [`drop_pg_scratches`].
static PG_SCRATCHES: Mutex<Vec<PgScratch>> = Mutex::new(Vec::new());

impl PgScratch {
    /// A store of the harness's, emptied; a new schema when none is free.
    fn take() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let free = PG_SCRATCHES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut scratch = free.unwrap_or_else(|| {
            let name = format!(
                "weft_parity_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let schema = PgSchema::new(&name);
            let store = Arc::new(PostgresStore::open(schema.url()).unwrap());
            let client = ::postgres::Client::connect(&postgres_url(), ::postgres::NoTls).unwrap();
            Self {
                store,
                client,
                name,
                _schema: schema,
            }
        });
        let name = &scratch.name;
        scratch
            .client
            .batch_execute(&format!(
                "DELETE FROM {name}.run_traces; DELETE FROM {name}.run_pins;
                 DELETE FROM {name}.events; DELETE FROM {name}.runs;
                 DELETE FROM {name}.deployments; DELETE FROM {name}.workflows;"
            ))
            .unwrap();
        scratch
    }

    /// Lends the store again. (One dropped instead, by a failed scenario's
    /// panic, drops its schema.)
    fn give_back(self) {
        PG_SCRATCHES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(self);
    }
}

/// Drops the harness's PostgreSQL schemas.
pub(crate) fn drop_pg_scratches() {
    let all = std::mem::take(
        &mut *PG_SCRATCHES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    drop(all);
}

/// Makes the runtime under test over a store and a clock.
type Build<'a> = &'a dyn Fn(Arc<dyn weft_core::EventStore>, Arc<dyn Clock>) -> Box<dyn Runtime>;

/// Runs the scenario (its run, then its actions) through the one
/// [`Runtime`] interface on the runtime `build` makes, over its own SQLite
/// file; checks that the events it reported are the events it stored.
fn run_on(s: &Scenario, steps: Arc<dyn StepRunner>, id: &RunId, build: Build<'_>) -> Vec<Observed> {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store(dir.path()));
    let seen = run_over(s, steps, id, store.clone(), build);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    seen
}

/// Runs the scenario through the runtime `build` makes over `store`
/// (empty); checks that the events it reported are the events it stored.
fn run_over(
    s: &Scenario,
    steps: Arc<dyn StepRunner>,
    id: &RunId,
    store: Arc<dyn weft_core::EventStore>,
    build: Build<'_>,
) -> Vec<Observed> {
    let clock = clock();
    let runtime = build(store.clone(), clock.clone());
    let registered = registered(s, steps);
    let events = |id: &RunId| store.load(id).unwrap().1;
    let call = |request: Request| {
        let run = request.run().clone();
        let before = store.load(&run).map_or(0, |(_, events)| events.len());
        let mut seen = Seen::default();
        let answer = runtime.call(request, &mut seen);
        if answer.is_ok() {
            assert_eq!(
                seen.0,
                events(&run)[before..],
                "{}: the {} runtime reports what it stores",
                s.path.display(),
                runtime.kind()
            );
        }
        answer
    };
    let mut result = call(Request::Start {
        workflow: registered.clone(),
        run: id.clone(),
        input: s.input.clone(),
        detach: false,
    })
    .unwrap();
    let mut seen = vec![observe(Ok(()), &result, &events(id))];
    let mut current = id.clone();
    for (i, a) in s.actions.iter().enumerate() {
        let outcome = match action(a) {
            Action::Resume(target, payload) => call(Request::Resume {
                workflow: registered.clone(),
                run: current.clone(),
                target,
                payload,
            })
            .map_err(|e| e.to_string()),
            Action::Cancel(reason) => call(Request::Cancel {
                workflow: registered.clone(),
                run: current.clone(),
                reason,
            })
            .map_err(|e| e.to_string()),
            Action::Rerun(from, input) => {
                rerun_events(&registered, &events(&current), id, i, from, input, &*clock).and_then(
                    |(new, first)| {
                        current = new.clone();
                        call(Request::StartWith {
                            workflow: registered.clone(),
                            run: new,
                            events: first,
                        })
                        .map_err(|e| e.to_string())
                    },
                )
            }
        }
        .map(|r| result = r);
        seen.push(observe(outcome, &result, &events(&current)));
    }
    seen
}

/// Collects the events a runtime reports as it records them.
#[derive(Default)]
struct Seen(Vec<Event>);

impl RunObserver for Seen {
    fn event(&mut self, _run: &RunId, event: &Event) {
        self.0.push(event.clone());
    }
}

pub(crate) fn check_expectations(s: &Scenario, seen: &[Observed]) {
    let name = s.path.display();
    for (i, action) in s.actions.iter().enumerate() {
        let outcome = &seen[i + 1].outcome;
        match action.get("error").and_then(toml::Value::as_str) {
            Some(text) => match outcome {
                Err(e) => assert!(e.contains(text), "{name}: action {i}: `{e}` lacks `{text}`"),
                Ok(_) => panic!("{name}: action {i} should fail with `{text}`"),
            },
            None => assert!(outcome.is_ok(), "{name}: action {i} failed: {outcome:?}"),
        }
    }
    let result = &seen.last().unwrap().result;
    let e = &s.expect;
    let status = e
        .get("status")
        .and_then(toml::Value::as_str)
        .expect("expect.status");
    assert_eq!(result["status"], status, "{name}: status\n{result:#}");
    if let Some(output) = json_field(e, "output") {
        assert_eq!(result["output"], output, "{name}: output");
    }
    if let Some(state) = json_field(e, "state") {
        assert_eq!(result["state"], state, "{name}: state");
    }
    if let Some(toml::Value::Table(error)) = e.get("error") {
        for (key, want) in error {
            let got = if key == "causes" {
                json!(
                    result["error"]["causes"]
                        .as_array()
                        .map(|c| c.iter().map(|c| c["code"].clone()).collect::<Vec<_>>())
                )
            } else {
                result["error"][key].clone()
            };
            assert_eq!(
                got,
                to_json(want),
                "{name}: error.{key}\n{:#}",
                result["error"]
            );
        }
    }
    let steps = result["steps"].as_array().unwrap();
    if let Some(toml::Value::Table(want)) = e.get("steps") {
        let got: Vec<(String, Value)> = steps
            .iter()
            .map(|s| (s["path"].as_str().unwrap().to_owned(), s["status"].clone()))
            .collect();
        let want: Vec<(String, Value)> =
            want.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
        if s.seeds.is_some() {
            let got: BTreeMap<_, _> = got.into_iter().collect();
            let want: BTreeMap<_, _> = want.into_iter().collect();
            assert_eq!(got, want, "{name}: steps (by path)");
        } else {
            assert_eq!(got, want, "{name}: steps (in order of first start)");
        }
    }
    if let Some(toml::Value::Table(want)) = e.get("attempts") {
        for (path, n) in want {
            let step = steps.iter().find(|s| s["path"] == path.as_str()).unwrap();
            assert_eq!(step["attempt"], to_json(n), "{name}: attempts of {path}");
        }
    }
    if let Some(toml::Value::Array(want)) = e.get("events") {
        let got: Vec<&str> = seen
            .last()
            .unwrap()
            .events
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = want.iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(got, want, "{name}: event types");
    }
}

/// What must agree, part by part: for a sequential scenario, everything in
/// order; for a concurrent one, the suspended addresses as a set, the step
/// records by address and the events grouped by address.
fn parts(observed: &Observed, concurrent: bool) -> BTreeMap<String, Value> {
    let mut parts = BTreeMap::new();
    parts.insert(
        "outcome".to_owned(),
        match &observed.outcome {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "error": e }),
        },
    );
    let Value::Object(result) = &observed.result else {
        panic!("a result is an object: {}", observed.result)
    };
    for (key, value) in result {
        let value = match (key.as_str(), value) {
            ("suspended", Value::Array(items)) if concurrent => {
                let mut items = items.clone();
                items.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
                Value::Array(items)
            }
            ("steps", Value::Array(records)) if concurrent => {
                for record in records {
                    let path = record["path"].as_str().unwrap_or_default();
                    parts.insert(format!("step {path}"), record.clone());
                }
                continue;
            }
            _ => value.clone(),
        };
        parts.insert(key.clone(), value);
    }
    if concurrent {
        let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for event in &observed.events {
            let mut event = event.clone();
            // Which steps a run suspended on is a set.
            if let Some(Value::Array(paths)) = event.get_mut("paths") {
                paths.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
            let group = match event.get("path").and_then(Value::as_str) {
                Some(path) => format!("events of {path}"),
                None => "run-level events".to_owned(),
            };
            groups.entry(group).or_default().push(event);
        }
        parts.extend(groups.into_iter().map(|(k, v)| (k, Value::Array(v))));
    } else {
        parts.insert("events".to_owned(), Value::Array(observed.events.clone()));
    }
    parts
}

/// A value as one line, cut short when long.
fn brief(value: Option<&Value>) -> String {
    const MAX: usize = 1000;
    let Some(value) = value else {
        return "(absent)".to_owned();
    };
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Each part on which `default` and `evented` differ, described.
fn differences(default: &Observed, evented: &Observed, concurrent: bool) -> Vec<String> {
    let (d, e) = (parts(default, concurrent), parts(evented, concurrent));
    let mut keys: Vec<&String> = d.keys().chain(e.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut found = Vec::new();
    for key in keys {
        let (a, b) = (d.get(key), e.get(key));
        if a == b {
            continue;
        }
        let text = match (a, b) {
            (Some(Value::Array(a)), Some(Value::Array(b))) if key.contains("events") => {
                let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                let types = |list: &[Value]| {
                    list.iter()
                        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "{key} differ from #{at}:\n      default: [{}]\n      evented: [{}]\n      \
                     default #{at}: {}\n      evented #{at}: {}",
                    types(a),
                    types(b),
                    brief(a.get(at)),
                    brief(b.get(at)),
                )
            }
            _ => format!(
                "{key}:\n      default: {}\n      evented: {}",
                brief(a),
                brief(b),
            ),
        };
        found.push(text);
    }
    found
}

/// Panics naming the scenario, the seed and what differs, if the evented
/// runtime's observations differ from the default runtime's.
pub(crate) fn compare(s: &Scenario, seed: Option<u64>, default: &[Observed], evented: &[Observed]) {
    let run = match seed {
        Some(seed) => format!("the evented runtime with reorder seed {seed}"),
        None => "the evented runtime".to_owned(),
    };
    compare_runs(s, "the default runtime", &run, default, evented);
}

/// Panics naming the scenario, the two runs and what differs, if their
/// observations differ.
pub(crate) fn compare_runs(
    s: &Scenario,
    a: &str,
    b: &str,
    first: &[Observed],
    second: &[Observed],
) {
    assert_eq!(first.len(), second.len());
    for (i, (d, e)) in first.iter().zip(second).enumerate() {
        let found = differences(d, e, s.seeds.is_some());
        if found.is_empty() {
            continue;
        }
        let when = if i == 0 {
            "after the start".to_owned()
        } else {
            format!("after action {i}")
        };
        panic!(
            "{}: {a} and {b} differ {when}:\n  - {}",
            s.path.display(),
            found.join("\n  - ")
        );
    }
}

/// The run id every scenario runs under, on both runtimes.
pub(crate) const RUN_ID: &str = "parity-run";

/// Runs `check`, turning a panic into its message.
pub(crate) fn catch(check: impl FnOnce()) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

/// Runs one scenario on both runtimes (the evented one under every seed
/// when it is concurrent) and checks its expectations: why not, if not.
fn check_scenario(sandbox: &Sandbox, path: &Path) -> Result<(), String> {
    catch(|| {
        let s = load(path);
        let steps = Arc::new(WorkflowSteps::load(sandbox, s.manifest.workflow()).unwrap());
        let id = RunId::new(RUN_ID).unwrap();
        let default = run_default(&s, steps.clone(), &id);
        match s.seeds {
            None => {
                let evented = run_evented(&s, steps.clone(), &id, EventedOptions::default());
                compare(&s, None, &default, &evented);
            }
            Some(seeds) => {
                for seed in 0..seeds {
                    let options = EventedOptions {
                        reorder_seed: Some(seed),
                        ..EventedOptions::default()
                    };
                    let evented = run_evented(&s, steps.clone(), &id, options);
                    compare(&s, Some(seed), &default, &evented);
                }
            }
        }
        // The third setup: over PostgreSQL, under the first seed.
        let options = EventedOptions {
            reorder_seed: s.seeds.map(|_| 0),
            ..EventedOptions::default()
        };
        let on_postgres = run_evented_postgres(&s, steps, &id, options);
        let run = match options.reorder_seed {
            Some(seed) => format!("the evented runtime over PostgreSQL with reorder seed {seed}"),
            None => "the evented runtime over PostgreSQL".to_owned(),
        };
        compare_runs(&s, "the default runtime", &run, &default, &on_postgres);
        check_expectations(&s, &default);
    })
}

/// A sandbox compiling into the tests' shared cache.
pub(crate) fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        cache_dir: Some(cache_dir()),
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// The `*.toml` files in `dir`, sorted.
pub(crate) fn scenario_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
}

/// Runs `check` on every item, on a few threads at once; returns the
/// failures (`name` of the item and why), sorted.
pub(crate) fn run_parallel<T: Sync>(
    items: &[T],
    name: impl Fn(&T) -> String + Sync,
    check: impl Fn(&T) -> Result<(), String> + Sync,
) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(message) = check(item) {
                        let failure = format!("{}:\n{message}", name(item));
                        failures.lock().unwrap().push(failure);
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    failures
}

#[test]
fn every_scenario_behaves_identically_on_both_runtimes() {
    let dir = root().join("tests/scenarios");
    let paths = scenario_paths(&dir);
    assert!(
        paths.len() >= 30,
        "only {} scenarios in {}",
        paths.len(),
        dir.display()
    );
    let sandbox = sandbox();
    // Scenarios run on a few threads at once (each with its own stores and
    // runtimes; the sandbox and its compile cache are shared).
    let failures = run_parallel(
        &paths,
        |path| path.display().to_string(),
        |path| check_scenario(&sandbox, path),
    );
    drop_pg_scratches();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
