//! The `weft` binary end to end: exit codes, output, suspend → resume across processes.
//!
//! The submodules test the hardening of issue 6 item by item.

mod compile;
mod inputs;
mod new;
mod quality;
mod untrusted;

use serde_json::{Value, json};

use crate::support::{event_types, stderr, stdout, test_steps_manifest, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";

fn json_result(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

#[test]
fn every_command_has_help() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["resume", "--help"],
        &["validate", "--help"],
    ] {
        let out = weft(home.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn the_example_runs_to_success_and_prints_steps_and_output() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args([
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/small-order.json",
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for step in ["validate", "reserve", "approve", "charge", "notify"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(step) && l.contains("success")),
            "{text}"
        );
    }
    assert!(text.contains("event notification"), "{text}");
    assert!(text.contains("succeeded; output:"), "{text}");
    assert!(text.contains("\"notified\": true"), "{text}");
}

#[test]
fn a_suspended_run_resumes_in_a_second_process() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args([
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/big-order.json",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let result = json_result(&out);
    assert_eq!(result["status"], "suspended");
    assert_eq!(result["suspended"][0]["path"], "approve");
    assert_eq!(
        result["suspended"][0]["labels"],
        json!(["manager-approval"])
    );
    let run_id = result["run_id"].as_str().unwrap().to_owned();

    // Resume data failing the resume schema is rejected; the run stays suspended.
    let out = weft(home.path())
        .args([
            "resume",
            &run_id,
            "--label",
            "manager-approval",
            "--data",
            r#"{"approved": "yes"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("fails its resume schema"),
        "{}",
        stderr(&out)
    );

    let out = weft(home.path())
        .args(["resume", &run_id, "--label", "manager-approval", "--json"])
        .args(["--data", r#"{"approved": true, "approver": "dana"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result = json_result(&out);
    assert_eq!(result["status"], "success");
    assert_eq!(result["output"]["order_id"], "ord-2002");
    assert_eq!(result["output"]["notified"], true);
    let charge = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "charge")
        .unwrap();
    assert_eq!(charge["output"]["approved_by"], "dana");
    assert_eq!(charge["output"]["amount_cents"], 259_800);
    assert_eq!(result["state"]["reservations"], 1);

    // A second resume of the same run is refused clearly.
    let out = weft(home.path())
        .args([
            "resume",
            &run_id,
            "--data",
            r#"{"approved": true, "approver": "x"}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not suspended (status: success)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failed_run_exits_1_with_the_structured_error() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args([
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/huge-order.json",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let run_id = json_result(&out)["run_id"].as_str().unwrap().to_owned();
    let out = weft(home.path())
        .args([
            "resume",
            &run_id,
            "--data",
            r#"{"approved": true, "approver": "dana"}"#,
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error at step `charge`: [card-declined] card declined"),
        "{text}"
    );
    assert!(text.contains("caused by: [issuer-declined]"), "{text}");
    assert!(text.contains("caused by: [limit-exceeded]"), "{text}");
}

#[test]
fn invalid_input_exits_2_and_creates_no_run() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args(["run", EXAMPLE, "--input", r#"{"order_id": 5}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("input fails the input schema"),
        "{}",
        stderr(&out)
    );
    let out = weft(home.path()).args(["runs", "--json"]).output().unwrap();
    assert_eq!(json_result(&out), json!([]), "no run was created");

    let out = weft(home.path())
        .args(["run", EXAMPLE, "--input", "{not json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--input is not JSON"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_names_the_misspelt_field_and_the_missing_component() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "id = \"x\"\nflow = [{ step = \"a\" }]\n\n[steps.a]\ncomponnet = \"a.wasm\"\n",
    )
    .unwrap();
    let out = weft(home.path())
        .arg("validate")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:5:1:", manifest.display())),
        "{err}"
    );
    assert!(err.contains("componnet"), "{err}");

    std::fs::write(
        &manifest,
        "id = \"x\"\nflow = [{ step = \"a\" }]\n\n[steps.a]\ncomponent = \"nowhere/a.wasm\"\n",
    )
    .unwrap();
    let out = weft(home.path())
        .arg("validate")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nowhere/a.wasm"), "{}", stderr(&out));

    let out = weft(home.path())
        .args(["validate", EXAMPLE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok:"));
}

#[test]
fn validate_locates_an_error_inside_an_expression() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    // `>>` is not CEL: the error is at the second `>`, line 4, column 28.
    std::fs::write(
        &manifest,
        "id = \"x\"\nflow = [\n  { branch = [\n    { when = \"input.total >> 100\", flow = [{ step = \"a\" }] },\n  ] },\n]\n",
    )
    .unwrap();
    let out = weft(home.path())
        .arg("validate")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:4:28: `flow[0].branch[0].when`: syntax error: extraneous input '>' ",
            manifest.display()
        )),
        "{err}"
    );
}

#[test]
fn validate_rejects_a_component_that_does_not_implement_the_contract() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A valid WebAssembly module that is not a weft step.
    std::fs::write(
        dir.path().join("empty.wasm"),
        wat::parse_str("(module)").unwrap(),
    )
    .unwrap();
    let manifest = dir.path().join("wf.toml");
    std::fs::write(
        &manifest,
        "id = \"x\"\nflow = [{ step = \"a\" }]\n\n[steps.a]\ncomponent = \"empty.wasm\"\n",
    )
    .unwrap();
    let out = weft(home.path())
        .arg("validate")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:5:", manifest.display())), "{err}");
    assert!(err.contains("steps.a.component"), "{err}");
}

#[test]
fn a_guest_in_an_infinite_loop_fails_with_deadline_and_the_next_run_works() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("spin", "limits = { deadline-ms = 300 }")]);
    let out = weft(home.path())
        .arg("run")
        .arg(&manifest)
        .args(["--json", "--input", r#"{"action": "loop"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let result = json_result(&out);
    assert_eq!(result["error"]["kind"], "deadline");
    assert_eq!(result["error"]["step"], "spin");
}

#[test]
fn two_concurrent_resumes_of_one_step_one_wins_one_errors() {
    let home = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let out = weft(home.path())
            .args([
                "run",
                EXAMPLE,
                "--input",
                "@examples/order-approval/big-order.json",
                "--json",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let run_id = json_result(&out)["run_id"].as_str().unwrap().to_owned();
        let resume = |who: &str| {
            weft(home.path())
                .args(["resume", &run_id, "--label", "manager-approval", "--json"])
                .args([
                    "--data",
                    &format!(r#"{{"approved": true, "approver": "{who}"}}"#),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (resume("ann"), resume("bob"));
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
        assert!(
            codes.contains(&Some(0)) && codes.contains(&Some(2)),
            "{codes:?}"
        );
        let loser = outs.iter().find(|o| o.status.code() == Some(2)).unwrap();
        let err = stderr(loser);
        assert!(
            err.contains("already resumed") || err.contains("is not suspended"),
            "unclear error: {err}"
        );
        // The run has exactly one resume and finished once.
        let types = event_types(home.path(), &run_id);
        assert_eq!(
            types.iter().filter(|t| *t == "run-resumed").count(),
            1,
            "{types:?}"
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("run-completed"),
            "{types:?}"
        );
    }
}

#[test]
fn status_runs_and_events_show_a_stored_run() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args([
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/small-order.json",
            "--json",
        ])
        .output()
        .unwrap();
    let ran = json_result(&out);
    let run_id = ran["run_id"].as_str().unwrap();

    let out = weft(home.path())
        .args(["status", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        json_result(&out),
        ran,
        "status rebuilds the same result from the events"
    );

    let out = weft(home.path())
        .args(["runs", "--status", "success", "--json"])
        .output()
        .unwrap();
    let runs = json_result(&out);
    assert_eq!(runs[0]["run_id"], run_id);
    assert_eq!(runs[0]["status"], "success");
    let out = weft(home.path())
        .args(["runs", "--status", "suspended", "--json"])
        .output()
        .unwrap();
    assert_eq!(json_result(&out), json!([]));

    let out = weft(home.path()).args(["events", run_id]).output().unwrap();
    let text = stdout(&out);
    let types: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"run-started"));
    assert_eq!(types.last(), Some(&"run-completed"));
    assert_eq!(
        types.iter().filter(|t| **t == "custom").count(),
        2,
        "{text}"
    );
    // Following a finished run prints it and returns.
    let out = weft(home.path())
        .args(["events", run_id, "--follow"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), text);

    let out = weft(home.path())
        .args(["status", "no-such-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no run `no-such-run`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn both_runtimes_print_the_same_result() {
    let run = |runtime: &str| {
        // One home each: a run id is taken once per store.
        let home = tempfile::tempdir().unwrap();
        let out = weft(home.path())
            .args([
                "run",
                EXAMPLE,
                "--input",
                "@examples/order-approval/small-order.json",
            ])
            .args(["--json", "--runtime", runtime, "--run-id", "same-id"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut result = json_result(&out);
        for step in result["steps"].as_array_mut().unwrap() {
            step.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.ends_with("_at"));
        }
        result
    };
    assert_eq!(run("default"), run("evented"));
}

#[test]
fn cancel_ends_a_suspended_run_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    for runtime in ["evented", "default"] {
        let out = weft(home.path())
            .args([
                "run",
                EXAMPLE,
                "--input",
                "@examples/order-approval/big-order.json",
                "--json",
            ])
            .args(["--runtime", runtime])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{runtime}: {}", stderr(&out));
        let run_id = json_result(&out)["run_id"].as_str().unwrap().to_owned();

        let out = weft(home.path())
            .args(["cancel", &run_id, "--reason", "withdrawn", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{runtime}: {}", stderr(&out));
        assert_eq!(json_result(&out)["status"], "canceled");

        let out = weft(home.path())
            .args([
                "resume",
                &run_id,
                "--data",
                r#"{"approved": true, "approver": "x"}"#,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{runtime}");
        assert!(
            stderr(&out).contains("is not suspended (status: canceled)"),
            "{}",
            stderr(&out)
        );
    }
}
