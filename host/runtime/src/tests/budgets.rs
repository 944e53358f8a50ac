//! Per-run budgets on both runtimes: a run that would record past one of
//! its budgets fails with `run-limit`, what it recorded before is stored,
//! and nothing past the budget is (but the two events that end the run).

use serde_json::{Value, json};
use weft_core::{
    CustomEvent, Event, EventStore, FailureKind, Node, NodeKind, RetryPolicy, RunLimits, RunState,
    RunStatus, StepError, StepOutcome, StepReport, StepStatus, StepTask, StepView, Usage,
};

use super::{Fixture, Kind, id};

/// A step emitting `count` custom events of `bytes` bytes of data each,
/// then completing with its path.
fn emitting(count: usize, bytes: usize) -> impl Fn(&StepTask, &StepView) -> StepReport {
    move |task, _| StepReport {
        outcome: Ok(StepOutcome::Completed(json!(task.path.as_str()))),
        state: None,
        events: (0..count)
            .map(|_| CustomEvent {
                kind: "blob".into(),
                data: json!("x".repeat(bytes)),
            })
            .collect(),
        logs: Vec::new(),
        measured: None,
    }
}

/// A foreach of `emit` over `items`, `concurrency` at a time, whose run may
/// record `max_bytes`.
fn foreach(kind: Kind, concurrency: u32, max_bytes: u64) -> (super::Driver, Value) {
    let mut fixture = Fixture::new().step("emit", emitting(10, 1_000));
    fixture.flow = Some(vec![Node {
        id: id("items"),
        kind: NodeKind::Foreach {
            body: vec![Node {
                id: id("emit"),
                kind: NodeKind::Step { step: id("emit") },
            }],
            concurrency,
        },
    }]);
    fixture.run_limits = Some(RunLimits {
        max_bytes,
        ..RunLimits::default()
    });
    let (rt, _) = fixture.build(kind);
    (rt, json!([0, 1, 2, 3, 4, 5]))
}

/// The custom events stored for `path`.
fn customs(events: &[Event], path: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Custom { path: p, .. } if p.as_str() == path))
        .count()
}

/// Checks what every budget test expects of the stored run: it replays
/// to the result the runtime reported, and only the two events that end it
/// go past `max_bytes`.
fn stored_within(rt: &super::Driver, run: &super::Handle, max_bytes: u64) -> Vec<Event> {
    let stored = rt.store().load(&run.id).unwrap().1;
    let replayed = RunState::replay(rt.workflow().clone(), &stored).unwrap();
    assert_eq!(replayed.result(), run.result());
    assert_eq!(replayed.usage(), Usage::of_all(&stored));
    let ending = Usage::of_all(stored.iter().rev().take(2));
    assert!(
        replayed.usage().bytes - ending.bytes <= max_bytes,
        "{} bytes stored before the end, for a budget of {max_bytes}",
        replayed.usage().bytes - ending.bytes
    );
    stored
}

fn a_run_past_its_bytes_budget_fails_with_run_limit_and_keeps_what_it_recorded(kind: Kind) {
    // Each item's report is about 10 KB: two fit in 25,000 bytes.
    let (rt, items) = foreach(kind, 1, 25_000);
    let run = rt.start(items);
    let result = run.result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.error.kind, FailureKind::RunLimit);
    assert_eq!(error.step.unwrap().as_str(), "items[2]/emit");
    assert!(
        error
            .error
            .message
            .contains("past its `run-limits.max-bytes` of 25000"),
        "{}",
        error.error.message
    );
    let stored = stored_within(&rt, &run, 25_000);
    assert_eq!(customs(&stored, "items[0]/emit"), 10);
    assert_eq!(customs(&stored, "items[1]/emit"), 10);
    assert_eq!(customs(&stored, "items[2]/emit"), 0);
    let last: Vec<&str> = stored.iter().rev().take(2).map(Event::name).collect();
    assert_eq!(last, ["run-failed", "step-failed"]);
    // No item after the one that crossed started.
    assert!(
        !stored
            .iter()
            .any(|e| e.path().is_some_and(|p| p.as_str() == "items[3]/emit"))
    );
}

fn items_in_flight_when_the_budget_is_spent_are_canceled_and_store_nothing(kind: Kind) {
    let (rt, items) = foreach(kind, 3, 25_000);
    let run = rt.start(items);
    let result = run.result();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.unwrap().error.kind, FailureKind::RunLimit);
    let stored = stored_within(&rt, &run, 25_000);
    // Which item crossed may depend on the order items finished in; every
    // other item ended, and only completed ones stored their events.
    for record in &result.steps {
        assert!(
            matches!(
                record.status,
                StepStatus::Success | StepStatus::Failed | StepStatus::Canceled
            ),
            "{record:?}"
        );
        let stored_customs = customs(&stored, record.path.as_str());
        let expected = if record.status == StepStatus::Success {
            10
        } else {
            0
        };
        assert_eq!(stored_customs, expected, "{}", record.path);
    }
}

fn a_step_retried_past_max_attempts_fails_the_run_without_starting_again(kind: Kind) {
    let mut fixture = Fixture::new()
        .step("flaky", |_, _| {
            let mut error = StepError::host(FailureKind::Step, "not yet");
            error.retryable = true;
            StepReport::failed(error)
        })
        .with(|def| {
            def.retry = RetryPolicy {
                max_retries: 20,
                delay_ms: 0,
                backoff: 1,
            };
        });
    fixture.run_limits = Some(RunLimits {
        max_attempts: 3,
        ..RunLimits::default()
    });
    let (rt, runner) = fixture.build(kind);
    let run = rt.start(json!(null));
    let result = run.result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.error.kind, FailureKind::RunLimit);
    assert!(
        error
            .error
            .message
            .contains("`run-limits.max-attempts` of 3"),
        "{}",
        error.error.message
    );
    assert_eq!(runner.calls.lock().unwrap().len(), 3);
    stored_within(&rt, &run, RunLimits::default().max_bytes);
}

on_both_runtimes!(
    a_run_past_its_bytes_budget_fails_with_run_limit_and_keeps_what_it_recorded,
    items_in_flight_when_the_budget_is_spent_are_canceled_and_store_nothing,
    a_step_retried_past_max_attempts_fails_the_run_without_starting_again,
);
