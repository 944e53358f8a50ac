//! weft on PostgreSQL through the real binary: `--db postgres://…?schema=…`
//! (and `WEFT_DB`) wherever `--db` is accepted, a run started in one
//! process and resumed in another, read back by the inspection commands
//! (which open the store read-only).

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{PgSchema, stderr, stdout, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";

fn run(home: &Path, args: &[&str]) -> Output {
    weft(home).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

#[test]
fn a_run_on_postgres_is_resumed_and_read_back_from_other_processes() {
    let home = tempfile::tempdir().unwrap();
    let schema = PgSchema::new(&format!("weft_cli_{}", std::process::id()));
    let db = schema.url();

    // Inspecting a store nobody wrote yet creates nothing and finds nothing.
    let out = run(home.path(), &["runs", "--db", db, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out), serde_json::json!([]));

    // A big order suspends for approval (evented runtime, the default) …
    let out = run(
        home.path(),
        &[
            "run",
            EXAMPLE,
            "--input",
            "@examples/order-approval/big-order.json",
            "--json",
            "--db",
            db,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let suspended = json(&out);
    let id = suspended["run_id"].as_str().unwrap().to_owned();

    // … and is resumed by another process, with the default runtime.
    let out = run(
        home.path(),
        &[
            "resume",
            &id,
            "--label",
            "manager-approval",
            "--data",
            r#"{"approved": true, "approver": "dana"}"#,
            "--runtime",
            "default",
            "--json",
            "--db",
            db,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let finished = json(&out);
    assert_eq!(finished["status"], "success");

    // The inspection commands read it back: the same result, its events
    // in order, the run listed and held by nobody.
    let out = run(home.path(), &["status", &id, "--json", "--db", db]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status = json(&out);
    assert_eq!(status["status"], "success");
    assert_eq!(status["output"], finished["output"]);

    let out = run(home.path(), &["events", &id, "--json", "--db", db]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let types: Vec<String> = stdout(&out)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("run-started"));
    assert!(types.iter().any(|t| t == "run-suspended"), "{types:?}");
    assert!(types.iter().any(|t| t == "run-resumed"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("run-completed"));

    // `WEFT_DB` names the store when `--db` does not.
    let out = weft(home.path())
        .env("WEFT_DB", db)
        .args(["runs", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs = json(&out);
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["run_id"], id.as_str());
    assert_eq!(runs[0]["status"], "success");
    assert!(runs[0].get("held_by").is_none(), "{runs}");

    // Everything went to PostgreSQL: no SQLite store in the home.
    assert!(!home.path().join("weft.db").exists());
}

#[test]
fn an_unreachable_postgres_is_named_without_its_password() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on loopback port 1: refused at once.
    let db = "postgres://weft:hunter2@127.0.0.1:1/test?schema=nowhere";
    for args in [
        &["run", EXAMPLE, "--db", db][..],
        &["status", "some-run", "--db", db],
    ] {
        let out = run(home.path(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {err}");
        assert!(
            err.contains(
                "cannot connect to PostgreSQL at postgres://weft@127.0.0.1:1/test?schema=nowhere"
            ),
            "{args:?}: {err}"
        );
        assert!(!err.contains("hunter2"), "{args:?}: {err}");
    }
}
