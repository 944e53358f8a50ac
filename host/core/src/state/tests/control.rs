//! Control flow: branches and their arms, do-while and do-until loops, maps,
//! and every execution addressed when they nest.

use serde_json::json;

use crate::error::FailureKind;
use crate::state::RunStatus;
use crate::workflow::LoopKind;

use super::{arm, branch, foreach, looping, map, run, step};

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
