//! Foreach with concurrency on both runtimes: at most `concurrency` items in
//! flight, outputs in item order whatever order items finish in, and
//! `step-result` resolved within the item's own scope; and the evented
//! runtime's seeded reordering of completions.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use weft_core::{Event, Node, NodeKind, RunStatus, StepId, StepOutcome, StepReport, Timestamp};

use super::{Fixture, Kind, guest_error, id, ok};

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

/// The order in which executions completed, by address.
fn completion_order(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepCompleted { path, .. } => Some(path.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

/// A foreach over 8 items, 4 at once; item `i` fails (retryably) until
/// attempt `i % 3 + 1`, so items also differ in how many attempts they take.
fn eight_items_four_at_once(kind: Kind, reorder_seed: Option<u64>) -> super::Handle {
    let mut fixture = Fixture::new()
        .step("each", |task, _| {
            let n = task.input.as_u64().unwrap_or(0);
            if u64::from(task.attempt) <= n % 3 {
                StepReport::failed(guest_error("transient", true))
            } else {
                ok(StepOutcome::Completed(json!(n * 10)))
            }
        })
        .with(|d| d.retry.max_retries = 3);
    fixture.flow = Some(vec![node(
        "items",
        NodeKind::Foreach {
            body: vec![step("each")],
            concurrency: 4,
        },
    )]);
    fixture.evented.reorder_seed = reorder_seed;
    let (rt, _) = fixture.build(kind);
    rt.start(json!([0, 1, 2, 3, 4, 5, 6, 7]))
}

#[test]
fn seeded_reordering_changes_the_completion_order_but_not_the_result() {
    let reference = eight_items_four_at_once(Kind::Default, None).result();
    assert_eq!(reference.status, RunStatus::Success);
    assert_eq!(
        reference.output,
        Some(json!([0, 10, 20, 30, 40, 50, 60, 70]))
    );
    // Per address, times aside (the manual clock ticks at every reading).
    let by_path = |result: &weft_core::RunResult| {
        result
            .steps
            .iter()
            .map(|s| {
                let mut record = s.clone();
                record.started_at = Timestamp(0);
                record.ended_at = None;
                record.retry_at = None;
                (s.path.as_str().to_owned(), record)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let mut orders = BTreeMap::new();
    for seed in 0..8 {
        let run = eight_items_four_at_once(Kind::Evented, Some(seed));
        let result = run.result();
        assert_eq!(result.status, reference.status, "seed {seed}");
        assert_eq!(result.output, reference.output, "seed {seed}");
        assert_eq!(by_path(&result), by_path(&reference), "seed {seed}");
        assert_eq!(most_in_flight(run.events()), 4, "seed {seed}");
        let order = completion_order(run.events());
        assert_eq!(order.len(), 8, "seed {seed}");
        // The same seed, the same order.
        let again = eight_items_four_at_once(Kind::Evented, Some(seed));
        assert_eq!(completion_order(again.events()), order, "seed {seed} again");
        orders.entry(order).or_insert_with(Vec::new).push(seed);
    }
    assert!(
        orders.len() >= 4,
        "8 seeds gave only {} completion orders: {orders:?}",
        orders.len()
    );
}

on_both_runtimes!(
    items_run_at_most_concurrency_at_once_and_output_in_item_order,
    step_result_inside_an_item_reads_the_same_items_results,
);
