//! Durable sleeps through the CLI, on real time: a run killed with SIGKILL
//! while it sleeps wakes exactly once after `weft recover`; `weft cancel`
//! from another process interrupts a sleep on both runtimes; `weft run
//! --detach` leaves a sleeping run to `weft recover`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId, RunIndex as _, RunStatus, Timestamp};
use weft_store_sqlite::SqliteStore;

use crate::support::{Watched, guest, stderr, stdout, weft};

/// `a`, a sleep of `sleep_ms` at `nap`, then `b`; each step emits `exec`.
pub(crate) fn sleepy_manifest(dir: &Path, sleep_ms: u64) -> PathBuf {
    let component = guest("test-steps");
    let text = format!(
        "id = \"sleepy\"\nflow = [{{ step = \"a\" }}, {{ sleep-ms = {sleep_ms}, id = \"nap\" }}, {{ step = \"b\" }}]\n\
         [steps.a]\ncomponent = \"{c}\"\n[steps.b]\ncomponent = \"{c}\"\n",
        c = component.display()
    );
    let path = dir.join("sleepy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Input making `a` emit `exec a` and hand `b` an input making it emit `exec b`.
pub(crate) fn sleepy_input() -> Value {
    json!({
        "action": "emit", "events": [{"kind": "exec", "data": "a"}],
        "output": {"action": "emit", "events": [{"kind": "exec", "data": "b"}], "output": "woke"},
    })
}

fn input() -> String {
    sleepy_input().to_string()
}

/// `weft run` of the sleepy manifest, its events watched.
fn spawn_run(home: &Path, manifest: &Path, db: &Path, run: &str, extra: &[&str]) -> Watched {
    let mut command = weft(home);
    command
        .arg("run")
        .arg(manifest)
        .args(["--input", &input(), "--run-id", run, "--db"])
        .arg(db)
        .args(extra);
    Watched::spawn(command)
}

pub(crate) fn events(db: &Path, run: &str) -> Vec<Event> {
    SqliteStore::open(db)
        .unwrap()
        .load(&RunId::new(run).unwrap())
        .unwrap()
        .1
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp(u64::try_from(since.as_micros()).unwrap())
}

fn count(events: &[Event], what: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| what(e)).count()
}

#[test]
fn a_run_killed_while_sleeping_wakes_once_after_recover() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Eight seconds: a `weft recover` that slept the whole sleep again,
    // instead of waking at the recorded time, would take that long.
    const SLEEP_MS: u64 = 8_000;
    let manifest = sleepy_manifest(dir.path(), SLEEP_MS);
    let db = dir.path().join("weft.db");
    let mut run = spawn_run(home.path(), &manifest, &db, "killed-asleep", &[]);
    let started = run
        .until(|e| matches!(e, Event::SleepStarted { .. }))
        .expect("the run sleeps");
    run.kill(); // SIGKILL, mid-sleep
    let Event::SleepStarted { until, at, .. } = started else {
        unreachable!()
    };
    assert_eq!(
        until.micros_since(at),
        SLEEP_MS * 1_000,
        "the wake time is recorded"
    );
    // `weft recover` once the wake time has passed: the timer is on real
    // time, so real time must pass (a wait with a lower bound only).
    while now() <= until {
        std::thread::sleep(Duration::from_micros(until.micros_since(now()) + 1_000));
    }
    let before = events(&db, "killed-asleep");
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::NodeCompleted { .. }))
    );
    let recovering = Instant::now();
    let out = weft(home.path())
        .args(["recover", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let took = recovering.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("recovered, now success"),
        "{}",
        stdout(&out)
    );
    // At once: it did not sleep the 8 s again. Recovering takes well under
    // a second here, so only sleeping again, not a loaded machine, reaches
    // the bound.
    assert!(
        took < Duration::from_millis(SLEEP_MS),
        "recover took {took:?}: it slept again"
    );

    let after = events(&db, "killed-asleep");
    assert_eq!(after[..before.len()], before[..], "recovery appends only");
    let is_nap =
        |e: &Event| matches!(e, Event::SleepStarted { path, .. } if path.as_str() == "nap");
    let woke = |e: &Event| matches!(e, Event::NodeCompleted { path, .. } if path.as_str() == "nap");
    assert_eq!(count(&after, is_nap), 1, "the timer was set once");
    assert_eq!(count(&after, woke), 1, "the timer fired once");
    let woke_at = after.iter().find(|e| woke(e)).unwrap().at();
    assert!(woke_at >= until, "woke before its time");
    for step in ["a", "b"] {
        let execs = count(
            &after,
            |e| matches!(e, Event::Custom { event, .. } if event.data == json!(step)),
        );
        assert_eq!(execs, 1, "step {step} ran {execs} times");
    }
    let last = after.last().unwrap();
    assert!(
        matches!(last, Event::RunCompleted { output, .. } if *output == json!("woke")),
        "{last:?}"
    );
}

