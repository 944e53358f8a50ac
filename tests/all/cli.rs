//! The `weft` binary end to end: exit codes, output, suspend → resume across processes.

use serde_json::{Value, json};

use crate::support::{stderr, stdout, test_steps_manifest, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";

fn json_result(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

#[test]
fn every_command_has_help() {
    let home = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["run", "--help"], &["resume", "--help"], &["validate", "--help"]] {
        let out = weft(home.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn the_example_runs_to_success_and_prints_steps_and_output() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args(["run", EXAMPLE, "--input", "@examples/order-approval/small-order.json"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    for step in ["validate", "reserve", "approve", "charge", "notify"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(step) && l.contains("success")), "{text}");
    }
    assert!(text.contains("event notification"), "{text}");
    assert!(text.contains("succeeded; output:"), "{text}");
    assert!(text.contains("\"notified\": true"), "{text}");
}

#[test]
fn a_suspended_run_resumes_in_a_second_process() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args(["run", EXAMPLE, "--input", "@examples/order-approval/big-order.json", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let result = json_result(&out);
    assert_eq!(result["status"], "suspended");
    assert_eq!(result["suspended"][0]["path"], "approve");
    assert_eq!(result["suspended"][0]["labels"], json!(["manager-approval"]));
    let run_id = result["run_id"].as_str().unwrap().to_owned();

    // Resume data failing the resume schema is rejected; the run stays suspended.
    let out = weft(home.path())
        .args(["resume", &run_id, "--label", "manager-approval", "--data", r#"{"approved": "yes"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("fails its resume schema"), "{}", stderr(&out));

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
    let charge = result["steps"].as_array().unwrap().iter().find(|s| s["path"] == "charge").unwrap();
    assert_eq!(charge["output"]["approved_by"], "dana");
    assert_eq!(charge["output"]["amount_cents"], 259_800);
    assert_eq!(result["state"]["reservations"], 1);

    // A second resume of the same run is refused clearly.
    let out = weft(home.path())
        .args(["resume", &run_id, "--data", r#"{"approved": true, "approver": "x"}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not suspended (status: success)"), "{}", stderr(&out));
}

#[test]
fn a_failed_run_exits_1_with_the_structured_error() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args(["run", EXAMPLE, "--input", "@examples/order-approval/huge-order.json", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let run_id = json_result(&out)["run_id"].as_str().unwrap().to_owned();
    let out = weft(home.path())
        .args(["resume", &run_id, "--data", r#"{"approved": true, "approver": "dana"}"#])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error at step `charge`: [card-declined] card declined"), "{text}");
    assert!(text.contains("caused by: [issuer-declined]"), "{text}");
    assert!(text.contains("caused by: [limit-exceeded]"), "{text}");
}

#[test]
fn invalid_input_exits_2_and_creates_no_run() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path()).args(["run", EXAMPLE, "--input", r#"{"order_id": 5}"#]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("input fails the input schema"), "{}", stderr(&out));
    assert!(!home.path().join("runs").exists());

    let out = weft(home.path()).args(["run", EXAMPLE, "--input", "{not json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--input is not JSON"), "{}", stderr(&out));
}

#[test]
fn validate_names_the_misspelt_field_and_the_missing_component() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(&manifest, "id = \"x\"\nflow = [{ step = \"a\" }]\n\n[steps.a]\ncomponnet = \"a.wasm\"\n")
        .unwrap();
    let out = weft(home.path()).arg("validate").arg(&manifest).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:5:1:", manifest.display())), "{err}");
    assert!(err.contains("componnet"), "{err}");

    std::fs::write(&manifest, "id = \"x\"\nflow = [{ step = \"a\" }]\n\n[steps.a]\ncomponent = \"nowhere/a.wasm\"\n")
        .unwrap();
    let out = weft(home.path()).arg("validate").arg(&manifest).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nowhere/a.wasm"), "{}", stderr(&out));

    let out = weft(home.path()).args(["validate", EXAMPLE]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok:"));
}

#[test]
fn validate_rejects_a_component_that_does_not_implement_the_contract() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A valid WebAssembly module that is not a weft step.
    std::fs::write(dir.path().join("empty.wasm"), wat::parse_str("(module)").unwrap()).unwrap();
    let manifest = dir.path().join("wf.toml");
    std::fs::write(&manifest, "id = \"x\"\nflow = [{ step = \"a\" }]\n\n[steps.a]\ncomponent = \"empty.wasm\"\n")
        .unwrap();
    let out = weft(home.path()).arg("validate").arg(&manifest).output().unwrap();
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
