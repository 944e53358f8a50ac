//! Nested workflows: each runs under its node and sees only its own world;
//! suspensions resume by their full path; failures and bails inside.

use std::sync::Arc;

use serde_json::json;

use crate::event::Event;
use crate::id::{RunId, StepId, Timestamp};
use crate::runner::StepTask;
use crate::state::{RunState, RunStatus, StepStatus};
use crate::workflow::{Node, NodeKind, StepDef, WorkflowBuilder};

use super::{drive, id, path, report, start, step, workflow};

/// A node running the workflow `id` whose flow is `flow` over `steps`.
fn nested_node(node: &str, id_: &str, flow: Vec<Node>, steps: &[&str]) -> Node {
    let child = WorkflowBuilder {
        id: id(id_),
        description: None,
        input_schema: None,
        output_schema: None,
        state_schema: None,
        initial_state: json!({}),
        steps: steps
            .iter()
            .map(|s| (id(s), StepDef::new(id(s), format!("/c/{id_}-{s}.wasm"))))
            .collect(),
        flow,
    }
    .build()
    .unwrap();
    Node {
        id: id(node),
        kind: NodeKind::Workflow {
            workflow: Arc::new(child),
        },
    }
}

#[test]
fn a_nested_workflow_runs_under_its_node_and_sees_only_its_own_world() {
    let inner = nested_node("inner", "grandchild", vec![step("a")], &["a"]);
    let child = nested_node("cf", "child", vec![step("a"), inner], &["a"]);
    let wf = workflow(vec![step("a"), child, step("b")], &["a", "b"]);
    // Each level's step `a` is its own definition, under a qualified id.
    let ids: Vec<&str> = wf.steps().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "cf/a", "cf/inner/a"]);
    assert_eq!(
        wf.step(&StepId::parse_qualified("cf/inner/a").unwrap())
            .unwrap()
            .component,
        "/c/grandchild-a.wasm"
    );
    let mut state = start(&wf, json!("top"));
    let mut tasks = Vec::new();
    let now = Timestamp(1);
    loop {
        let advance = state.advance(now).unwrap();
        let mut ran = false;
        for effect in advance.effects {
            if let crate::Effect::Execute(task) = effect {
                tasks.push(task.clone());
                let event = report(&state, &task, now);
                state.apply(&event).unwrap();
                ran = true;
            }
        }
        if !ran {
            break;
        }
    }
    let result = state.result();
    assert_eq!(result.status, RunStatus::Success, "{result:?}");
    let paths: Vec<&str> = tasks.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(paths, ["a", "cf/a", "cf/inner/a", "b"]);
    let workflows: Vec<&str> = tasks.iter().map(|t| t.workflow.as_str()).collect();
    assert_eq!(workflows, ["wf", "child", "grandchild", "wf"]);
    // The child's first step gets the node's input and sees the node's input
    // as its workflow input; the parent's results are not visible inside.
    let view = state.view(&path("cf/inner/a"));
    assert_eq!(
        *view.workflow_input,
        json!({"at": "cf/a", "in": {"at": "a", "in": "top"}})
    );
    // Only the grandchild's own `a` (the top-level `a` and the child's are
    // not visible).
    assert_eq!(
        view.results.keys().map(StepId::as_str).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(view.results[&id("a")]["at"], json!("cf/inner/a"));
    let view = state.view(&path("cf/x"));
    assert_eq!(
        view.results.keys().map(StepId::as_str).collect::<Vec<_>>(),
        ["a", "inner"]
    );
    assert_eq!(view.results[&id("a")]["at"], json!("cf/a"));
    // The node's output is its flow's; the next node gets it.
    assert_eq!(result.output.unwrap()["in"]["at"], json!("cf/inner/a"));
    // State is the run's, shared with the nested workflows.
    assert_eq!(result.state["a"], json!("cf/inner/a"));
}

