//! The differential parity harness: every scenario under `tests/scenarios/`
//! runs on BOTH runtimes (default, and evented over a SQLite file), and the
//! two must agree exactly — status, output, error, per-step results, state and
//! the event sequence (timestamps excluded) — after the start and after every
//! action. Each scenario's own expectations are checked too.
//!
//! A scenario is one TOML file:
//!
//! ```toml
//! description = "what it shows"
//! input = { action = "complete", output = 1 }   # or input-json = 'any JSON text'
//!
//! [[actions]]                       # optional, applied in order after the start
//! resume = { label = "approve", data = { ok = true } }   # or step = "path"; neither = the only one
//! error = "is not suspended"        # optional: the action must fail with this text
//!
//! [[actions]]
//! cancel = { reason = "no longer needed" }   # or cancel = {}
//!
//! [expect]
//! status = "success"                # required
//! output = { n = 1 }                # optional (or output-json)
//! error = { code = "boom", kind = "step", step = "a", retryable = false, causes = ["root"] }
//! steps = { a = "success", b = "failed" }   # optional: status per path; unlisted paths must not exist
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, ResumeTarget, RunId, RunResult, StepPath, SystemClock};
use weft_manifest::Manifest;
use weft_runtime::{DefaultRuntime, EventedRuntime, NoObserver, Registered, Run, RuntimeError};
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};
use weft_store_sqlite::SqliteStore;

use crate::support::{guest, root};

struct Scenario {
    path: PathBuf,
    input: Value,
    actions: Vec<toml::Table>,
    expect: toml::Table,
    manifest: Manifest,
}

fn to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).expect("TOML values are JSON values")
}

fn json_field(table: &toml::Table, key: &str) -> Option<Value> {
    if let Some(v) = table.get(key) {
        return Some(to_json(v));
    }
    table
        .get(&format!("{key}-json"))
        .and_then(toml::Value::as_str)
        .map(|text| serde_json::from_str(text).unwrap_or_else(|e| panic!("{key}-json: {e}")))
}

fn load(path: &Path) -> Scenario {
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
                *name = guest(name.as_str()).display().to_string();
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
    Scenario {
        path: path.to_owned(),
        input: json_field(&table, "input").unwrap_or(json!({})),
        actions,
        expect,
        manifest,
    }
}

/// Removes what legitimately differs between runs: timestamps.
fn normalize(mut value: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for key in ["at", "due", "started_at", "ended_at", "retry_at"] {
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
#[derive(Debug, PartialEq)]
struct Observed {
    outcome: Result<Value, String>,
    result: Value,
    events: Vec<Value>,
}

fn observe(outcome: Result<(), RuntimeError>, result: &RunResult, events: &[Event]) -> Observed {
    Observed {
        outcome: outcome.map(|()| Value::Null).map_err(|e| e.to_string()),
        result: normalize(serde_json::to_value(result).unwrap()),
        events: events
            .iter()
            .map(|e| normalize(serde_json::to_value(e).unwrap()))
            .collect(),
    }
}

/// What an action asks for.
enum Action {
    Resume(ResumeTarget, Value),
    Cancel(Option<String>),
}

fn action(action: &toml::Table) -> Action {
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

fn registered(s: &Scenario, steps: Arc<WorkflowSteps>) -> Arc<Registered> {
    Arc::new(Registered {
        workflow: s.manifest.workflow().clone(),
        runner: steps,
        manifest: s.path.display().to_string(),
        manifest_sha256: "0".repeat(64),
    })
}

/// The default runtime over its own SQLite file: what it records must be
/// what the evented runtime records.
fn run_default(s: &Scenario, steps: Arc<WorkflowSteps>, id: &RunId) -> Vec<Observed> {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("weft.db")).unwrap());
    let runtime = DefaultRuntime::new(store.clone(), Arc::new(SystemClock));
    let registered = registered(s, steps);
    let events = || store.load(id).unwrap().1;
    let run: Run = runtime
        .start(&registered, id.clone(), s.input.clone(), &mut NoObserver)
        .unwrap();
    assert_eq!(
        run.events(),
        events(),
        "the default runtime stores what it ran"
    );
    let mut result = run.result();
    let mut seen = vec![observe(Ok(()), &result, &events())];
    for a in &s.actions {
        let outcome = match action(a) {
            Action::Resume(target, data) => {
                runtime.resume(&registered, id, &target, data, &mut NoObserver)
            }
            Action::Cancel(reason) => runtime.cancel(&registered, id, reason, &mut NoObserver),
        }
        .map(|run| result = run.result());
        seen.push(observe(outcome, &result, &events()));
    }
    assert_eq!(store.integrity_check().unwrap(), "ok");
    seen
}

fn run_evented(s: &Scenario, steps: Arc<WorkflowSteps>, id: &RunId) -> Vec<Observed> {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("weft.db")).unwrap());
    let runtime = EventedRuntime::new(store.clone(), Arc::new(SystemClock), 2);
    let registered = registered(s, steps);
    let events = || store.load(id).unwrap().1;
    let mut result = runtime
        .start(registered.clone(), id.clone(), s.input.clone())
        .unwrap();
    let mut seen = vec![observe(Ok(()), &result, &events())];
    for a in &s.actions {
        let outcome = match action(a) {
            Action::Resume(target, data) => {
                runtime.resume(registered.clone(), id.clone(), target, data)
            }
            Action::Cancel(reason) => runtime.cancel(registered.clone(), id.clone(), reason),
        }
        .map(|r| result = r);
        seen.push(observe(outcome, &result, &events()));
    }
    assert_eq!(store.integrity_check().unwrap(), "ok");
    seen
}

fn check_expectations(s: &Scenario, seen: &[Observed]) {
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
        assert_eq!(got, want, "{name}: steps (in order of first start)");
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

#[test]
fn every_scenario_behaves_identically_on_both_runtimes() {
    let dir = root().join("tests/scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 30,
        "only {} scenarios in {}",
        paths.len(),
        dir.display()
    );
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut failures = Vec::new();
    for path in &paths {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let s = load(path);
            let steps = Arc::new(WorkflowSteps::load(&sandbox, s.manifest.workflow()).unwrap());
            let id = RunId::new("parity-run").unwrap();
            let default = run_default(&s, steps.clone(), &id);
            let evented = run_evented(&s, steps, &id);
            for (i, (d, e)) in default.iter().zip(&evented).enumerate() {
                let when = if i == 0 {
                    "after the start".to_owned()
                } else {
                    format!("after action {i}")
                };
                assert_eq!(d, e, "{}: the runtimes differ {when}", path.display());
            }
            check_expectations(&s, &default);
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}:\n{message}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