#[test]
fn cancel_interrupts_a_sleep_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Ten minutes: the run could only end in time by being interrupted.
    let manifest = sleepy_manifest(dir.path(), 600_000);
    let db = dir.path().join("weft.db");
    for runtime in ["evented", "default"] {
        let run = format!("cancel-asleep-{runtime}");
        let mut watched = spawn_run(home.path(), &manifest, &db, &run, &["--runtime", runtime]);
        // Asleep: on the default runtime, whose `run-started` commits
        // before any step runs, the run is stored by then too.
        watched
            .until(|e| matches!(e, Event::SleepStarted { .. }))
            .expect("the run sleeps");
        let out = weft(home.path())
            .args(["cancel", &run, "--reason", "no longer needed", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{runtime}: {}", stderr(&out));
        // The sleeping `weft run` notices (it polls the store while it
        // waits) and reports the cancellation.
        assert_eq!(watched.exit_code(), Some(4), "{runtime}: weft run's exit");
        let stored = events(&db, &run);
        assert!(
            matches!(stored.last(), Some(Event::RunCanceled { .. })),
            "{runtime}: {stored:?}"
        );
        assert!(
            !stored
                .iter()
                .any(|e| matches!(e, Event::NodeCompleted { .. })),
            "{runtime}: the sleep must not complete"
        );
    }
}

#[test]
fn detach_leaves_a_sleeping_run_to_recover_on_both_runtimes() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = sleepy_manifest(dir.path(), 1_500);
    let db = dir.path().join("weft.db");
    for runtime in ["evented", "default"] {
        let run = format!("detached-{runtime}");
        let out = weft(home.path())
            .arg("run")
            .arg(&manifest)
            .args(["--input", &input(), "--run-id", &run, "--detach", "--json"])
            .args(["--runtime", runtime, "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["status"], "running", "{runtime}");
        let stored = events(&db, &run);
        let Some(Event::SleepStarted { until, .. }) = stored.last() else {
            panic!("{runtime}: the run should be stored asleep: {stored:?}")
        };
        assert!(*until > now(), "{runtime}: returned before the wake time");

        // `status` shows it sleeping; `recover` (on the same runtime)
        // waits for the stored wake time and finishes it.
        let out = weft(home.path())
            .args(["status", &run, "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert!(
            stdout(&out).contains("nap: sleeping until"),
            "{runtime}: {}",
            stdout(&out)
        );
        let out = weft(home.path())
            .args(["recover", "--runtime", runtime, "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let stored = events(&db, &run);
        let woke = stored
            .iter()
            .find(|e| matches!(e, Event::NodeCompleted { .. }))
            .expect("the sleep completed");
        assert!(woke.at() >= *until, "{runtime}: woke early");
        let store = SqliteStore::open(&db).unwrap();
        let summary = store
            .list_runs(None)
            .unwrap()
            .into_iter()
            .find(|s| s.meta.run_id.as_str() == run)
            .unwrap();
        assert_eq!(summary.status, RunStatus::Success, "{runtime}");
    }
}
