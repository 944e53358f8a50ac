//! Properties over every completion order: the outcome does not depend on
//! it, and replaying the events rebuilds the run.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::event::Event;
use crate::id::{RunId, Timestamp};
use crate::state::{RunResult, RunState, RunStatus};
use crate::workflow::Workflow;

use super::{drive, foreach, id, parallel, start, step, workflow};

/// Everything that must not depend on the completion order: status,
/// output, error, state, and each address's record (in path order).
fn outcome(result: &RunResult) -> Value {
    let mut steps: Vec<Value> = result
        .steps
        .iter()
        .map(|s| json!([s.path, s.status, s.output, s.attempt]))
        .collect();
    steps.sort_by_key(|s| s[0].as_str().unwrap_or_default().to_owned());
    json!({
        "status": result.status,
        "output": result.output,
        "error": result.error,
        "state": result.state,
        "suspended": result.suspended,
        "steps": steps,
    })
}

fn nested() -> Arc<Workflow> {
    workflow(
        vec![
            parallel(
                "fan",
                vec![
                    step("b"),
                    foreach("items", vec![step("c"), step("d")], 3),
                    step("e"),
                ],
            ),
            step("f"),
        ],
        &["b", "c", "d", "e", "f"],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever order concurrent attempts finish in, the run ends the same.
    #[test]
    fn completion_order_does_not_change_the_outcome(picks in proptest::collection::vec(0usize..8, 0..40)) {
        let wf = nested();
        let mut reference = start(&wf, json!([10, 20, 30, 40]));
        drive(&mut reference, &mut std::iter::repeat(0));
        let mut state = start(&wf, json!([10, 20, 30, 40]));
        drive(&mut state, &mut picks.into_iter());
        prop_assert_eq!(outcome(&state.result()), outcome(&reference.result()));
        prop_assert_eq!(state.result().status, RunStatus::Success);
    }

    /// Replaying a run's events rebuilds the same state (no decision is
    /// re-derived on replay).
    #[test]
    fn replay_rebuilds_the_run(picks in proptest::collection::vec(0usize..8, 0..40)) {
        let wf = nested();
        let mut state = start(&wf, json!([1, 2, 3]));
        let mut events = vec![Event::RunStarted {
            run: RunId::new("r").unwrap(),
            workflow: id("wf"),
            input: json!([1, 2, 3]),
            state: json!({"base": 0}),
            at: Timestamp(0),
            origin: None,
        }];
        events.extend(drive(&mut state, &mut picks.into_iter()));
        let replayed = RunState::replay(Arc::clone(&wf), &events).unwrap();
        prop_assert_eq!(outcome(&replayed.result()), outcome(&state.result()));
    }
}
