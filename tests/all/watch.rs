//! Live events on BOTH runtimes: `weft run --watch` prints a run's events as
//! they happen, exactly as `weft events` prints them afterwards, `weft resume
//! --watch` prints the resumed run's new events the same way (numbered on
//! from the suspension), and `weft events --follow` streams a run another
//! process drives until it settles.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::support::{stderr, stdout, test_steps_manifest, weft};

const RUNTIMES: [&str; 2] = ["evented", "default"];
const EXAMPLE: &str = "examples/order-approval/workflow.toml";

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Each address's events (and the run's own, under ""), timestamps left out.
fn per_address(events: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut by = BTreeMap::<String, Vec<Value>>::new();
    for event in events {
        let mut event = event.clone();
        event.as_object_mut().unwrap().remove("at");
        let path = event["path"].as_str().unwrap_or_default().to_owned();
        by.entry(path).or_default().push(event);
    }
    by
}

fn watched(home: &std::path::Path, runtime: &str, args: &[&str]) -> Output {
    weft(home)
        .args([
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/small-order.json",
        ])
        .args(["--watch", "--runtime", runtime, "--run-id", "watched"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_watch_streams_the_events_weft_events_prints_on_both_runtimes() {
    let mut streams = Vec::new();
    for runtime in RUNTIMES {
        let home = tempfile::tempdir().unwrap();
        let out = watched(home.path(), runtime, &["--json"]);
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let mut lines = json_lines(&stdout(&out));
        // The events, then the result.
        let result = lines.pop().unwrap();
        assert_eq!(result["status"], "success", "{runtime}");
        let stored = weft(home.path())
            .args(["events", "watched", "--json"])
            .output()
            .unwrap();
        assert_eq!(json_lines(&stdout(&stored)), lines, "{runtime}");
        let kinds: Vec<&str> = lines.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"run-started"), "{runtime}");
        assert_eq!(kinds.last(), Some(&"run-completed"), "{runtime}");
        assert_eq!(
            kinds.iter().filter(|k| **k == "custom").count(),
            2,
            "{runtime}: {kinds:?}"
        );
        streams.push(per_address(&lines));

        // Human lines are `weft events`' lines.
        let home = tempfile::tempdir().unwrap();
        let out = watched(home.path(), runtime, &[]);
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let stored = weft(home.path())
            .args(["events", "watched"])
            .output()
            .unwrap();
        let stored = stdout(&stored);
        assert!(
            stdout(&out).starts_with(&stored),
            "{runtime}: {}\n---\n{stored}",
            stdout(&out)
        );
        assert!(stdout(&out).contains("succeeded; output:"), "{runtime}");
    }
    // Same content, same order per address, whichever runtime drove it.
    assert_eq!(streams[0], streams[1]);
}

#[test]
fn resume_watch_streams_the_new_events_weft_events_prints_on_both_runtimes() {
    let mut streams = Vec::new();
    for runtime in RUNTIMES {
        for json in [true, false] {
            let home = tempfile::tempdir().unwrap();
            let out = weft(home.path())
                .args(["run", EXAMPLE, "--runtime", runtime, "--run-id", "resumed"])
                .args(["--input", "@examples/order-approval/big-order.json"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(3), "{runtime}: {}", stderr(&out));
            let events = |json: bool| {
                let mut command = weft(home.path());
                command.args(["events", "resumed"]);
                if json {
                    command.arg("--json");
                }
                stdout(&command.output().unwrap())
            };
            let suspended = json_lines(&events(true)).len();
            let mut resume = weft(home.path());
            resume
                .args(["resume", "resumed", "--watch", "--runtime", runtime])
                .args(["--data", r#"{"approved": true, "approver": "dana"}"#]);
            if json {
                resume.arg("--json");
            }
            let out = resume.output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
            if json {
                let mut lines = json_lines(&stdout(&out));
                // The new events, then the result.
                let result = lines.pop().unwrap();
                assert_eq!(result["status"], "success", "{runtime}");
                let stored = json_lines(&events(true));
                assert_eq!(stored[suspended..], lines[..], "{runtime}");
                let kinds: Vec<&str> = lines.iter().filter_map(|e| e["type"].as_str()).collect();
                assert_eq!(kinds.first(), Some(&"run-resumed"), "{runtime}");
                assert_eq!(kinds.last(), Some(&"run-completed"), "{runtime}");
                streams.push(per_address(&lines));
            } else {
                // Human lines are `weft events`' lines after the suspension.
                let stored = events(false);
                let new: String = stored
                    .lines()
                    .skip(suspended)
                    .map(|line| format!("{line}\n"))
                    .collect();
                assert!(!new.is_empty(), "{runtime}");
                assert!(
                    stdout(&out).starts_with(&new),
                    "{runtime}: {}\n---\n{new}",
                    stdout(&out)
                );
                assert!(stdout(&out).contains("succeeded; output:"), "{runtime}");
            }
        }
    }
    // Same content, same order per address, whichever runtime drove it.
    assert_eq!(streams[0], streams[1]);
}

#[test]
fn events_follow_streams_a_run_another_process_drives_until_it_settles() {
    let home = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(
        home.path(),
        &[("spin", "limits = { deadline-ms = 1500 }"), ("after", "")],
    );
    for runtime in RUNTIMES {
        let id = format!("followed-{runtime}");
        let driver = weft(home.path())
            .args([
                "run",
                manifest.to_str().unwrap(),
                "--runtime",
                runtime,
                "--json",
            ])
            .args(["--run-id", &id, "--input", r#"{"action": "loop"}"#])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Follow from the moment the run exists (following a run not stored
        // yet is refused, so retry until it is: a condition, not a guess).
        let followed = loop {
            let out = weft(home.path())
                .args(["events", &id, "--follow", "--json"])
                .output()
                .unwrap();
            if out.status.code() == Some(0) {
                break out;
            }
            // Not stored yet, or (first run) the store is still being
            // created (its migrations commit at once: version 0, then current).
            let err = stderr(&out);
            assert!(
                err.contains(&format!("no run `{id}`")) || err.contains("schema version 0"),
                "{runtime}: {err}"
            );
        };
        let driven = driver.wait_with_output().unwrap();
        assert_eq!(
            driven.status.code(),
            Some(1),
            "{runtime}: {}",
            stderr(&driven)
        );
        let stored = weft(home.path())
            .args(["events", &id, "--json"])
            .output()
            .unwrap();
        assert_eq!(stdout(&followed), stdout(&stored), "{runtime}");
        let last = json_lines(&stdout(&followed)).pop().unwrap();
        assert_eq!(last["type"], "run-failed", "{runtime}");
    }
}
