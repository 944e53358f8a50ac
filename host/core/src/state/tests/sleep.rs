//! Sleep and sleep-until nodes: the wake time recorded once, its
//! expression evaluated once, sleeping parts of a parallel.

use std::sync::Arc;

use serde_json::json;

use crate::error::FailureKind;
use crate::event::Event;
use crate::id::Timestamp;
use crate::state::{RunState, RunStatus};
use crate::workflow::{Node, NodeKind};

use super::{drive, expr, id, parallel, path, start, step, workflow};

fn sleep(name: &str, kind: NodeKind) -> Node {
    Node { id: id(name), kind }
}

/// Advances at `now` and returns the events and the wake-up asked for.
fn advance_at(state: &mut RunState, now: u64) -> (Vec<Event>, Option<Timestamp>) {
    let advance = state.advance(Timestamp(now)).unwrap();
    let wake = advance.effects.iter().find_map(|e| match e {
        crate::Effect::WakeAt(due) => Some(*due),
        crate::Effect::Execute(_) => None,
    });
    (advance.events, wake)
}

#[test]
fn a_sleep_records_its_wake_time_once_and_completes_when_it_passes() {
    let wf = workflow(
        vec![sleep("nap", NodeKind::Sleep { duration_ms: 2_000 })],
        &["a"],
    );
    let mut state = start(&wf, json!({"x": 1}));
    let (events, wake) = advance_at(&mut state, 1_000);
    assert_eq!(
        events,
        vec![Event::SleepStarted {
            path: path("nap"),
            input: Arc::new(json!({"x": 1})),
            until: Timestamp(2_001_000),
            at: Timestamp(1_000),
        }]
    );
    assert_eq!(wake, Some(Timestamp(2_001_000)));
    // Before the wake time nothing happens, however often it is asked.
    assert_eq!(
        advance_at(&mut state, 2_000_999),
        (vec![], Some(Timestamp(2_001_000)))
    );
    // A replay reads the recorded wake time, whatever the clock says.
    let mut replayed = start(&wf, json!({"x": 1}));
    replayed.apply(&events[0]).unwrap();
    assert_eq!(
        advance_at(&mut replayed, 5_000),
        (vec![], Some(Timestamp(2_001_000)))
    );
    // Once it passed (even long after), the sleep completes once, with its input.
    let (events, wake) = advance_at(&mut state, 9_000_000);
    assert_eq!(wake, None);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0], Event::NodeCompleted { path: p, output, .. } if *p == path("nap") && **output == json!({"x": 1}))
    );
    assert!(matches!(&events[1], Event::RunCompleted { output, .. } if *output == json!({"x": 1})));
    assert_eq!(advance_at(&mut state, 9_000_001), (vec![], None));
}

#[test]
fn sleep_until_evaluates_once_and_a_past_time_wakes_at_once() {
    let until = |text: &str| sleep("wait", NodeKind::SleepUntil { until: expr(text) });
    // A CEL timestamp, RFC 3339 text, epoch milliseconds.
    for (text, micros) in [
        ("timestamp(input.at)", 1_767_225_600_000_000),
        ("input.at", 1_767_225_600_000_000),
        ("input.ms", 1_767_225_600_000_000),
    ] {
        let wf = workflow(vec![until(text), step("a")], &["a"]);
        let mut state = start(
            &wf,
            json!({"at": "2026-01-01T00:00:00Z", "ms": 1_767_225_600_000_u64}),
        );
        let (events, wake) = advance_at(&mut state, 1);
        assert!(
            matches!(&events[0], Event::SleepStarted { until, .. } if *until == Timestamp(micros)),
            "{text}: {events:?}"
        );
        assert_eq!(wake, Some(Timestamp(micros)), "{text}");
    }
    // A time already past: the sleep completes in the same advance.
    let wf = workflow(vec![until("input.at"), step("a")], &["a"]);
    let mut state = start(&wf, json!({"at": "2020-01-01T00:00:00Z"}));
    let (events, _) = advance_at(&mut state, 1_767_225_600_000_000);
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(names, ["sleep-started", "node-completed", "step-started"]);
    // Not a time: the run fails with kind `expression`, naming the node.
    for (input, says) in [
        (json!({"at": "tomorrow"}), "is not an RFC 3339 timestamp"),
        (json!({"at": true}), "yields a boolean, not a timestamp"),
        (json!({"at": -5}), "non-negative integer"),
    ] {
        let wf = workflow(vec![until("input.at")], &["a"]);
        let mut state = start(&wf, input);
        advance_at(&mut state, 1);
        let error = state.result().error.unwrap();
        assert_eq!(error.error.kind, FailureKind::Expression);
        assert_eq!(error.step, Some(path("wait")));
        assert!(
            error.error.message.contains(says),
            "{}",
            error.error.message
        );
        assert!(error.error.message.contains("sleep-until `wait`"));
    }
}

#[test]
fn sleeping_parts_of_a_parallel_wake_in_time_order_and_a_failure_does_not_wait_for_them() {
    let wf = workflow(
        vec![parallel(
            "fan",
            vec![
                sleep("long", NodeKind::Sleep { duration_ms: 5 }),
                sleep("short", NodeKind::Sleep { duration_ms: 1 }),
                step("a"),
            ],
        )],
        &["a"],
    );
    let mut state = start(&wf, json!(7));
    let events = drive(&mut state, &mut std::iter::repeat(0));
    assert_eq!(state.status(), RunStatus::Running, "{events:?}");
    let (events, wake) = advance_at(&mut state, 1_001);
    assert_eq!(events.len(), 1);
    assert_eq!(wake, Some(Timestamp(5_001)));
    let (events, _) = advance_at(&mut state, 5_001);
    assert_eq!(
        events.iter().map(Event::name).collect::<Vec<_>>(),
        ["node-completed", "node-completed", "run-completed"]
    );
    assert_eq!(state.result().output.unwrap()["long"], json!(7));

    let wf = workflow(
        vec![parallel(
            "fan",
            vec![
                sleep(
                    "long",
                    NodeKind::Sleep {
                        duration_ms: 60_000,
                    },
                ),
                step("fail"),
            ],
        )],
        &["fail"],
    );
    let mut state = start(&wf, json!(7));
    drive(&mut state, &mut std::iter::repeat(0));
    assert_eq!(state.status(), RunStatus::Failed);
    assert_eq!(state.result().error.unwrap().step, Some(path("fan/fail")));
}
