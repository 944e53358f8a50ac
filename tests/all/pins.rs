//! Runs pinned to their workflow, on BOTH runtimes: a run keeps the
//! workflow it started with (manifest, schemas, component digests) when the
//! files on disk change or go away, and `weft resume --upgrade` moves it to
//! the workflow on disk only when its recorded events still apply.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{event_types, guest, root, stderr, stdout, weft};

const RUNTIMES: [&str; 2] = ["evented", "default"];
const COMPONENTS: [&str; 5] = [
    "validate-order",
    "reserve-stock",
    "approval",
    "charge-payment",
    "notify",
];

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// A copy of the order-approval example in `dir/flow`, with its components
/// beside it in `dir/flow/dist`, so a test may change or delete any of it.
/// `edit` rewrites the manifest text. Returns the manifest path.
fn example_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let flow = dir.join("flow");
    fs::create_dir_all(flow.join("schemas")).unwrap();
    fs::create_dir_all(flow.join("dist")).unwrap();
    let example = root().join("examples/order-approval");
    fs::copy(
        example.join("schemas/order.json"),
        flow.join("schemas/order.json"),
    )
    .unwrap();
    for name in COMPONENTS {
        fs::copy(guest(name), flow.join(format!("dist/{name}.wasm"))).unwrap();
    }
    let text = fs::read_to_string(example.join("workflow.toml"))
        .unwrap()
        .replace("../../guest-examples/dist/", "dist/");
    let manifest = flow.join("workflow.toml");
    fs::write(&manifest, edit(text)).unwrap();
    manifest
}

/// Starts `manifest` on a big order (it suspends at `approve`); the run id.
fn suspended_run(home: &Path, manifest: &Path, runtime: &str) -> String {
    let input = format!(
        "@{}",
        root()
            .join("examples/order-approval/big-order.json")
            .display()
    );
    let out = weft(home)
        .arg("run")
        .arg(manifest)
        .args(["--input", &input, "--json", "--runtime", runtime])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    json_of(&out)["run_id"].as_str().unwrap().to_owned()
}

