//! The interpreter driven without a runtime: attempts "finish" in an order
//! chosen by the test, so that every completion order of concurrent parts
//! can be checked to give one result.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::error::FailureKind;
use crate::event::Event;
use crate::expr::Expr;
use crate::id::{RunId, StepId, StepPath, Timestamp};
use crate::runner::StepTask;
use crate::state::{RunResult, RunState, RunStatus, StepStatus};
use crate::workflow::{Arm, LoopKind, Node, NodeKind, StepDef, Workflow, WorkflowBuilder};

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn step(name: &str) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Step { step: id(name) },
    }
}

fn parallel(name: &str, nodes: Vec<Node>) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Parallel { nodes },
    }
}

fn foreach(name: &str, body: Vec<Node>, concurrency: u32) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Foreach { body, concurrency },
    }
}

fn expr(text: &str) -> Expr {
    Expr::compile(text).unwrap()
}

fn arm(name: &str, when: Option<&str>, flow: Vec<Node>) -> Arm {
    Arm {
        id: id(name),
        when: when.map(expr),
        flow,
    }
}

fn branch(name: &str, arms: Vec<Arm>) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Branch { arms },
    }
}

fn looping(name: &str, kind: LoopKind, body: Vec<Node>, condition: &str, max: Option<u32>) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Loop {
            kind,
            body,
            condition: expr(condition),
            max_iterations: max,
        },
    }
}

fn map(name: &str, fields: &[(&str, &str)]) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Map {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), expr(v)))
                .collect(),
        },
    }
}

/// Runs `flow` on `input`, finishing attempts in declaration order.
fn run(flow: Vec<Node>, steps: &[&str], input: Value) -> RunResult {
    let wf = workflow(flow, steps);
    let mut state = start(&wf, input);
    drive(&mut state, &mut std::iter::repeat(0));
    state.result()
}

fn workflow(flow: Vec<Node>, steps: &[&str]) -> Arc<Workflow> {
    Arc::new(
        WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: json!({"base": 0}),
            steps: steps
                .iter()
                .map(|s| (id(s), StepDef::new(id(s), "/c/s.wasm")))
                .collect(),
            flow,
        }
        .build()
        .unwrap(),
    )
}

/// What a step does: `suspend` suspends on its first run, `fail` fails,
/// everything else completes with `{"at": path, "in": input}` and writes
/// `state[<step id>] = path` over the state it sees.
fn report(state: &RunState, task: &StepTask, now: Timestamp) -> Event {
    let path = task.path.clone();
    match task.step.declared() {
        "suspend" if task.resume_payload.is_none() => Event::StepSuspended {
            path,
            payload: json!({"at": task.path}),
            labels: vec![task.path.to_string()],
            state: None,
            at: now,
        },
        "inc" => Event::StepCompleted {
            path,
            output: Arc::new(json!({
                "n": task.input["n"].as_i64().unwrap_or(0) + 1,
                "iteration": task.iteration,
            })),
            state: None,
            at: now,
        },
        "count" => {
            let mut seen = state.view(&task.path).state.as_ref().clone();
            let count = seen["count"].as_i64().unwrap_or(0) + 1;
            seen["count"] = json!(count);
            Event::StepCompleted {
                path,
                output: Arc::new(json!({"n": count})),
                state: Some(seen),
                at: now,
            }
        }
        "fail" => Event::StepFailed {
            path,
            error: crate::StepError::host(crate::FailureKind::Step, format!("{}", task.path)),
            at: now,
        },
        _ => {
            let mut seen = state.view(&task.path).state.as_ref().clone();
            seen[task.step.declared()] = json!(task.path);
            Event::StepCompleted {
                path,
                output: Arc::new(json!({"at": task.path, "in": *task.input})),
                state: Some(seen),
                at: now,
            }
        }
    }
}

/// Drives a run to rest, finishing in-flight attempts in the order `pick`
/// chooses (an index into the attempts in flight, modulo their number).
/// Returns the events recorded on the way.
fn drive(state: &mut RunState, picks: &mut impl Iterator<Item = usize>) -> Vec<Event> {
    let now = Timestamp(1);
    let mut in_flight: Vec<StepTask> = Vec::new();
    let mut events = Vec::new();
    loop {
        let advance = state.advance(now).unwrap();
        events.extend(advance.events);
        for effect in advance.effects {
            if let crate::Effect::Execute(task) = effect {
                in_flight.push(task);
            }
        }
        if in_flight.is_empty() {
            return events;
        }
        let i = picks.next().unwrap_or(0) % in_flight.len();
        let task = in_flight.remove(i);
        let event = report(state, &task, now);
        state.apply(&event).unwrap();
        events.push(event);
    }
}

fn start(workflow: &Arc<Workflow>, input: Value) -> RunState {
    let mut state = RunState::new(Arc::clone(workflow));
    state
        .apply(&Event::RunStarted {
            run: RunId::new("r").unwrap(),
            workflow: id("wf"),
            input,
            state: json!({"base": 0}),
            at: Timestamp(0),
            origin: None,
        })
        .unwrap();
    state
}

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
fn a_branch_runs_every_matching_arm_else_its_default() {
    let arms = || {
        vec![
            arm("big", Some("input.n > 10"), vec![step("a")]),
            arm("even", Some("input.n % 2 == 0"), vec![step("b"), step("c")]),
            arm("other", None, vec![step("d")]),
        ]
    };
    let steps = ["a", "b", "c", "d"];
    let both = run(vec![branch("route", arms())], &steps, json!({"n": 12}));
    let output = both.output.unwrap();
    assert_eq!(output["big"]["at"], "route/big/a");
    assert_eq!(output["even"]["at"], "route/even/c");
    assert_eq!(output.as_object().unwrap().len(), 2);

    let none = run(vec![branch("route", arms())], &steps, json!({"n": 3}));
    assert_eq!(none.output.unwrap()["other"]["at"], "route/other/d");

    let no_default = vec![branch("route", arms().into_iter().take(2).collect())];
    let empty = run(no_default, &steps, json!({"n": 3}));
    assert_eq!(empty.output.unwrap(), json!({}));
}

