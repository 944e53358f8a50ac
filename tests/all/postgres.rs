//! weft on PostgreSQL through the real binary: `--db postgres://…?schema=…`
//! (and `WEFT_DB`) wherever `--db` is accepted, a run started in one
//! process and resumed in another, read back by the inspection commands
//! (which open the store read-only); and a run that goes on when its
//! store's backends are killed under it (the store reconnects and retries).

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use weft_core::{
    Event, EventStore as _, RunId, RunStatus, StepReport, StepRunner, StepTask, StepView,
};
use weft_runtime::{EventedRuntime, NoObserver, Request, Runtime as _, SystemClock};
use weft_sandbox::WorkflowSteps;
use weft_store_postgres::PostgresStore;

use crate::parity;
use crate::support::{PgSchema, postgres_url, root, stderr, stdout, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";

fn run(home: &Path, args: &[&str]) -> Output {
    weft(home).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

#[test]
fn a_run_on_postgres_is_resumed_and_read_back_from_other_processes() {
    let home = tempfile::tempdir().unwrap();
    let schema = PgSchema::new(&format!("weft_cli_{}", std::process::id()));
    let db = schema.url();

    // Inspecting a store nobody wrote yet creates nothing and finds nothing.
    let out = run(home.path(), &["runs", "--db", db, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out), serde_json::json!([]));

    // A big order suspends for approval (evented runtime, the default) …
    let out = run(
        home.path(),
        &[
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/big-order.json",
            "--json",
            "--db",
            db,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let suspended = json(&out);
    let id = suspended["run_id"].as_str().unwrap().to_owned();

    // … and is resumed by another process, with the default runtime.
    let out = run(
        home.path(),
        &[
            "resume",
            &id,
            "--label",
            "manager-approval",
            "--data",
            r#"{"approved": true, "approver": "dana"}"#,
            "--runtime",
            "default",
            "--json",
            "--db",
            db,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let finished = json(&out);
    assert_eq!(finished["status"], "success");

    // The inspection commands read it back: the same result, its events
    // in order, the run listed and held by nobody.
    let out = run(home.path(), &["status", &id, "--json", "--db", db]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status = json(&out);
    assert_eq!(status["status"], "success");
    assert_eq!(status["output"], finished["output"]);

    let out = run(home.path(), &["events", &id, "--json", "--db", db]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let types: Vec<String> = stdout(&out)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("run-started"));
    assert!(types.iter().any(|t| t == "run-suspended"), "{types:?}");
    assert!(types.iter().any(|t| t == "run-resumed"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("run-completed"));

    // `WEFT_DB` names the store when `--db` does not.
    let out = weft(home.path())
        .env("WEFT_DB", db)
        .args(["runs", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs = json(&out);
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["run_id"], id.as_str());
    assert_eq!(runs[0]["status"], "success");
    assert!(runs[0].get("held_by").is_none(), "{runs}");

    // Everything went to PostgreSQL: no SQLite store in the home.
    assert!(!home.path().join("weft.db").exists());
}

#[test]
fn an_unreachable_postgres_is_named_without_its_password() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on loopback port 1: refused at once.
    let db = "postgres://weft:hunter2@127.0.0.1:1/test?schema=nowhere";
    for args in [
        &["run", EXAMPLE, "--db", db][..],
        &["status", "some-run", "--db", db],
    ] {
        let out = run(home.path(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {err}");
        assert!(
            err.contains(
                "cannot connect to PostgreSQL at postgres://weft@127.0.0.1:1/test?schema=nowhere"
            ),
            "{args:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{args:?}: {err}");
    }
}

/// Terminates the backends of the connections named `app` (their
/// `application_name`), waiting for each to be gone: only this test's, not
/// those of the other tests sharing the database. How many it terminated.
fn terminate(app: &str) -> usize {
    let mut admin = ::postgres::Client::connect(&postgres_url(), ::postgres::NoTls).unwrap();
    admin
        .query(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1
               AND pid <> pg_backend_pid()",
            &[&app],
        )
        .unwrap()
        .into_iter()
        .filter(|row| row.get::<_, bool>(0))
        .count()
}

/// Runs the steps of a workflow, killing the store's backends (those named
/// `app`) while the attempt at `at` runs.
struct Killing {
    steps: WorkflowSteps,
    at: &'static str,
    app: String,
    killed: AtomicUsize,
}

impl StepRunner for Killing {
    fn run(&self, task: &StepTask, view: &StepView) -> StepReport {
        if task.path.to_string() == self.at {
            self.killed
                .fetch_add(terminate(&self.app), Ordering::Relaxed);
        }
        self.steps.run(task, view)
    }
}

#[test]
fn an_evented_run_on_postgres_goes_on_when_its_backends_are_killed() {
    let name = format!("weft_kill_{}", std::process::id());
    let schema = PgSchema::new(&name);
    let url = format!("{}&application_name={name}", schema.url());
    let store = Arc::new(PostgresStore::open(&url).unwrap());
    let scenario = parity::load(&root().join("tests/scenarios/basic-echo-chain.toml"));
    let steps = Arc::new(Killing {
        steps: WorkflowSteps::load(&parity::sandbox(), scenario.manifest.workflow()).unwrap(),
        at: "two",
        app: name.clone(),
        killed: AtomicUsize::new(0),
    });
    let runtime = EventedRuntime::new(store.clone(), Arc::new(SystemClock), 2);
    let run = RunId::new("killed-under").unwrap();
    let result = runtime
        .call(
            Request::Start {
                workflow: parity::registered(&scenario, steps.clone()),
                run: run.clone(),
                input: scenario.input.clone(),
                detach: false,
            },
            &mut NoObserver,
        )
        .unwrap();
    drop(runtime);
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    assert!(
        steps.killed.load(Ordering::Relaxed) >= 1,
        "the store's backends were killed mid-run"
    );
    // Each step's completion was committed once: no append was lost, and
    // none was applied twice by a retry.
    let (_, events) = store.load(&run).unwrap();
    for path in ["one", "two", "three"] {
        let completions = events
            .iter()
            .filter(|e| matches!(e, Event::StepCompleted { path: p, .. } if p.to_string() == path))
            .count();
        assert_eq!(completions, 1, "completions of {path}: {events:#?}");
    }
    assert!(matches!(events.last(), Some(Event::RunCompleted { .. })));
}
