//! Crash recovery: a real `weft run` process is killed with SIGKILL at seeded
//! random points during multi-step runs, then `weft recover` finishes them.
//!
//! Checks, over ≥ 50 kills: every run finishes; its output equals the default
//! runtime's; no step whose completion was persisted ran again (each step's
//! custom `exec` event appears exactly once, and no `step-started` follows a
//! path's `step-completed`); `PRAGMA integrity_check` is ok.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId, RunStatus};
use weft_store_sqlite::SqliteStore;

use crate::support::{stderr, stdout, test_steps_manifest, weft};

const STEPS: usize = 12;
const KILLS: usize = 50;
const SEED: u64 = 0x5eed_2026;

/// xorshift64*: a tiny deterministic generator (the kill points must be
/// reproducible from the seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The input that makes step `i` emit `exec i` and hand the rest to step `i + 1`.
fn chained_input() -> Value {
    let mut value = json!({"done": true, "steps": STEPS});
    for i in (0..STEPS).rev() {
        value = json!({"action": "emit", "events": [{"kind": "exec", "data": i}], "output": value});
    }
    value
}

fn check_run(events: &[Event], run: &str) {
    let mut completed: HashMap<String, usize> = HashMap::new();
    let mut execs: HashMap<String, usize> = HashMap::new();
    for event in events {
        match event {
            Event::StepStarted { path, .. } => assert!(
                !completed.contains_key(path.as_str()),
                "run {run}: step `{path}` started again after its completion was persisted"
            ),
            Event::StepCompleted { path, .. } => {
                *completed.entry(path.to_string()).or_default() += 1
            }
            Event::Custom { path, .. } => *execs.entry(path.to_string()).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(completed.len(), STEPS, "run {run}: completed steps");
    assert!(
        execs.values().all(|n| *n == 1),
        "run {run}: a step's events were recorded twice: {execs:?}"
    );
}

/// Runs `weft recover`; returns how many runs it picked up.
fn recover(home: &Path, db: &Path) -> usize {
    let out = weft(home)
        .arg("recover")
        .arg("--db")
        .arg(db)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "recover: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .filter(|l| l.contains("recovered, now success"))
        .count()
}

#[test]
fn runs_killed_at_random_points_recover_without_repeating_finished_steps() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let steps: Vec<(String, &str)> = (0..STEPS).map(|i| (format!("s{i}"), "")).collect();
    let steps: Vec<(&str, &str)> = steps.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let manifest = test_steps_manifest(dir.path(), &steps);
    let input = dir.path().join("input.json");
    std::fs::write(&input, chained_input().to_string()).unwrap();
    let input_arg = format!("@{}", input.display());
    let db = dir.path().join("weft.db");

    // The reference: the default runtime's result (this also warms the compile cache).
    let out = weft(home.path())
        .arg("run")
        .arg(&manifest)
        .args(["--runtime", "default", "--json", "--input", &input_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(expected["output"], json!({"done": true, "steps": STEPS}));

    // Each run has 1 + 3 × STEPS + 1 events. Kill when the log reaches a
    // seeded random length, so the kill points spread over whole runs
    // whatever the machine's speed.
    let total = (3 * STEPS + 2) as u64;
    let watcher = SqliteStore::open(&db).unwrap();
    let mut rng = Rng(SEED);
    let mut recovered = 0;
    for kill in 0..KILLS {
        let run = RunId::new(&format!("crash-{kill}")).unwrap();
        let target = 1 + rng.next() % total;
        let mut child = weft(home.path())
            .arg("run")
            .arg(&manifest)
            .args([
                "--json",
                "--input",
                &input_arg,
                "--run-id",
                run.as_str(),
                "--db",
            ])
            .arg(&db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let logged = watcher.events_after(&run, 0).map_or(0, |e| e.len() as u64);
            if logged >= target {
                break;
            }
            // Poll the log (the condition), not a guess at timing.
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().unwrap(); // SIGKILL (a no-op if it already exited)
        let _ = child.wait();
        recovered += recover(home.path(), &db);
    }
    // The test means something only if most kills landed mid-run.
    assert!(
        recovered >= KILLS / 2,
        "only {recovered} of {KILLS} kills interrupted a run"
    );

    let store = SqliteStore::open(&db).unwrap();
    let runs = store.list_runs(None).unwrap();
    assert!(
        runs.len() > KILLS / 2,
        "most kills should land after the run was created: {}",
        runs.len()
    );
    for summary in &runs {
        let run = summary.meta.run_id.to_string();
        assert_eq!(
            summary.status,
            RunStatus::Success,
            "run {run} did not finish"
        );
        let out = weft(home.path())
            .args(["status", &run, "--json", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["output"], expected["output"], "run {run}: output");
        assert_eq!(result["state"], expected["state"], "run {run}: state");
        let (_, events) = store.load(&summary.meta.run_id).unwrap();
        check_run(&events, &run);
    }
    assert_eq!(store.integrity_check().unwrap(), "ok");
}
