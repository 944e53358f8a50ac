//! The Rust `test-steps` guest: host imports (outcomes, state, events and
//! logs, results, input and context, limits), `WorkflowSteps`, and the C
//! guest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use weft_core::{
    FailureKind, Grant, Limits, LogLevel, LogLine, Node, NodeKind, StepDef, StepId, StepOutcome,
    StepPath, StepReport, StepRunner, StepView, WorkflowBuilder,
};
use weft_sandbox::{SandboxError, StepComponent, WorkflowSteps};

use super::{assert_on_time, completed, failure, id, limits, run, sandbox, task};

fn test_steps_path() -> PathBuf {
    crate::support::guest("test-steps")
}

fn test_steps() -> Arc<StepComponent> {
    sandbox()
        .load_file(&test_steps_path(), &[])
        .expect("test-steps loads")
}

fn view() -> StepView {
    let results: BTreeMap<StepId, Arc<Value>> =
        [(id("validate"), Arc::new(json!({"total_cents": 500})))]
            .into_iter()
            .collect();
    StepView {
        workflow_input: Arc::new(json!({"customer": "ada"})),
        state: Arc::new(json!({"committed": true})),
        results: Arc::new(results),
    }
}

fn run_test_step(input: Value, limits: &Limits) -> StepReport {
    test_steps().run(&task(input), &view(), limits)
}

#[test]
fn rust_guest_completes_fails_suspends_and_bails() {
    let report = run_test_step(
        json!({"action": "complete", "output": {"x": [1, 2]}}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!({"x": [1, 2]}));

    let report = run_test_step(
        json!({"action": "fail", "code": "card-declined", "message": "declined", "retryable": true,
               "details": {"limit": 5}, "causes": [{"code": "issuer", "message": "no", "details": [1]}]}),
        &limits(),
    );
    let error = failure(&report, FailureKind::Step);
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("card-declined", "declined")
    );
    assert!(error.retryable);
    assert_eq!(error.details, Some(json!({"limit": 5})));
    assert_eq!(error.causes.len(), 1);
    assert_eq!(error.causes[0].details, Some(json!([1])));

    let report = run_test_step(
        json!({"action": "suspend", "payload": {"why": "approval"}, "labels": ["manager"]}),
        &limits(),
    );
    assert_eq!(
        report.outcome,
        Ok(StepOutcome::Suspended {
            payload: json!({"why": "approval"}),
            labels: vec!["manager".into()]
        })
    );

    let report = run_test_step(json!({"action": "bail", "output": "done"}), &limits());
    assert_eq!(report.outcome, Ok(StepOutcome::Bailed(json!("done"))));

    let report = run_test_step(json!({"action": "invalid-json"}), &limits());
    failure(&report, FailureKind::InvalidOutput);
}

