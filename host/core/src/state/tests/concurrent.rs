//! Concurrent parts — parallel nodes and foreach items: how their outputs
//! and state writes merge, how a failure or a suspension among them settles,
//! resuming them one by one or all at once.

use serde_json::{Value, json};

use crate::id::Timestamp;
use crate::state::{RunStatus, StepStatus};
use crate::workflow::LoopKind;

use super::{drive, foreach, looping, parallel, path, start, step, workflow};

#[test]
fn parallel_output_is_keyed_by_node_and_foreach_keeps_item_order() {
    let wf = workflow(
        vec![parallel(
            "fan",
            vec![step("b"), foreach("items", vec![step("c")], 2)],
        )],
        &["b", "c"],
    );
    let mut state = start(&wf, json!([1, 2, 3]));
    drive(&mut state, &mut [3, 2, 1, 0].into_iter().cycle());
    let result = state.result();
    assert_eq!(result.status, RunStatus::Success);
    let output = result.output.unwrap();
    assert_eq!(output["b"]["at"], "fan/b");
    let items: Vec<&Value> = output["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["in"])
        .collect();
    assert_eq!(items, [&json!(1), &json!(2), &json!(3)]);
    // Concurrent branches merge their writes in declaration order.
    assert_eq!(
        result.state,
        json!({"base": 0, "b": "fan/b", "c": "fan/items[2]/c"})
    );
}

#[test]
fn a_failing_node_waits_for_its_siblings_and_fails_with_the_first_in_order() {
    let wf = workflow(
        vec![parallel("fan", vec![step("a"), step("fail"), step("b")])],
        &["a", "fail", "b"],
    );
    for picks in [[0usize, 0, 0], [2, 1, 0], [1, 0, 0]] {
        let mut state = start(&wf, json!(null));
        drive(&mut state, &mut picks.into_iter());
        let result = state.result();
        assert_eq!(result.status, RunStatus::Failed);
        assert_eq!(result.error.unwrap().step.unwrap().as_str(), "fan/fail");
        // Every sibling in flight settled before the run failed.
        assert!(result.steps.iter().all(|s| s.status != StepStatus::Running));
    }
}

#[test]
fn a_suspended_parallel_node_keeps_its_siblings_running_and_resumes_alone() {
    let wf = workflow(
        vec![parallel(
            "fan",
            vec![
                step("suspend"),
                step("a"),
                foreach("items", vec![step("suspend")], 2),
            ],
        )],
        &["suspend", "a"],
    );
    let mut state = start(&wf, json!([1, 2]));
    drive(&mut state, &mut std::iter::repeat(0));
    let result = state.result();
    assert_eq!(result.status, RunStatus::Suspended);
    let suspended: Vec<&str> = result.suspended.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        suspended,
        [
            "fan/suspend",
            "fan/items[0]/suspend",
            "fan/items[1]/suspend"
        ]
    );
    assert_eq!(
        state.step(&path("fan/a")).unwrap().status,
        StepStatus::Success
    );

    for (resume, left) in [("fan/items[1]/suspend", 2), ("fan/suspend", 1)] {
        let target = crate::ResumeTarget::Path(path(resume));
        let event = state
            .resume(&target, json!({"ok": resume}), Timestamp(2))
            .unwrap();
        for e in &event {
            state.apply(e).unwrap();
        }
        drive(&mut state, &mut std::iter::repeat(0));
        let result = state.result();
        assert_eq!(result.status, RunStatus::Suspended);
        assert_eq!(result.suspended.len(), left);
        // The resumed address finished; the others kept their payloads.
        assert_eq!(
            state.step(&path(resume)).unwrap().status,
            StepStatus::Success
        );
        for s in &result.suspended {
            assert_eq!(s.payload, json!({"at": s.path}));
        }
    }
    let target = crate::ResumeTarget::Only;
    let event = state
        .resume(&target, json!({"ok": "last"}), Timestamp(3))
        .unwrap();
    for e in &event {
        state.apply(e).unwrap();
    }
    drive(&mut state, &mut std::iter::repeat(0));
    let result = state.result();
    assert_eq!(result.status, RunStatus::Success);
    let output = result.output.unwrap();
    assert_eq!(output["suspend"]["at"], "fan/suspend");
    assert_eq!(output["items"][1]["at"], "fan/items[1]/suspend");
}

#[test]
fn resume_all_resumes_every_suspended_address_with_the_same_data() {
    let wf = workflow(
        vec![parallel(
            "fan",
            vec![step("suspend"), foreach("items", vec![step("suspend")], 2)],
        )],
        &["suspend"],
    );
    let mut state = start(&wf, json!([1, 2]));
    drive(&mut state, &mut std::iter::repeat(0));
    // Without a target, several suspended addresses are an error listing them.
    let error = state
        .resume(&crate::ResumeTarget::Only, json!({}), Timestamp(2))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("fan/suspend, fan/items[0]/suspend, fan/items[1]/suspend"),
        "{error}"
    );
    let events = state
        .resume(&crate::ResumeTarget::All, json!({"go": true}), Timestamp(2))
        .unwrap();
    assert_eq!(events.len(), 3);
    for event in &events {
        state.apply(event).unwrap();
    }
    drive(&mut state, &mut std::iter::repeat(0));
    let result = state.result();
    assert_eq!(result.status, RunStatus::Success);
    assert!(
        result
            .steps
            .iter()
            .all(|s| s.resume_payload == Some(json!({"go": true})))
    );
}

#[test]
fn a_loop_inside_a_parallel_sees_its_own_earlier_iterations_writes() {
    let wf = workflow(
        vec![parallel(
            "fan",
            vec![
                looping(
                    "again",
                    LoopKind::DoWhile,
                    vec![step("count")],
                    "output.n < 3",
                    None,
                ),
                step("b"),
            ],
        )],
        &["count", "b"],
    );
    for picks in [[0usize; 8], [1; 8]] {
        let mut state = start(&wf, json!({}));
        drive(&mut state, &mut picks.into_iter());
        let result = state.result();
        assert_eq!(result.status, RunStatus::Success, "{:?}", result.error);
        assert_eq!(result.output.unwrap()["again"], json!({"n": 3}));
        assert_eq!(result.state, json!({"base": 0, "count": 3, "b": "fan/b"}));
    }
}
