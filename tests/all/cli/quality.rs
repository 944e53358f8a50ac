//! Issue 6, item 6: CLI and error quality — a closed stdout, error chains,
//! values starting with `-`, read-only stores, following an undriven run,
//! the README's command table.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId, RunMeta, StepId, Timestamp};
use weft_store_sqlite::SqliteStore;

use crate::support::{guest, root, stderr, stdout, test_steps_manifest, weft};

use super::{EXAMPLE, json_result};

const SMALL_ORDER: &str = "@examples/order-approval/small-order.json";

/// A stdout whose reader is already gone, as with `weft … | head -1` once
/// `head` has exited: every write fails with EPIPE.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

/// An `echo` workflow whose input must be an object with an `x`.
fn echo_manifest(dir: &Path, input_schema: &str) -> PathBuf {
    let path = dir.join("echo.toml");
    let text = format!(
        "id = \"echo\"\nflow = [{{ step = \"echo\" }}]\n{input_schema}\n\n[steps.echo]\ncomponent = \"{}\"\n",
        guest("echo").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Sets the SQLite header's write version (byte 18) and read version (byte
/// 19): a write version above 2 makes every connection treat the database
/// as read-only, whoever runs the tests (file permissions do not stop root).
/// Read version 1 is rollback-journal mode, 2 WAL mode.
fn make_read_only(db: &Path, read_version: u8) {
    let mut bytes = std::fs::read(db).unwrap();
    assert_eq!(&bytes[..15], b"SQLite format 3");
    bytes[18] = 3;
    bytes[19] = read_version;
    std::fs::write(db, bytes).unwrap();
}

/// Runs the example to success in `db`; returns the result.
fn finished_run(home: &Path, db: &Path) -> Value {
    let out = weft(home)
        .args(["run", EXAMPLE, "--input", SMALL_ORDER, "--json", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json_result(&out)
}

/// Waits for `child` for at most a minute: a hang kills it and fails the
/// test instead of blocking it.
fn finish(child: std::process::Child) -> Output {
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill").arg(&pid).status();
            panic!("weft did not exit within a minute");
        }
    }
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("weft.db");
    let run = finished_run(home.path(), &db);
    let run_id = run["run_id"].as_str().unwrap();
    let commands: [&[&str]; 10] = [
        &["events", run_id, "--json"],
        &["events", run_id],
        &["events", run_id, "--follow"],
        &["status", run_id, "--json"],
        &["status", run_id],
        &["runs"],
        &["runs", "--json"],
        &["validate", EXAMPLE],
        &["run", EXAMPLE, "--input", SMALL_ORDER, "--json"],
        &["recover"],
    ];
    for args in commands {
        let child = weft(home.path())
            .args(args)
            .stdout(closed_stdout())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = finish(child);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn an_error_is_printed_once_even_when_its_cause_repeats_it() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The workflow input schema error formats its violations into its own
    // message and reports them as its source too.
    let manifest = echo_manifest(
        dir.path(),
        "input-schema = { type = \"object\", required = [\"x\"] }",
    );
    let out = weft(home.path())
        .args(["run", manifest.to_str().unwrap(), "--input", "{}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: workflow `echo`: input fails the input schema: /: \"x\" is a required property\n"
    );

    // So does a store failure: here, a database SQLite only reads.
    let db = home.path().join("weft.db");
    finished_run(home.path(), &db);
    make_read_only(&db, 2);
    let out = weft(home.path())
        .args(["run", EXAMPLE, "--input", SMALL_ORDER, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(
        text.matches("attempt to write a readonly database").count(),
        1,
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn values_may_start_with_a_hyphen() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = echo_manifest(dir.path(), "");
    let out = weft(home.path())
        .args(["run", manifest.to_str().unwrap(), "--input", "-1", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_result(&out)["output"], json!(-1));

    let manifest = test_steps_manifest(dir.path(), &[("wait", "")]);
    let suspend = r#"{"action": "suspend", "labels": ["-urgent"]}"#;
    let start = || {
        let out = weft(home.path())
            .args(["run", manifest.to_str().unwrap(), "--json"])
            .args(["--input", suspend])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        json_result(&out)["run_id"].as_str().unwrap().to_owned()
    };
    let run_id = start();
    let out = weft(home.path())
        .args([
            "resume", &run_id, "--label", "-urgent", "--data", "-2.5", "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_result(&out)["output"]["resumed_with"], json!(-2.5));

    let run_id = start();
    let out = weft(home.path())
        .args(["cancel", &run_id, "--reason", "-- see ticket 12", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = weft(home.path())
        .args(["events", &run_id, "--json"])
        .output()
        .unwrap();
    let last: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(last["reason"], "-- see ticket 12");
}

#[test]
fn inspection_commands_read_a_database_they_cannot_write() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("weft.db");
    let run = finished_run(home.path(), &db);
    let run_id = run["run_id"].as_str().unwrap();
    // Rollback-journal mode: opening it writable would switch it to WAL.
    make_read_only(&db, 1);

    let out = weft(home.path())
        .args(["status", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_result(&out), run);
    let out = weft(home.path()).args(["runs", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_result(&out)[0]["run_id"], run_id);
    let out = weft(home.path()).args(["events", run_id]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("run-completed"), "{}", stdout(&out));
}

#[test]
fn inspection_commands_create_no_store() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path()).args(["runs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    for command in ["status", "events"] {
        let out = weft(home.path()).args([command, "nope"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(stderr(&out), "error: no run `nope` in the store\n");
    }
    assert!(!home.path().join("weft.db").exists());
}

#[test]
fn following_a_run_nobody_drives_says_so_and_keeps_following() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("weft.db");
    // A run left `running` long ago, as by a `weft run` killed mid-run.
    let run = RunId::new("orphan").unwrap();
    let workflow = StepId::new("test").unwrap();
    SqliteStore::open(&db)
        .unwrap()
        .create_run(
            &RunMeta {
                run_id: run.clone(),
                workflow_id: workflow.clone(),
                manifest: "/nowhere/workflow.toml".to_owned(),
                manifest_sha256: "00".repeat(32),
                workflow_digest: None,
            },
            &[Event::RunStarted {
                run,
                workflow,
                input: json!({}),
                state: json!({}),
                at: Timestamp(1_000_000),
                origin: None,
            }],
            // Its lease ran out long ago.
            &weft_core::Owner {
                id: "weft/killed".into(),
                ttl: std::time::Duration::from_millis(1),
            },
            None,
        )
        .unwrap();

    let mut child = weft(home.path())
        .args(["events", "orphan", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let errors = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(errors).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let note = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    let note = note.expect("a note on stderr within a minute");
    assert!(
        note.starts_with("note: run orphan is running but has had no new event for")
            && note.contains("`weft recover`")
            && note.contains("Still following"),
        "{note}"
    );
    let mut printed = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(printed.contains("run-started"), "{printed}");

    // A follower whose reader went away stops.
    let child = weft(home.path())
        .args(["events", "orphan", "--follow", "--json"])
        .stdout(closed_stdout())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_readme_lists_every_option_of_every_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let home = tempfile::tempdir().unwrap();
    for command in [
        "run", "resume", "cancel", "rerun", "recover", "status", "runs", "events", "validate",
        "serve", "deploy",
    ] {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `weft {command} ")))
            .unwrap_or_else(|| panic!("no README row for `weft {command}`"));
        let out = weft(home.path())
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = stdout(&out);
        // Option lines start with `-x, --long` or `--long`; `--home`,
        // `--log`, `--durability`, `--lease-ttl`, the loading limits,
        // `--server` and `--token` are global and described below the table.
        let options: Vec<&str> = help
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
            .filter(|w| {
                ![
                    "--help",
                    "--version",
                    "--home",
                    "--log",
                    "--durability",
                    "--lease-ttl",
                    "--max-component-size",
                    "--compile-cpu",
                    "--compile-memory",
                    "--server",
                    "--token",
                ]
                .contains(w)
            })
            .collect();
        for option in options {
            assert!(
                row.contains(&format!("{option} ")) || row.contains(&format!("{option}]")),
                "the README's row for `weft {command}` does not mention {option}: {row}"
            );
        }
    }
}