fn resume(home: &Path, run_id: &str, runtime: &str, extra: &[&str]) -> Output {
    weft(home)
        .args(["resume", run_id, "--json", "--runtime", runtime])
        .args(["--data", r#"{"approved": true, "approver": "dana"}"#])
        .args(extra)
        .output()
        .unwrap()
}

fn status_of(home: &Path, run_id: &str) -> Value {
    let out = weft(home)
        .args(["status", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json_of(&out)
}

#[test]
fn a_pinned_run_resumes_on_its_locked_workflow_after_its_files_change() {
    for runtime in RUNTIMES {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let manifest = example_copy(dir.path(), |t| t);
        let run = suspended_run(home.path(), &manifest, runtime);
        // Everything on disk changes: the charge step's component is now
        // another component, the manifest declares another flow, the input
        // schema refuses everything.
        let flow = manifest.parent().unwrap();
        fs::copy(guest("echo"), flow.join("dist/charge-payment.wasm")).unwrap();
        fs::write(flow.join("schemas/order.json"), r#"{"not": {}}"#).unwrap();
        let text = fs::read_to_string(&manifest).unwrap();
        fs::write(&manifest, text.replace("{ step = \"notify\" },", "")).unwrap();

        let out = resume(home.path(), &run, runtime, &[]);
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let result = json_of(&out);
        // The locked charge ran (echo would not add `approved_by`), and so
        // did the locked notify.
        let charge = result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == "charge")
            .unwrap();
        assert_eq!(charge["output"]["approved_by"], "dana", "{runtime}");
        assert_eq!(result["output"]["notified"], true, "{runtime}");
    }
}

#[test]
fn a_pinned_run_needs_no_manifest_files_and_finds_components_by_digest() {
    for runtime in RUNTIMES {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let manifest = example_copy(dir.path(), |t| t);
        let run = suspended_run(home.path(), &manifest, runtime);
        fs::remove_dir_all(manifest.parent().unwrap()).unwrap();

        // Inspecting needs no file at all.
        let status = status_of(home.path(), &run);
        assert_eq!(status["status"], "suspended", "{runtime}");
        assert_eq!(status["suspended"][0]["path"], "approve", "{runtime}");
        let types = event_types(home.path(), &run);
        assert_eq!(
            types.last().map(String::as_str),
            Some("run-suspended"),
            "{runtime}"
        );

        // Without the compile cache either, the charge step's component
        // is nowhere: the error names the step, the path and the digest.
        let cache = home.path().join("cache");
        let hidden = home.path().join("cache-hidden");
        fs::rename(&cache, &hidden).unwrap();
        let out = resume(home.path(), &run, runtime, &[]);
        assert_eq!(out.status.code(), Some(5), "{runtime}: {}", stdout(&out));
        let err = stderr(&out);
        let digest = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(
                fs::read(guest("validate-order")).unwrap(),
            ))
        };
        assert!(
            err.contains(&format!("run {run}: cannot load its pinned workflow"))
                && err.contains("step `validate`")
                && err.contains("flow/dist/validate-order.wasm")
                && err.contains(&format!("sha256 {digest}"))
                && err.contains("neither in the compile cache nor at its path"),
            "{runtime}: {err}"
        );
        assert_eq!(status_of(home.path(), &run)["status"], "suspended");

        // From the cache (components compiled when the run started), the
        // run resumes with the manifest directory gone.
        fs::rename(&hidden, &cache).unwrap();
        let out = resume(home.path(), &run, runtime, &[]);
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        assert_eq!(json_of(&out)["output"]["notified"], true, "{runtime}");
        assert_eq!(status_of(home.path(), &run)["status"], "success");
    }
}

#[test]
fn upgrade_refuses_a_workflow_the_recorded_events_do_not_fit() {
    for runtime in RUNTIMES {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let manifest = example_copy(dir.path(), |t| t);
        let run = suspended_run(home.path(), &manifest, runtime);
        // The node `reserve` now runs another step.
        let text = fs::read_to_string(&manifest).unwrap();
        let text = text
            .replace(
                "{ step = \"reserve\" }",
                "{ step = \"reserve-v2\", id = \"reserve\" }",
            )
            .replace("[steps.reserve]", "[steps.reserve-v2]");
        fs::write(&manifest, text).unwrap();

        let out = resume(home.path(), &run, runtime, &["--upgrade"]);
        assert_eq!(out.status.code(), Some(2), "{runtime}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("run {run}: cannot upgrade to "))
                && err.contains("node `reserve`: runs step `reserve` in the run, step `reserve-v2` in the new workflow"),
            "{runtime}: {err}"
        );
        // Nothing changed: the run is suspended, pinned to its workflow.
        assert_eq!(status_of(home.path(), &run)["status"], "suspended");
        let out = resume(home.path(), &run, runtime, &[]);
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
    }
}

#[test]
fn upgrade_moves_a_run_to_a_compatible_workflow_and_pins_it_there() {
    for runtime in RUNTIMES {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let manifest = example_copy(dir.path(), |t| t);
        let run = suspended_run(home.path(), &manifest, runtime);
        // A new node after the last one: what the run did still fits.
        let text = fs::read_to_string(&manifest).unwrap().replace(
            "{ step = \"notify\" },",
            "{ step = \"notify\" },\n  { map = { order_id = \"input.order_id\", upgraded = \"true\" } },",
        );
        let moved = manifest.with_file_name("v2.toml");
        fs::write(&moved, text).unwrap();

        let out = resume(
            home.path(),
            &run,
            runtime,
            &["--upgrade", "--manifest", moved.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        assert_eq!(json_of(&out)["output"]["upgraded"], true, "{runtime}");
        // The run is pinned to the new workflow: it replays there with the
        // files gone.
        fs::remove_dir_all(dir.path()).unwrap();
        let status = status_of(home.path(), &run);
        assert_eq!(status["status"], "success", "{runtime}");
        assert_eq!(status["output"]["upgraded"], true, "{runtime}");
    }
}

#[test]
fn manifest_without_upgrade_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args(["resume", "r", "--manifest", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("--upgrade"), "{}", stderr(&out));
}

#[test]
fn a_pinned_run_keeps_its_nested_workflow_after_the_child_manifest_and_component_change() {
    for runtime in RUNTIMES {
        let home = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let flow = dir.path().join("flow");
        fs::create_dir_all(flow.join("dist")).unwrap();
        fs::copy(guest("test-steps"), flow.join("dist/test-steps.wasm")).unwrap();
        fs::copy(guest("echo"), flow.join("dist/echo.wasm")).unwrap();
        fs::write(
            flow.join("child.toml"),
            "id = \"child\"\nflow = [{ step = \"approve\" }, { step = \"after\" }]\n\
             [steps.approve]\ncomponent = \"dist/test-steps.wasm\"\n\
             [steps.after]\ncomponent = \"dist/echo.wasm\"\n",
        )
        .unwrap();
        let manifest = flow.join("parent.toml");
        fs::write(
            &manifest,
            "id = \"parent\"\nflow = [{ workflow = \"child.toml\", id = \"sub\" }]\n",
        )
        .unwrap();
        let out = weft(home.path())
            .arg("run")
            .arg(&manifest)
            .args(["--input", r#"{"action": "suspend", "payload": {"n": 1}}"#])
            .args(["--json", "--runtime", runtime])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{runtime}: {}", stderr(&out));
        let run = json_of(&out)["run_id"].as_str().unwrap().to_owned();
        // The child manifest goes away; its `after` component becomes
        // another component (test-steps fails an input without an action).
        fs::remove_file(flow.join("child.toml")).unwrap();
        fs::copy(guest("test-steps"), flow.join("dist/echo.wasm")).unwrap();
        let out = weft(home.path())
            .args([
                "resume",
                &run,
                "--step",
                "sub/approve",
                "--json",
                "--runtime",
                runtime,
            ])
            .args(["--data", r#"{"ok": true}"#])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        assert_eq!(
            json_of(&out)["output"],
            serde_json::json!({"resumed_with": {"ok": true}, "suspended_with": {"n": 1}}),
            "{runtime}: the locked echo ran"
        );
    }
}
