//! Foreach with concurrency on both runtimes: at most `concurrency` items in
//! flight, outputs in item order whatever order items finish in, and
//! `step-result` resolved within the item's own scope.

use serde_json::{Value, json};
use weft_core::{Event, Node, NodeKind, RunStatus, StepId, StepOutcome};

use super::{Fixture, Kind, id, ok};

fn node(name: &str, kind: NodeKind) -> Node {
    Node { id: id(name), kind }
}

fn step(name: &str) -> Node {
    node(name, NodeKind::Step { step: id(name) })
}

/// The largest number of executions started and not yet ended at once.
fn most_in_flight(events: &[Event]) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for event in events {
        match event {
            Event::StepStarted { .. } => now += 1,
            Event::StepCompleted { .. }
            | Event::StepFailed { .. }
            | Event::StepSuspended { .. }
            | Event::StepBailed { .. } => now -= 1,
            _ => {}
        }
        most = most.max(now);
    }
    most
}

fn items_run_at_most_concurrency_at_once_and_output_in_item_order(kind: Kind) {
    let mut fixture = Fixture::new().step("each", |task, _| {
        ok(StepOutcome::Completed(json!(
            task.input.as_i64().unwrap_or(0) * 10
        )))
    });
    fixture.flow = Some(vec![node(
        "items",
        NodeKind::Foreach {
            body: vec![step("each")],
            concurrency: 2,
        },
    )]);
    let (rt, runner) = fixture.build(kind);
    let run = rt.start(json!([0, 1, 2, 3, 4]));
    let result = run.result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!([0, 10, 20, 30, 40])));
    assert_eq!(most_in_flight(run.events()), 2);
    assert_eq!(runner.calls.lock().unwrap().len(), 5);
    let iterations: Vec<_> = result
        .steps
        .iter()
        .map(|s| s.path.as_str().to_owned())
        .collect();
    assert_eq!(
        iterations,
        [
            "items[0]/each",
            "items[1]/each",
            "items[2]/each",
            "items[3]/each",
            "items[4]/each"
        ]
    );
}

fn step_result_inside_an_item_reads_the_same_items_results(kind: Kind) {
    let mut fixture = Fixture::new()
        .step("a", |task, _| {
            ok(StepOutcome::Completed(Value::clone(&task.input)))
        })
        .step("b", |_, view| {
            let a = view.results.get(&StepId::new("a").unwrap()).cloned();
            ok(StepOutcome::Completed(
                a.map_or(Value::Null, |a| Value::clone(&a)),
            ))
        });
    fixture.flow = Some(vec![node(
        "items",
        NodeKind::Foreach {
            body: vec![step("a"), step("b")],
            concurrency: 3,
        },
    )]);
    let (rt, _) = fixture.build(kind);
    // Items' `a` all run before any `b` (three at once): a "last result
    // wins" lookup would give every item the third item's `a`.
    let result = rt.start(json!(["x", "y", "z"])).result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!(["x", "y", "z"])));
}

on_both_runtimes!(
    items_run_at_most_concurrency_at_once_and_output_in_item_order,
    step_result_inside_an_item_reads_the_same_items_results,
);