#[test]
fn rust_guest_sets_and_reads_state() {
    let report = run_test_step(
        json!({"action": "set-state", "state": {"n": 1}, "output": "ok"}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!("ok"));
    assert_eq!(report.state, Some(json!({"n": 1})));

    let report = run_test_step(json!({"action": "get-state"}), &limits());
    assert_eq!(completed(&report), &json!({"committed": true}));
    assert_eq!(report.state, None);

    // The state set by a failed attempt is reported (the caller discards it).
    let report = run_test_step(
        json!({"action": "set-state-then-fail", "state": [1]}),
        &limits(),
    );
    assert_eq!(failure(&report, FailureKind::Step).code, "after-state");
    assert_eq!(report.state, Some(json!([1])));

    // Over the state limit, the guest gets an error, and the attempt fails.
    let limits = Limits {
        max_state_bytes: 8,
        ..limits()
    };
    let report = run_test_step(
        json!({"action": "set-state", "state": {"big": "more than eight"}, "output": "ok"}),
        &limits,
    );
    let error = failure(&report, FailureKind::PayloadTooLarge);
    assert!(error.message.contains("state"), "{}", error.message);
    assert_eq!(report.state, None);
}

#[test]
fn rust_guest_emits_events_and_logs() {
    let events =
        json!([{"kind": "progress", "data": {"percent": 40}}, {"kind": "done", "data": null}]);
    let report = run_test_step(
        json!({"action": "emit", "events": events, "output": 1}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!(1));
    let kinds: Vec<(&str, &Value)> = report
        .events
        .iter()
        .map(|e| (e.kind.as_str(), &e.data))
        .collect();
    assert_eq!(
        kinds,
        [
            ("progress", &json!({"percent": 40})),
            ("done", &json!(null))
        ]
    );

    let report = run_test_step(
        json!({"action": "emit", "events": events}),
        &Limits {
            max_events: 1,
            ..limits()
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);
    assert_eq!(report.events.len(), 1);

    let big = json!([{"kind": "big", "data": "x".repeat(100)}]);
    let report = run_test_step(
        json!({"action": "emit", "events": big}),
        &Limits {
            max_event_bytes: 64,
            ..limits()
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);

    let report = run_test_step(
        json!({"action": "log", "level": "warn", "message": "careful"}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!(null));
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Warn,
            message: "careful".into()
        }]
    );
}

#[test]
fn rust_guest_reads_results_input_and_context() {
    let report = run_test_step(
        json!({"action": "step-result", "id": "validate"}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!({"total_cents": 500}));
    for missing in ["other", "not an id!", ""] {
        let report = run_test_step(json!({"action": "step-result", "id": missing}), &limits());
        assert_eq!(completed(&report), &json!(null), "{missing}");
    }

    let report = run_test_step(json!({"action": "workflow-input"}), &limits());
    assert_eq!(completed(&report), &json!({"customer": "ada"}));

    let mut task = task(json!({"action": "context"}));
    task.attempt = 3;
    task.path = StepPath::root(&id("items")).iteration(2).child(&id("s"));
    task.idempotency_key = "run-1/items[2]/s".into();
    task.resume_payload = Some(json!({"approved": true}));
    task.suspend_payload = Some(json!("waiting"));
    task.iteration = Some(2);
    let report = test_steps().run(&task, &view(), &limits());
    assert_eq!(
        completed(&report),
        &json!({
            "run_id": "run-1", "workflow_id": "wf", "step_id": "s", "step_path": "items[2]/s",
            "attempt": 3, "idempotency_key": "run-1/items[2]/s",
            "resume_payload": {"approved": true}, "suspend_payload": "waiting", "iteration": 2
        })
    );
}

#[test]
fn rust_guest_panics_loops_and_grows_within_limits() {
    let report = run_test_step(json!({"action": "panic"}), &limits());
    let error = failure(&report, FailureKind::Trap);
    assert!(error.message.contains("unreachable"), "{}", error.message);

    // The guest loops forever: its deadline stops it (see `assert_on_time`
    // for the bounds).
    let started = Instant::now();
    let report = run_test_step(
        json!({"action": "loop"}),
        &Limits {
            deadline_ms: 100,
            ..limits()
        },
    );
    failure(&report, FailureKind::Deadline);
    assert_on_time(started.elapsed(), 100);

    let limits = Limits {
        memory_bytes: 32 << 20,
        ..limits()
    };
    let report = run_test_step(json!({"action": "grow", "mb": 4}), &limits);
    assert_eq!(completed(&report), &json!({"grown_mb": 4}));
    let report = run_test_step(json!({"action": "grow", "mb": 64}), &limits);
    failure(&report, FailureKind::Memory);

    let report = run_test_step(
        json!({"action": "big-output", "bytes": 100}),
        &Limits {
            max_output_bytes: 50,
            ..limits
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);
}

#[test]
fn workflow_steps_load_every_component_and_run_by_step_id() {
    let def = |step: &str, component: String, memory_bytes: u64| StepDef {
        limits: Limits {
            memory_bytes,
            ..limits()
        },
        ..StepDef::new(id(step), component)
    };
    let workflow = |steps: Vec<StepDef>| {
        let flow = steps
            .iter()
            .map(|s| Node {
                id: s.id.clone(),
                kind: NodeKind::Step { step: s.id.clone() },
            })
            .collect();
        WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: json!({}),
            steps: steps.into_iter().map(|s| (s.id.clone(), s)).collect(),
            flow,
        }
        .build()
        .unwrap()
    };
    let path = test_steps_path().display().to_string();

    let steps = WorkflowSteps::load(
        sandbox(),
        &workflow(vec![
            def("first", path.clone(), 64 << 20),
            def("second", path.clone(), 8 << 20),
        ]),
    )
    .unwrap();
    let mut second = task(json!({"action": "grow", "mb": 16}));
    second.step = id("second");
    failure(&steps.run(&second, &view()), FailureKind::Memory);
    let mut first = second.clone();
    first.step = id("first");
    assert_eq!(
        completed(&steps.run(&first, &view())),
        &json!({"grown_mb": 16})
    );
    let mut unknown = first.clone();
    unknown.step = id("unknown");
    failure(&steps.run(&unknown, &view()), FailureKind::Host);

    let err = WorkflowSteps::load(
        sandbox(),
        &workflow(vec![
            def("first", path.clone(), 64 << 20),
            def("missing", "/no/such.wasm".into(), 1 << 20),
        ]),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("step `missing`") && message.contains("/no/such.wasm"),
        "{message}"
    );

    let err =
        WorkflowSteps::load(sandbox(), &workflow(vec![def("huge", path, 8 << 30)])).unwrap_err();
    assert!(err.to_string().contains("step `huge`"), "{err}");
    assert!(
        matches!(err, SandboxError::Step { ref error, .. } if matches!(**error, SandboxError::MemoryLimit { .. }))
    );
}

#[test]
fn the_c_guest_echoes_and_prints_only_when_granted() {
    let path = crate::support::guest("c-echo");
    let input = json!({"order": 42, "tags": ["a", "b"]});
    let quiet = sandbox().load_file(&path, &[]).expect("c-echo loads");
    let report = run(&quiet, input.clone(), &limits());
    assert_eq!(completed(&report), &input);
    assert!(report.logs.is_empty(), "{:?}", report.logs);

    let loud = sandbox().load_file(&path, &[Grant::Stdio]).unwrap();
    let report = run(&loud, input.clone(), &limits());
    assert_eq!(completed(&report), &input);
    let len = input.to_string().len();
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Info,
            message: format!("c-echo: {len} bytes, attempt 1"),
        }]
    );
}
