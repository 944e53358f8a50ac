//! Runs across processes, on BOTH runtimes: every run is recorded in the one
//! store, a run id is taken once, a resume or cancel applies exactly once,
//! and a process whose run was changed under it reports what happened.

use std::path::Path;
use std::process::{Child, Output, Stdio};

use serde_json::Value;

use crate::support::{event_types, stderr, stdout, test_steps_manifest, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";
const BIG_ORDER: &str = "@examples/order-approval/big-order.json";
const RUNTIMES: [&str; 2] = ["evented", "default"];

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Starts the example on a big order (it suspends at `approve`); the run id.
fn suspended_run(home: &Path, runtime: &str, run_id: Option<&str>) -> String {
    let mut cmd = weft(home);
    cmd.args([
        "run",
        EXAMPLE,
        "--input",
        BIG_ORDER,
        "--json",
        "--runtime",
        runtime,
    ]);
    if let Some(id) = run_id {
        cmd.args(["--run-id", id]);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    json_of(&out)["run_id"].as_str().unwrap().to_owned()
}

fn spawn(cmd: &mut std::process::Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn resume(home: &Path, run_id: &str, runtime: &str, who: &str) -> Child {
    spawn(
        weft(home)
            .args(["resume", run_id, "--json", "--runtime", runtime])
            .args([
                "--data",
                &format!(r#"{{"approved": true, "approver": "{who}"}}"#),
            ]),
    )
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
fn concurrent_resumes_apply_once_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    for runtime in RUNTIMES {
        for round in 0..3 {
            let run_id = suspended_run(home.path(), runtime, None);
            let children: Vec<_> = ["ann", "bob", "cy", "dee"]
                .iter()
                .map(|who| resume(home.path(), &run_id, runtime, who))
                .collect();
            let outs: Vec<_> = children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect();
            let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
            let context = format!("{runtime}, round {round}: {codes:?}");
            assert_eq!(
                codes.iter().filter(|c| **c == Some(0)).count(),
                1,
                "{context}"
            );
            assert_eq!(
                codes.iter().filter(|c| **c == Some(2)).count(),
                3,
                "{context}"
            );
            for lost in outs.iter().filter(|o| o.status.code() == Some(2)) {
                assert!(
                    stderr(lost).contains("is not suspended"),
                    "{context}: {}",
                    stderr(lost)
                );
            }
            let winner = outs.iter().find(|o| o.status.code() == Some(0)).unwrap();
            let approver = json_of(winner)["output"]["approved_by"].clone();
            let types = event_types(home.path(), &run_id);
            let count = |t: &str| types.iter().filter(|x| *x == t).count();
            assert_eq!(count("run-resumed"), 1, "{context}: {types:?}");
            // validate, reserve, approve, then approve again, charge and
            // notify once each after the one resume.
            assert_eq!(count("step-started"), 6, "{context}: {types:?}");
            assert_eq!(count("run-completed"), 1, "{context}: {types:?}");
            let status = status_of(home.path(), &run_id);
            assert_eq!(status["status"], "success", "{context}");
            assert_eq!(status["output"]["approved_by"], approver, "{context}");
        }
    }
}

#[test]
fn a_cancel_racing_a_resume_tells_both_callers_the_truth_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    for runtime in RUNTIMES {
        for round in 0..4 {
            let run_id = suspended_run(home.path(), runtime, None);
            let resumer = resume(home.path(), &run_id, runtime, "ann");
            let canceler = spawn(weft(home.path()).args(["cancel", &run_id, "--json"]));
            let resumed = resumer.wait_with_output().unwrap();
            let canceled = canceler.wait_with_output().unwrap();
            let context = format!(
                "{runtime}, round {round}: resume {:?} {}, cancel {:?} {}",
                resumed.status.code(),
                stderr(&resumed),
                canceled.status.code(),
                stderr(&canceled)
            );
            let stored = status_of(home.path(), &run_id);
            match canceled.status.code() {
                Some(4) => assert_eq!(stored["status"], "canceled", "{context}"),
                Some(2) => {
                    assert!(
                        stderr(&canceled).contains("cannot be canceled"),
                        "{context}"
                    );
                    assert_eq!(stored["status"], "success", "{context}");
                }
                _ => panic!("{context}"),
            }
            match resumed.status.code() {
                Some(0) => assert_eq!(stored["status"], "success", "{context}"),
                Some(4) => assert_eq!(stored["status"], "canceled", "{context}"),
                Some(2) => assert!(stderr(&resumed).contains("is not suspended"), "{context}"),
                _ => panic!("{context}"),
            }
            let steps = stored["steps"].as_array().unwrap();
            assert!(
                steps.iter().all(|s| s["status"] != "running"),
                "{context}: {steps:?}"
            );
        }
    }
}

#[test]
fn a_run_id_is_taken_once_across_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    for first in RUNTIMES {
        for second in RUNTIMES {
            let id = format!("order-{first}-{second}");
            suspended_run(home.path(), first, Some(&id));
            let out = weft(home.path())
                .args(["run", EXAMPLE, "--input", BIG_ORDER, "--runtime", second])
                .args(["--run-id", &id])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{first} then {second}: {}",
                stdout(&out)
            );
            assert!(
                stderr(&out).contains(&format!("a run `{id}` exists already")),
                "{}",
                stderr(&out)
            );
            // The first run is intact and resumes.
            assert_eq!(status_of(home.path(), &id)["status"], "suspended");
            let out = resume(home.path(), &id, second, "ann")
                .wait_with_output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        }
    }
}

#[test]
fn inspection_commands_see_default_runtime_runs() {
    let home = tempfile::tempdir().unwrap();
    let run_id = suspended_run(home.path(), "default", None);
    let out = weft(home.path()).args(["runs", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs = json_of(&out);
    let listed = runs.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r["run_id"] == run_id.as_str() && r["status"] == "suspended"),
        "{runs}"
    );
    assert_eq!(status_of(home.path(), &run_id)["status"], "suspended");
    let types = event_types(home.path(), &run_id);
    assert_eq!(types.first().map(String::as_str), Some("run-started"));
    assert_eq!(types.last().map(String::as_str), Some("run-suspended"));
    // No second persistence path: nothing but the store and the cache.
    assert!(!home.path().join("runs").exists());
}

/// Starts `weft run --json` of a step that spins until its deadline, and
/// returns once the store shows the run running — polling the store (the
/// condition), not sleeping a guess.
fn spinning_run(home: &Path, manifest: &Path, runtime: &str, id: &str) -> Child {
    let mut driver = spawn(
        weft(home)
            .args([
                "run",
                manifest.to_str().unwrap(),
                "--runtime",
                runtime,
                "--json",
            ])
            .args(["--run-id", id, "--input", r#"{"action": "loop"}"#]),
    );
    loop {
        let out = weft(home).args(["status", id, "--json"]).output().unwrap();
        if out.status.code() == Some(0) && json_of(&out)["status"] == "running" {
            return driver;
        }
        if let Some(exit) = driver.try_wait().unwrap() {
            panic!("{runtime}: the run ended ({exit}) before it was seen running");
        }
        std::thread::yield_now();
    }
}

/// `weft cancel` of a run that another `weft run` is driving: the canceler
/// and the driver both report the cancellation (exit 4), on both runtimes.
#[test]
fn a_run_canceled_from_another_process_is_reported_as_canceled_by_its_driver() {
    let home = tempfile::tempdir().unwrap();
    // The step spins until its deadline: the run is certainly still being
    // driven when the cancel lands.
    let manifest = test_steps_manifest(
        home.path(),
        &[("spin", "limits = { deadline-ms = 4000 }"), ("after", "")],
    );
    for runtime in RUNTIMES {
        let id = format!("spinning-{runtime}");
        let driver = spinning_run(home.path(), &manifest, runtime, &id);
        let out = weft(home.path())
            .args(["cancel", &id, "--reason", "enough"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{runtime}: {}", stderr(&out));
        let out = driver.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{runtime}: {}", stderr(&out));
        let result = json_of(&out);
        assert_eq!(result["status"], "canceled", "{runtime}");
        let stored = status_of(home.path(), &id);
        assert_eq!(stored["status"], "canceled");
        let steps = stored["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["status"] != "running"), "{steps:?}");
    }
}

/// `weft recover` beside a live `weft run`: the run's lease is live, so
/// recover leaves it to its driver (saying so), and the driver reports the
/// run's one outcome.
#[test]
fn recover_beside_a_live_run_leaves_it_to_its_driver() {
    let home = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(home.path(), &[("spin", "limits = { deadline-ms = 3000 }")]);
    for runtime in RUNTIMES {
        let id = format!("raced-{runtime}");
        let driver = spinning_run(home.path(), &manifest, runtime, &id);
        let recovered = weft(home.path())
            .args(["recover", "--json"])
            .output()
            .unwrap();
        let driven = driver.wait_with_output().unwrap();
        let context = format!(
            "{runtime}: run {:?} {}; recover {:?} {}",
            driven.status.code(),
            stderr(&driven),
            recovered.status.code(),
            stderr(&recovered)
        );
        // The step hit its deadline: the run failed, and its driver says so.
        assert_eq!(driven.status.code(), Some(1), "{context}");
        assert_eq!(json_of(&driven)["status"], "failed", "{context}");
        assert_eq!(recovered.status.code(), Some(0), "{context}");
        assert_eq!(stdout(&recovered), "", "{context}");
        assert!(stderr(&recovered).contains("left alone"), "{context}");
        assert_eq!(status_of(home.path(), &id)["status"], "failed", "{context}");
    }
}
