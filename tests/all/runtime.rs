//! The default runtime with real guest components (built from Rust by
//! `guest-examples/build.sh`) in one process.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use weft_core::EventStore as _;
use weft_core::{Event, FailureKind, ResumeTarget, RunId, RunResult, RunStatus, StepStatus};
use weft_manifest::Manifest;
use weft_runtime::{
    LeaseOptions, MemoryStore, NoObserver, Registered, Request, Runtime, RuntimeKind, SystemClock,
};
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};

use crate::support::{root, test_steps_manifest};

struct Loaded {
    registered: Arc<Registered>,
    runtime: Box<dyn Runtime>,
    store: Arc<MemoryStore>,
    next_run: AtomicU32,
}

/// A run as the tests here see it: its result and its stored events.
struct Run {
    result: RunResult,
    events: Vec<Event>,
}

impl Run {
    fn result(&self) -> RunResult {
        self.result.clone()
    }

    fn events(&self) -> &[Event] {
        &self.events
    }
}

fn load(sandbox: &Sandbox, path: &Path) -> Loaded {
    let manifest = Manifest::load(path).unwrap_or_else(|e| panic!("{e}"));
    let steps = WorkflowSteps::load(sandbox, manifest.workflow()).unwrap_or_else(|e| panic!("{e}"));
    let registered = Arc::new(Registered {
        workflow: manifest.workflow().clone(),
        runner: Arc::new(steps),
        manifest: path.display().to_string(),
        manifest_sha256: "0".repeat(64),
        workflow_digest: None,
    });
    let store = Arc::new(MemoryStore::new());
    let runtime = RuntimeKind::Default.build(
        store.clone(),
        Arc::new(SystemClock),
        1,
        LeaseOptions::default(),
    );
    Loaded {
        registered,
        runtime,
        store,
        next_run: AtomicU32::new(1),
    }
}

impl Loaded {
    fn call(&self, request: Request) -> Run {
        let id = request.run().clone();
        let result = self.runtime.call(request, &mut NoObserver).unwrap();
        let events = self.store.load(&id).unwrap().1;
        Run { result, events }
    }

    fn start(&self, input: Value) -> Run {
        let n = self.next_run.fetch_add(1, Ordering::Relaxed);
        self.call(Request::Start {
            workflow: self.registered.clone(),
            run: RunId::new(&format!("run-{n}")).unwrap(),
            input,
            detach: false,
        })
    }

    fn resume(&self, run: &mut Run, target: &ResumeTarget, payload: Value) {
        *run = self.call(Request::Resume {
            workflow: self.registered.clone(),
            run: run.result.run_id.clone(),
            target: target.clone(),
            payload,
        });
    }
}

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).unwrap()
}

fn example(name: &str) -> Value {
    let path = root().join("examples/order-approval").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn step<'a>(result: &'a RunResult, path: &str) -> &'a weft_core::StepRecord {
    result
        .steps
        .iter()
        .find(|s| s.path.as_str() == path)
        .unwrap()
}

#[test]
fn the_example_workflow_runs_end_to_end() {
    let sandbox = sandbox();
    let wf = load(
        &sandbox,
        &root().join("examples/order-approval/workflow.toml"),
    );
    let run = wf.start(example("small-order.json"));
    let result = run.result();
    assert_eq!(result.status, RunStatus::Success, "{result:#?}");
    assert_eq!(
        step(&result, "validate").output.as_ref().unwrap()["total_cents"],
        2 * 1999 + 5 * 250
    );
    assert_eq!(
        step(&result, "approve").output.as_ref().unwrap()["approved_by"],
        "auto"
    );
    let output = result.output.unwrap();
    assert_eq!(output["notified"], true);
    assert_eq!(output["customer"], "ada@example.com");
    assert_eq!(result.state["reservations"], 1);
    let emitted: Vec<_> = run
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Custom { path, event, .. } => {
                Some((path.as_str().to_owned(), event.kind.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        emitted,
        [
            ("notify".into(), "notification".into()),
            ("notify".into(), "progress".into())
        ]
    );
}

#[test]
fn approval_suspends_and_resumes_then_a_rejection_bails() {
    let sandbox = sandbox();
    let wf = load(
        &sandbox,
        &root().join("examples/order-approval/workflow.toml"),
    );

    let mut run = wf.start(example("big-order.json"));
    assert_eq!(run.result().status, RunStatus::Suspended);
    let label = ResumeTarget::Label("manager-approval".into());
    let yes = json!({"approved": true, "approver": "dana"});
    wf.resume(&mut run, &label, yes);
    let result = run.result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(
        step(&result, "charge").output.as_ref().unwrap()["approved_by"],
        "dana"
    );

    let mut run = wf.start(example("big-order.json"));
    let no = json!({"approved": false, "approver": "erin"});
    wf.resume(&mut run, &ResumeTarget::Only, no);
    let result = run.result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output.as_ref().unwrap()["status"], "rejected");
    assert_eq!(step(&result, "approve").status, StepStatus::Bailed);
    assert!(
        result.steps.iter().all(|s| s.path.as_str() != "charge"),
        "charge must not run"
    );
}

#[test]
fn a_declined_charge_fails_the_run_with_details_and_causes() {
    let sandbox = sandbox();
    let wf = load(
        &sandbox,
        &root().join("examples/order-approval/workflow.toml"),
    );
    let mut run = wf.start(example("huge-order.json"));
    let yes = json!({"approved": true, "approver": "dana"});
    wf.resume(&mut run, &ResumeTarget::Only, yes);
    let result = run.result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.clone().unwrap();
    assert_eq!(error.step.unwrap().as_str(), "charge");
    assert_eq!(error.error.kind, FailureKind::Step);
    assert_eq!(error.error.code, "card-declined");
    assert!(!error.error.retryable);
    assert_eq!(
        error.error.details.as_ref().unwrap()["limit_cents"],
        500_000
    );
    let causes: Vec<_> = error.error.causes.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(causes, ["issuer-declined", "limit-exceeded"]);
    // Not retryable: one attempt despite the step's retry policy.
    assert_eq!(step(&result, "charge").attempt, 1);
}

#[test]
fn a_guest_reads_state_earlier_results_and_the_workflow_input() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("first", ""), ("second", "")]);
    let sandbox = sandbox();
    let wf = load(&sandbox, &manifest);
    // `first` sets the state and outputs the action `second` runs.
    let input =
        json!({"action": "set-state", "state": {"n": 1}, "output": {"action": "get-state"}});
    let result = wf.start(input).result();
    assert_eq!(result.output, Some(json!({"n": 1})));
    assert_eq!(result.state, json!({"n": 1}));

    let input = json!({"action": "complete", "output": {"action": "step-result", "id": "first"}});
    let result = wf.start(input).result();
    assert_eq!(
        result.output,
        Some(json!({"action": "step-result", "id": "first"}))
    );

    let input = json!({"action": "complete", "output": {"action": "workflow-input"}});
    let result = wf.start(input.clone()).result();
    assert_eq!(result.output, Some(input));

    // A step that sets state and then fails leaves the state as it was.
    let input = json!({"action": "set-state", "state": {"n": 1},
        "output": {"action": "set-state-then-fail", "state": {"n": 2}}});
    let result = wf.start(input).result();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.unwrap().error.code, "after-state");
    assert_eq!(result.state, json!({"n": 1}));
}

