//! The CLI's `--server` twins.

use super::*;

/// `weft VERB --server URL`: what a local command prints, with the same
/// exit code.
#[test]
fn the_cli_verbs_talk_to_a_server_with_the_same_output() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    let remote = |args: &[&str]| {
        weft(home.path())
            .args(args)
            .env("WEFT_SERVER", &server.url)
            .env("WEFT_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let local = |args: &[&str]| weft(home.path()).args(args).output().unwrap();
    // A manifest is deployed, then run; the run suspends (exit 3).
    let out = remote(&[
        "run",
        EXAMPLE,
        "--input",
        "@examples/order-approval/big-order.json",
        "--run-id",
        "cli-big",
        "--watch",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "run-started", "--watch prints the events");
    assert_eq!(lines.last().unwrap()["status"], "suspended");
    // status, runs and events read the same as from the local store.
    for args in [
        &["status", "cli-big"][..],
        &["status", "cli-big", "--json"],
        &["events", "cli-big"],
        &["events", "cli-big", "--json"],
        &["runs"],
        &["runs", "--status", "suspended", "--json"],
    ] {
        let (there, here) = (remote(args), local(args));
        assert_eq!(there.status.code(), here.status.code(), "{args:?}");
        assert_eq!(
            stdout(&there),
            stdout(&here),
            "{args:?}: {}",
            stderr(&there)
        );
    }
    // A bad resume: exit 2, the CLI's words.
    let out = remote(&["resume", "cli-big", "--data", r#"{"approved": true}"#]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fails its resume schema"),
        "{}",
        stderr(&out)
    );
    // A good one: followed to success (exit 0), events numbered on.
    let out = remote(&[
        "resume",
        "cli-big",
        "--label",
        "manager-approval",
        "--data",
        r#"{"approved": true, "approver": "dana"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("succeeded; output:"),
        "{}",
        stdout(&out)
    );
    // By workflow id (deployed already), then canceled (exit 4).
    let out = remote(&[
        "run",
        "order-approval",
        "--input",
        "@examples/order-approval/big-order.json",
        "--run-id",
        "cli-cancel",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = remote(&["cancel", "cli-cancel", "--reason", "test", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = remote(&["rerun", "cli-cancel", "--from", "approve", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // A missing run: exit 2, as locally.
    let (there, here) = (remote(&["status", "ghost"]), local(&["status", "ghost"]));
    assert_eq!(
        (there.status.code(), here.status.code()),
        (Some(2), Some(2))
    );
    assert_eq!(stderr(&there), stderr(&here));
    // A wrong token: refused (exit 2), saying so.
    let out = weft(home.path())
        .args([
            "runs",
            "--server",
            &server.url,
            "--token",
            "wrong-token-xxxxxxxx",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Bearer"), "{}", stderr(&out));
}
