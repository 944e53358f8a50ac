//! Per-run budgets: what a run's events cost, counted as they apply (and
//! recounted the same by a replay), and the driver failing the run with
//! `run-limit` rather than recording past a budget.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::budget::{RunLimits, Usage};
use crate::error::FailureKind;
use crate::event::{CustomEvent, Event};
use crate::id::Timestamp;
use crate::runner::StepTask;
use crate::state::{RunState, RunStatus, StepStatus};
use crate::workflow::{RetryPolicy, StepDef, Workflow, WorkflowBuilder};
use crate::{Effect, StepError};

use super::{foreach, path, start, step, workflow};

/// A foreach of `emit` over its input, with `limits` and `concurrency`.
fn emitting(limits: RunLimits, concurrency: u32) -> Arc<Workflow> {
    let wf = workflow(
        vec![foreach("items", vec![step("emit")], concurrency)],
        &["emit"],
    );
    Arc::new(Arc::unwrap_or_clone(wf).with_run_limits(limits))
}

/// What an attempt of `emit` reports: `n` custom events of `bytes` bytes
/// of data each (its input is `{"n": .., "bytes": ..}`), then its output.
fn emitted(task: &StepTask, now: Timestamp) -> Vec<Event> {
    let n = task.input["n"].as_u64().unwrap_or(0);
    let bytes = task.input["bytes"].as_u64().unwrap_or(0) as usize;
    let mut events: Vec<Event> = (0..n)
        .map(|_| Event::Custom {
            path: task.path.clone(),
            event: CustomEvent {
                kind: "blob".into(),
                data: json!("x".repeat(bytes)),
            },
            at: now,
        })
        .collect();
    events.push(Event::StepCompleted {
        path: task.path.clone(),
        output: Arc::new(json!(task.path)),
        state: None,
        measured: None,
        at: now,
    });
    events
}

/// Drives the run to rest as a runtime does: attempts run in the order
/// they start, each report recorded through [`RunState::settled`] (an
/// attempt the run no longer expects is not run). Returns every event
/// recorded.
fn drive(state: &mut RunState, report: impl Fn(&StepTask, Timestamp) -> Vec<Event>) -> Vec<Event> {
    let now = Timestamp(1);
    let mut events = Vec::new();
    loop {
        let advance = state.advance(now).unwrap();
        events.extend(advance.events);
        let mut ran = false;
        for effect in advance.effects {
            let Effect::Execute(task) = effect else {
                continue;
            };
            if !state.expects_report(&task.path, task.attempt) {
                continue;
            }
            ran = true;
            events.extend(state.settled(report(&task, now)).unwrap());
        }
        if !ran {
            return events;
        }
    }
}

fn items(n: usize, emits: u64, bytes: u64) -> Value {
    json!(vec![json!({"n": emits, "bytes": bytes}); n])
}

fn replayed(workflow: &Arc<Workflow>, events: &[Event]) -> RunState {
    RunState::replay(Arc::clone(workflow), events).unwrap()
}

#[test]
fn usage_counts_every_event_its_stored_bytes_and_attempts_and_replay_recounts_them() {
    let wf = emitting(RunLimits::default(), 2);
    let mut state = start(&wf, items(3, 2, 10));
    let mut events = vec![Event::RunStarted {
        run: crate::RunId::new("r").unwrap(),
        workflow: crate::StepId::new("wf").unwrap(),
        input: items(3, 2, 10),
        state: json!({"base": 0}),
        at: Timestamp(0),
        origin: None,
    }];
    events.extend(drive(&mut state, emitted));
    assert_eq!(state.status(), RunStatus::Success);
    let usage = state.usage();
    assert_eq!(usage.events, events.len() as u64);
    assert_eq!(usage.attempts, 3);
    let stored: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert_eq!(
        usage.bytes,
        stored.iter().map(|text| text.len() as u64).sum::<u64>()
    );
    // A replay of the stored log (its JSON text read back) counts the same.
    let read_back: Vec<Event> = stored
        .iter()
        .map(|text| serde_json::from_str(text).unwrap())
        .collect();
    assert_eq!(replayed(&wf, &read_back).usage(), usage);
}

#[test]
fn a_report_past_the_bytes_budget_is_not_recorded_and_fails_the_run() {
    // Each item's report is about 10 KB: two fit in 25,000 bytes, not three.
    let limits = RunLimits {
        max_bytes: 25_000,
        ..RunLimits::default()
    };
    let wf = emitting(limits, 1);
    let mut state = start(&wf, items(5, 10, 1_000));
    let events = drive(&mut state, emitted);

    let result = state.result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.step, Some(path("items[2]/emit")));
    assert_eq!(error.error.kind, FailureKind::RunLimit);
    assert!(!error.error.retryable);
    assert!(
        error
            .error
            .message
            .contains("`run-limits.max-bytes` of 25000")
            && error.error.message.contains("attempt 1 of `items[2]/emit`"),
        "{}",
        error.error.message
    );
    // Items 0 and 1 are recorded whole; item 2's custom events are not.
    let customs = |p: &str| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Custom { path, .. } if path.as_str() == p))
            .count()
    };
    assert_eq!(
        (customs("items[0]/emit"), customs("items[1]/emit")),
        (10, 10)
    );
    assert_eq!(customs("items[2]/emit"), 0);
    let names: Vec<&str> = events.iter().rev().take(3).map(Event::name).collect();
    assert_eq!(names, ["run-failed", "step-failed", "step-started"]);
    let record = state.step(&path("items[2]/emit")).unwrap();
    assert_eq!(record.status, StepStatus::Failed);
    assert_eq!(
        record.error.as_ref().map(|e| e.kind),
        Some(FailureKind::RunLimit)
    );
    assert!(state.step(&path("items[3]/emit")).is_none());
    // Only the two events that end the run go past the budget.
    let ending = Usage::of_all(events.iter().rev().take(2));
    assert!(state.usage().bytes <= limits.max_bytes + ending.bytes);
    assert!(state.usage().bytes - ending.bytes <= limits.max_bytes);
}