#[test]
fn context_fields_reach_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("ctx", "")]);
    let sandbox = sandbox();
    let wf = load(&sandbox, &manifest);
    let run = wf.start(json!({"action": "context"}));
    let output = run.result().output.unwrap();
    let run_id = run.result().run_id.to_string();
    assert_eq!(output["run_id"], run_id.as_str());
    assert_eq!(output["workflow_id"], "test");
    assert_eq!(output["step_id"], "ctx");
    assert_eq!(output["step_path"], "ctx");
    assert_eq!(output["attempt"], 1);
    assert_eq!(output["idempotency_key"], format!("{run_id}/ctx"));
    assert_eq!(output["resume_payload"], Value::Null);
}

#[test]
fn transient_failures_are_retried_until_they_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(
        dir.path(),
        &[("flaky", "retry = { max-retries = 3, delay-ms = 1 }")],
    );
    let sandbox = sandbox();
    let wf = load(&sandbox, &manifest);
    let result = wf
        .start(json!({"action": "fail-until", "attempt": 3, "output": "done"}))
        .result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!("done")));
    assert_eq!(step(&result, "flaky").attempt, 3);
}

#[test]
fn an_infinite_loop_fails_within_its_deadline_and_the_process_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("spin", "limits = { deadline-ms = 200 }")]);
    let sandbox = sandbox();
    let wf = load(&sandbox, &manifest);
    let result = wf.start(json!({"action": "loop"})).result();
    assert_eq!(result.status, RunStatus::Failed);
    let record = step(&result, "spin");
    let error = record.error.as_ref().unwrap();
    assert_eq!(error.kind, FailureKind::Deadline);
    let took_us = record.ended_at.unwrap().micros_since(record.started_at);
    assert!(
        // Slack for a loaded 2-core machine; the exact bound is unit-tested
        // in the sandbox's `deadline` module.
        took_us < (200 + 250) * 1000,
        "the deadline fired after {took_us} µs"
    );

    // The same sandbox and runtime run the next workflow fine.
    let ok = wf
        .start(json!({"action": "complete", "output": {"fine": true}}))
        .result();
    assert_eq!(ok.status, RunStatus::Success);
    assert_eq!(ok.output, Some(json!({"fine": true})));
}

#[test]
fn traps_memory_and_payload_limits_fail_the_step_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(
        dir.path(),
        &[(
            "s",
            "limits = { memory-bytes = 8388608, max-output-bytes = 1000 }",
        )],
    );
    let sandbox = sandbox();
    let wf = load(&sandbox, &manifest);
    let kind = |input: Value| wf.start(input).result().error.map(|e| e.error.kind);
    assert_eq!(kind(json!({"action": "panic"})), Some(FailureKind::Trap));
    assert_eq!(
        kind(json!({"action": "grow", "mb": 64})),
        Some(FailureKind::Memory)
    );
    assert_eq!(
        kind(json!({"action": "big-output", "bytes": 5000})),
        Some(FailureKind::PayloadTooLarge)
    );
    assert_eq!(
        kind(json!({"action": "invalid-json"})),
        Some(FailureKind::InvalidOutput)
    );
    assert_eq!(kind(json!({"action": "grow", "mb": 1})), None);
}
