//! `weft rerun` through the CLI: a new run from an address of a finished
//! run, taking over the results before it.

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId, RunIndex as _};
use weft_store_sqlite::SqliteStore;

use crate::support::{guest, stderr, stdout, weft};

#[test]
fn rerun_from_a_foreach_item_executes_only_that_item_and_later_ones_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("items.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"items\"\nflow = [{{ foreach = [{{ step = \"work\" }}], concurrency = 2, id = \"items\" }}]\n\
             [steps.work]\ncomponent = \"{}\"\n",
            guest("test-steps").display()
        ),
    )
    .unwrap();
    let db = dir.path().join("weft.db");
    let items: Vec<Value> = (0..5)
        .map(|i| json!({"action": "emit", "events": [{"kind": "exec", "data": i}], "output": i * 10}))
        .collect();
    let out = weft(home.path())
        .arg("run")
        .arg(&manifest)
        .args([
            "--input",
            &json!(items).to_string(),
            "--run-id",
            "first",
            "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let store = SqliteStore::open(&db).unwrap();
    let old = store.load(&RunId::new("first").unwrap()).unwrap().1;

    for runtime in ["evented", "default"] {
        let new = format!("again-{runtime}");
        let out = weft(home.path())
            .args([
                "rerun",
                "first",
                "--from",
                "items[3]/work",
                "--run-id",
                &new,
            ])
            .args(["--runtime", runtime, "--json", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["output"], json!([0, 10, 20, 30, 40]), "{runtime}");

        let events = store.load(&RunId::new(&new).unwrap()).unwrap().1;
        let Some(Event::RunStarted {
            origin: Some(origin),
            at: started,
            ..
        }) = events.first()
        else {
            panic!(
                "{runtime}: the new run records where it came from: {:?}",
                events.first()
            )
        };
        assert_eq!(origin.run.as_str(), "first");
        assert_eq!(origin.from.as_str(), "items[3]/work");
        // Executions in the new run are the attempts it started itself
        // (what it took over keeps the old run's times).
        let executed: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::StepStarted { path, at, .. } if at >= started => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(executed, ["items[3]/work", "items[4]/work"], "{runtime}");
        // Items 0–2 are the old run's records, taken over as they were.
        for i in 0..3 {
            let path = format!("items[{i}]/work");
            let of = |log: &[Event]| -> Vec<Event> {
                log.iter()
                    .filter(|e| matches!(e, Event::StepStarted { path: p, .. } | Event::StepCompleted { path: p, .. } | Event::Custom { path: p, .. } if p.as_str() == path))
                    .cloned()
                    .collect()
            };
            assert_eq!(of(&events), of(&old), "{runtime}: {path}");
        }
    }
    // The old run is unchanged.
    assert_eq!(store.load(&RunId::new("first").unwrap()).unwrap().1, old);
    // `weft events` says where a rerun came from.
    let out = weft(home.path())
        .args(["events", "again-evented", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        stdout(&out)
            .lines()
            .next()
            .unwrap()
            .contains("rerun of first from items[3]/work"),
        "{}",
        stdout(&out)
    );
    // A running run, an unknown address: refused (exit 2), nothing created.
    let out = weft(home.path())
        .args(["rerun", "first", "--from", "items[9]/nope", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no node at `items[9]/nope`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(store.list_runs(None).unwrap().len(), 3);
}
