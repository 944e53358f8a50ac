//! Issue 6, item 3: guest-controlled text never reaches the terminal raw.
//! Human output escapes control characters; `--json` stays exact.

use serde_json::{Value, json};

use crate::support::{stderr, stdout, test_steps_manifest, weft};

use super::json_result;

/// Clears the screen, then forges a line of weft's own output.
const FORGED: &str = "\u{1b}[2J\r\nfake: run succeeded";
/// The same text as human output shows it.
const FORGED_ESCAPED: &str = "\\u{1b}[2J\\r\\nfake: run succeeded";

/// `text` holds no character a terminal would act on, and no forged line.
fn assert_inert(text: &str) {
    for c in ['\u{1b}', '\r', '\u{7}', '\u{9b}'] {
        assert!(!text.contains(c), "{c:?} printed raw in {text:?}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("fake")),
        "a forged line in {text}"
    );
}

#[test]
fn error_texts_event_kinds_and_labels_are_escaped_in_human_output_only() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("emit", ""), ("fail", "")]);
    let manifest = manifest.to_str().unwrap();
    // `emit` emits a custom event and hands `fail` the error to fail with.
    let failure = json!({
        "action": "fail",
        "code": format!("code{FORGED}"),
        "message": format!("message{FORGED}"),
        "details": { "d": "\u{9b}31m" },
        "causes": [{ "code": "cause\u{7}", "message": format!("cause{FORGED}") }],
    });
    let input = json!({
        "action": "emit",
        "events": [{ "kind": format!("kind{FORGED}"), "data": { "x": FORGED } }],
        "output": failure,
    })
    .to_string();

    let out = weft(home.path())
        .args(["run", manifest, "--input", &input])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert_inert(&text);
    for shown in [
        format!("error at step `fail`: [code{FORGED_ESCAPED}] message{FORGED_ESCAPED}"),
        format!("caused by: [cause\\u{{7}}] cause{FORGED_ESCAPED}"),
        "details: {\"d\":\"\\u{9b}31m\"}".to_owned(),
        format!("event kind{FORGED_ESCAPED}"),
    ] {
        assert!(text.contains(&shown), "{shown} not in {text}");
    }
    let run_id = text.split_whitespace().nth(1).unwrap().to_owned();

    // `weft status` prints the same summary; `weft events` each event.
    for args in [&["status", &run_id][..], &["events", &run_id]] {
        let out = weft(home.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_inert(&stdout(&out));
        assert!(stdout(&out).contains(&format!("kind{FORGED_ESCAPED}")));
    }

    // JSON output is exact.
    let out = weft(home.path())
        .args(["status", &run_id, "--json"])
        .output()
        .unwrap();
    let result = json_result(&out);
    assert_eq!(result["error"]["message"], format!("message{FORGED}"));
    assert_eq!(result["error"]["causes"], failure["causes"]);
    let out = weft(home.path())
        .args(["events", &run_id, "--json"])
        .output()
        .unwrap();
    let custom: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "custom")
        .collect();
    assert_eq!(custom[0]["event"]["kind"], format!("kind{FORGED}"));
    assert_eq!(custom[0]["event"]["data"]["x"], FORGED);
}

#[test]
fn suspend_labels_and_payloads_are_escaped() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("wait", "")]);
    let input = json!({
        "action": "suspend",
        "labels": [format!("label{FORGED}")],
        "payload": { "p": "\u{9b}2J" },
    })
    .to_string();
    let out = weft(home.path())
        .args(["run", manifest.to_str().unwrap(), "--input", &input])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert_inert(&text);
    assert!(
        text.contains(&format!(
            "wait (labels: label{FORGED_ESCAPED}): {{\"p\":\"\\u{{9b}}2J\"}}"
        )),
        "{text}"
    );
    let run_id = text.split_whitespace().nth(1).unwrap().to_owned();
    let out = weft(home.path())
        .args(["events", &run_id])
        .output()
        .unwrap();
    assert_inert(&stdout(&out));
    assert!(stdout(&out).contains(&format!("labels label{FORGED_ESCAPED}")));
}

#[test]
fn step_log_lines_are_escaped_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("talk", "")]);
    let input =
        json!({ "action": "log", "level": "info", "message": format!("said{FORGED}") }).to_string();
    for runtime in ["evented", "default"] {
        let out = weft(home.path())
            .args(["run", manifest.to_str().unwrap(), "--input", &input])
            .args(["--log", "info", "--runtime", runtime])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let log = stderr(&out);
        assert_inert(&log);
        let line = log
            .lines()
            .find(|l| l.contains("said"))
            .unwrap_or_else(|| panic!("{runtime}: no log line in {log}"));
        assert!(line.contains(&format!("said{FORGED_ESCAPED}")), "{line}");
        assert!(line.contains("step=talk"), "{line}");
        // The attempt's span in the run's trace (what OTLP log records carry).
        let span = line
            .split(' ')
            .find_map(|f| f.strip_prefix("span_id="))
            .unwrap_or_else(|| panic!("{runtime}: no span id in {line}"));
        assert!(
            span.len() == 16 && span.chars().all(|c| c.is_ascii_hexdigit()),
            "{line}"
        );
    }
}

#[test]
fn the_log_has_no_colour_when_stderr_is_not_a_terminal() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = test_steps_manifest(dir.path(), &[("talk", "")]);
    let input = json!({ "action": "log", "level": "info", "message": "plain words" }).to_string();
    let out = weft(home.path())
        .args(["run", manifest.to_str().unwrap(), "--input", &input])
        .args(["--log", "info"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("INFO") && log.contains("plain words"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in {log:?}");
}