#[test]
fn a_suspension_two_levels_deep_resumes_by_its_full_path() {
    let inner = nested_node("approval", "leaf", vec![step("suspend")], &["suspend"]);
    let child = nested_node("cf", "child", vec![inner, step("a")], &["a"]);
    let wf = workflow(vec![child, step("b")], &["b"]);
    let mut state = start(&wf, json!(1));
    drive(&mut state, &mut std::iter::repeat(0));
    assert_eq!(state.status(), RunStatus::Suspended);
    let suspended: Vec<String> = state
        .result()
        .suspended
        .iter()
        .map(|s| s.path.to_string())
        .collect();
    assert_eq!(suspended, ["cf/approval/suspend"]);
    let target = crate::ResumeTarget::Path(path("cf/approval/suspend"));
    for event in state
        .resume(&target, json!({"ok": true}), Timestamp(2))
        .unwrap()
    {
        state.apply(&event).unwrap();
    }
    drive(&mut state, &mut std::iter::repeat(0));
    let result = state.result();
    assert_eq!(result.status, RunStatus::Success);
    let done: Vec<&str> = result.steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(done, ["cf/approval/suspend", "cf/a", "b"]);
}

#[test]
fn a_failure_inside_fails_the_node_with_it_as_first_cause_and_a_bail_ends_only_the_child() {
    let inner = nested_node("inner", "leaf", vec![step("fail")], &["fail"]);
    let child = nested_node("cf", "child", vec![inner], &[]);
    let wf = workflow(vec![child, step("b")], &["b"]);
    let mut state = start(&wf, json!(1));
    drive(&mut state, &mut std::iter::repeat(0));
    let error = state.result().error.unwrap();
    assert_eq!(error.step, Some(path("cf")));
    assert_eq!(
        error.error.message,
        "nested workflow `child` failed at `cf/inner`: nested workflow `leaf` failed at `cf/inner/fail`: cf/inner/fail"
    );
    let causes: Vec<&str> = error
        .error
        .causes
        .iter()
        .map(|c| c.message.as_str())
        .collect();
    assert_eq!(
        causes,
        [
            "nested workflow `leaf` failed at `cf/inner/fail`: cf/inner/fail",
            "cf/inner/fail"
        ]
    );
    assert_eq!(
        state.step(&path("cf/inner/fail")).unwrap().status,
        StepStatus::Failed
    );

    // A bail ends the workflow it happens in: the parent goes on with its output.
    let child = nested_node("cf", "child", vec![step("bail"), step("a")], &["bail", "a"]);
    let wf = workflow(vec![child, step("b")], &["b"]);
    let mut state = start(&wf, json!(1));
    let mut events = Vec::new();
    loop {
        let advance = state.advance(Timestamp(1)).unwrap();
        events.extend(advance.events);
        let tasks: Vec<StepTask> = advance
            .effects
            .into_iter()
            .filter_map(|e| match e {
                crate::Effect::Execute(t) => Some(t),
                crate::Effect::WakeAt(_) => None,
            })
            .collect();
        if tasks.is_empty() {
            break;
        }
        for task in tasks {
            let event = if task.step.declared() == "bail" {
                Event::StepBailed {
                    path: task.path.clone(),
                    output: json!("early"),
                    state: None,
                    measured: None,
                    at: Timestamp(1),
                }
            } else {
                report(&state, &task, Timestamp(1))
            };
            state.apply(&event).unwrap();
            events.push(event);
        }
    }
    let result = state.result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output.unwrap()["in"], json!("early"));
    let ran: Vec<&str> = result.steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(ran, ["cf/bail", "b"]);
    // Replay rebuilds it.
    let replayed = RunState::replay(Arc::clone(&wf), &events_with_start(&events)).unwrap();
    assert_eq!(replayed.result(), state.result());
}

fn events_with_start(events: &[Event]) -> Vec<Event> {
    let mut all = vec![Event::RunStarted {
        run: RunId::new("r").unwrap(),
        workflow: id("wf"),
        input: json!(1),
        state: json!({"base": 0}),
        at: Timestamp(0),
        origin: None,
    }];
    all.extend(events.iter().cloned());
    all
}