#[test]
fn an_attempt_past_max_attempts_does_not_start_and_the_run_fails_naming_the_budget() {
    let limits = RunLimits {
        max_attempts: 3,
        ..RunLimits::default()
    };
    // Retried up to 10 times: the budget stops it after 3 attempts.
    let mut fail = StepDef::new(crate::StepId::new("fail").unwrap(), "/c/s.wasm");
    fail.retry = RetryPolicy {
        max_retries: 10,
        delay_ms: 0,
        backoff: 1,
    };
    let wf = Arc::new(
        WorkflowBuilder {
            id: crate::StepId::new("wf").unwrap(),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: json!({"base": 0}),
            steps: [(fail.id.clone(), fail)].into_iter().collect(),
            flow: vec![step("fail")],
        }
        .build()
        .unwrap()
        .with_run_limits(limits),
    );
    let mut state = start(&wf, json!(null));
    let events = drive(&mut state, |task, now| {
        let mut error = StepError::host(FailureKind::Step, "again");
        error.retryable = true;
        vec![Event::StepFailed {
            path: task.path.clone(),
            error,
            measured: None,
            at: now,
        }]
    });
    assert_eq!(state.usage().attempts, 3);
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::StepStarted { .. }))
        .count();
    assert_eq!(started, 3);
    let error = state.result().error.unwrap();
    assert_eq!(error.error.kind, FailureKind::RunLimit);
    assert_eq!(error.step, Some(path("fail")));
    assert!(
        error
            .error
            .message
            .contains("starting attempt 4 of `fail` would take the run to 4 attempts"),
        "{}",
        error.error.message
    );
    assert_eq!(
        error.error.details.as_ref().unwrap()["budget"],
        json!("max-attempts")
    );
}

#[test]
fn max_events_counts_the_drivers_own_decisions() {
    let limits = RunLimits {
        max_events: 6,
        ..RunLimits::default()
    };
    let wf = emitting(limits, 1);
    let mut state = start(&wf, items(10, 0, 0));
    let events = drive(&mut state, emitted);
    // run-started, node-started, then started/completed pairs: the 7th
    // event would pass the budget, so the run fails instead.
    assert_eq!(state.usage().events, 7);
    assert_eq!(events.len(), 6);
    assert_eq!(events.last().map(Event::name), Some("run-failed"));
    let error = state.result().error.unwrap();
    assert_eq!(error.error.kind, FailureKind::RunLimit);
    assert!(
        error.error.message.contains("`run-limits.max-events` of 6"),
        "{}",
        error.error.message
    );
}

#[test]
fn attempts_started_with_the_one_past_the_budget_are_canceled_not_executed() {
    // A foreach of 4 items, 3 at a time, and room for 2 attempts: the
    // advance that starts them fails the run at the third and asks for no
    // execution; the two it started end canceled.
    let limits = RunLimits {
        max_attempts: 2,
        ..RunLimits::default()
    };
    let wf = emitting(limits, 3);
    let mut state = start(&wf, items(4, 0, 0));
    let advance = state.advance(Timestamp(1)).unwrap();
    assert!(advance.effects.is_empty(), "{:?}", advance.effects);
    let names: Vec<&str> = advance.events.iter().map(Event::name).collect();
    assert_eq!(
        names,
        ["node-started", "step-started", "step-started", "run-failed"]
    );
    for item in ["items[0]/emit", "items[1]/emit"] {
        assert_eq!(
            state.step(&path(item)).unwrap().status,
            StepStatus::Canceled
        );
        assert!(!state.expects_report(&path(item), 1));
    }
    assert_eq!(state.status(), RunStatus::Failed);
    // Nothing more is decided for the failed run.
    assert!(state.advance(Timestamp(2)).unwrap().events.is_empty());
}

#[test]
fn replaying_a_run_that_failed_at_its_budget_rebuilds_it() {
    let limits = RunLimits {
        max_bytes: 25_000,
        ..RunLimits::default()
    };
    let wf = emitting(limits, 1);
    let input = items(5, 10, 1_000);
    let mut state = start(&wf, input.clone());
    let mut events = vec![Event::RunStarted {
        run: crate::RunId::new("r").unwrap(),
        workflow: crate::StepId::new("wf").unwrap(),
        input,
        state: json!({"base": 0}),
        at: Timestamp(0),
        origin: None,
    }];
    events.extend(drive(&mut state, emitted));
    let again = replayed(&wf, &events);
    assert_eq!(again.usage(), state.usage());
    assert_eq!(again.result(), state.result());
}