#[test]
fn a_condition_that_errors_fails_the_run_naming_the_arm() {
    let flow = vec![branch(
        "route",
        vec![
            arm("ok", Some("true"), vec![step("a")]),
            arm("bad", Some("input.missing > 1"), vec![step("a")]),
        ],
    )];
    let result = run(flow, &["a"], json!({"n": 1}));
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.step.unwrap().as_str(), "route");
    assert_eq!(error.error.kind, FailureKind::Expression);
    assert!(
        error.error.message.contains("arm `bad`"),
        "{}",
        error.error.message
    );
    // Nothing ran: the decision failed before any arm started.
    assert!(result.steps.is_empty());

    let not_bool = vec![branch(
        "route",
        vec![arm("x", Some("input.n"), vec![step("a")])],
    )];
    let result = run(not_bool, &["a"], json!({"n": 1}));
    assert_eq!(result.error.unwrap().error.kind, FailureKind::Expression);
}

#[test]
fn loops_run_the_body_then_check_the_condition_on_its_output() {
    let body = || vec![step("inc")];
    let result = run(
        vec![looping(
            "again",
            LoopKind::DoWhile,
            body(),
            "output.n < 3",
            None,
        )],
        &["inc"],
        json!({"n": 0}),
    );
    assert_eq!(result.output.unwrap(), json!({"n": 3, "iteration": 3}));
    let paths: Vec<&str> = result.steps.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["again#1/inc", "again#2/inc", "again#3/inc"]);

    // do-until stops when the condition holds; the body runs at least once.
    let result = run(
        vec![looping(
            "again",
            LoopKind::DoUntil,
            body(),
            "iteration >= 1",
            None,
        )],
        &["inc"],
        json!({"n": 5}),
    );
    assert_eq!(result.output.unwrap(), json!({"n": 6, "iteration": 1}));

    // `steps` in a condition sees the iteration just run.
    let result = run(
        vec![looping(
            "again",
            LoopKind::DoWhile,
            body(),
            "steps.inc.n < 2",
            None,
        )],
        &["inc"],
        json!({"n": 0}),
    );
    assert_eq!(result.output.unwrap()["n"], 2);
}

#[test]
fn a_loop_past_its_max_iterations_fails() {
    let result = run(
        vec![looping(
            "again",
            LoopKind::DoWhile,
            vec![step("inc")],
            "true",
            Some(4),
        )],
        &["inc"],
        json!({"n": 0}),
    );
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.error.kind, FailureKind::MaxIterations);
    assert_eq!(error.step.unwrap().as_str(), "again");
    assert_eq!(result.steps.len(), 4);
}

#[test]
fn a_map_builds_its_output_from_expressions() {
    let result = run(
        vec![
            step("a"),
            map(
                "shape",
                &[
                    ("from", "steps.a.at"),
                    ("twice", "input['in'].n * 2"),
                    ("name", "workflow.input.name"),
                ],
            ),
        ],
        &["a"],
        json!({"n": 4, "name": "ada"}),
    );
    assert_eq!(
        result.output.unwrap(),
        json!({"from": "a", "twice": 8, "name": "ada"})
    );
    let failed = run(
        vec![map("shape", &[("x", "input.nope")])],
        &[],
        json!({"n": 1}),
    );
    let error = failed.error.unwrap();
    assert_eq!(error.error.kind, FailureKind::Expression);
    assert!(
        error.error.message.contains("field `x`"),
        "{}",
        error.error.message
    );
}

#[test]
fn nested_loops_branches_and_foreach_address_every_execution() {
    let flow = vec![foreach(
        "items",
        vec![looping(
            "again",
            LoopKind::DoUntil,
            vec![
                branch(
                    "route",
                    vec![
                        arm("low", Some("input.n < 2"), vec![step("inc")]),
                        arm("high", None, vec![step("inc")]),
                    ],
                ),
                map(
                    "next",
                    &[("n", "has(input.low) ? input.low.n : input.high.n")],
                ),
            ],
            "output.n >= 3",
            None,
        )],
        2,
    )];
    let result = run(flow, &["inc"], json!([{"n": 0}, {"n": 2}]));
    assert_eq!(result.status, RunStatus::Success, "{:?}", result.error);
    assert_eq!(result.output.unwrap(), json!([{"n": 3}, {"n": 3}]));
    let paths: Vec<&str> = result.steps.iter().map(|s| s.path.as_str()).collect();
    assert!(
        paths.contains(&"items[0]/again#3/route/high/inc"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"items[1]/again#1/route/high/inc"),
        "{paths:?}"
    );
    // The innermost repetition is the step's iteration.
    let inner = result
        .steps
        .iter()
        .find(|s| s.path.as_str() == "items[0]/again#2/route/low/inc")
        .unwrap();
    assert_eq!(inner.output.as_ref().unwrap()["iteration"], 2);
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

fn path(text: &str) -> StepPath {
    StepPath::parse(text).unwrap()
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
