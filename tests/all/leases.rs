//! One owner per run, across processes: `weft recover` beside a live run,
//! several recovers at once, takeover from a dead or stopped owner, and the
//! wake time a detached run leaves in the store. Executions are counted by
//! the marker each step logs (weft's log, `--log info`, of every process
//! involved), not by the events, which only show what was committed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId, RunIndex as _, RunStatus, Timestamp};
use weft_store_sqlite::SqliteStore;

use crate::support::{Watched, stderr, stdout, test_steps_manifest, weft};

const RUNTIMES: [&str; 2] = ["evented", "default"];

/// Loop turns of the slow step: a fraction of a second to seconds,
/// depending on the machine. Nothing waits for it to take any particular
/// time; it only makes it likely that the other process looks while the
/// step runs (if it finishes first, the checks hold all the same).
const SPIN: u64 = 400_000_000;

/// A two-step workflow: `a` logs `exec a [TAG]` and spins, then `b` logs
/// `exec b [TAG]` and spins. Deadlines are long: a loaded machine must not fail the
/// slow step.
fn workflow(dir: &Path) -> PathBuf {
    let limits = "limits = { deadline-ms = 120000 }";
    test_steps_manifest(dir, &[("a", limits), ("b", limits)])
}

fn input(tag: &str) -> String {
    json!({
        "action": "spin",
        "marker": format!("exec a [{tag}]"),
        "iterations": SPIN,
        "output": {
            "action": "spin",
            "marker": format!("exec b [{tag}]"),
            "iterations": SPIN,
            "output": null,
        },
    })
    .to_string()
}

/// `weft run` of run `tag` (watched), its log in `log`, with leases of
/// `ttl`.
fn start(
    home: &Path,
    db: &Path,
    manifest: &Path,
    (tag, runtime, ttl): (&str, &str, &str),
    log: &Path,
) -> Watched {
    let mut command = weft(home);
    command
        .env("WEFT_LEASE_TTL", ttl)
        .args(["--log", "info", "run"])
        .arg(manifest)
        .args([
            "--input",
            &input(tag),
            "--run-id",
            tag,
            "--runtime",
            runtime,
            "--db",
        ])
        .arg(db);
    Watched::spawn_with_stderr(command, File::create(log).unwrap())
}

fn started(step: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |event| matches!(event, Event::StepStarted { path, .. } if path.as_str() == step)
}

fn recover(home: &Path, db: &Path, extra: &[&str]) -> Output {
    weft(home)
        .args(["--log", "info", "recover", "--db"])
        .arg(db)
        .args(extra)
        .output()
        .unwrap()
}

/// How many times `marker` was logged, over all `logs` (files or text).
fn count(logs: &[String], marker: &str) -> usize {
    logs.iter()
        .map(|log| log.lines().filter(|l| l.contains(marker)).count())
        .sum()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn stored(db: &Path, run: &str) -> (RunStatus, Vec<Event>) {
    let store = SqliteStore::open(db).unwrap();
    let run = RunId::new(run).unwrap();
    let status = store
        .list_runs(None)
        .unwrap()
        .into_iter()
        .find(|s| s.meta.run_id == run)
        .unwrap()
        .status;
    (status, store.load(&run).unwrap().1)
}

fn completions(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::RunCompleted { .. }))
        .count()
}

#[test]
fn recover_beside_a_live_run_leaves_it_alone_and_every_step_runs_once() {
    for runtime in RUNTIMES {
        let dir = tempfile::tempdir().unwrap();
        let (home, db) = (dir.path(), dir.path().join("weft.db"));
        let manifest = workflow(home);
        let log = home.join("run.log");
        let mut run = start(home, &db, &manifest, ("live", runtime, "10s"), &log);
        run.until(started("a")).expect("step a starts");
        // The run index says who holds it.
        let listed = weft(home)
            .args(["runs", "--json", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
        let owner = listed[0]["held_by"].as_str().unwrap_or_default().to_owned();
        assert!(owner.starts_with("weft/"), "{runtime}: {listed}");
        // Step `a` is running in the other process (or has just finished).
        let recovered = recover(home, &db, &[]);
        assert_eq!(
            recovered.status.code(),
            Some(0),
            "{runtime}: {}",
            stderr(&recovered)
        );
        assert!(
            !stdout(&recovered).contains("recovered"),
            "{runtime}: {}",
            stdout(&recovered)
        );
        // It names the holder it left the run to.
        assert!(
            stderr(&recovered).contains(&owner),
            "{runtime}: {}",
            stderr(&recovered)
        );
        assert_eq!(run.exit_code(), Some(0), "{runtime}: {}", read(&log));
        let logs = [read(&log), stderr(&recovered)];
        for marker in ["exec a [live]", "exec b [live]"] {
            assert_eq!(count(&logs, marker), 1, "{runtime}: {marker}: {logs:?}");
        }
        let (status, events) = stored(&db, "live");
        assert_eq!(
            (status, completions(&events)),
            (RunStatus::Success, 1),
            "{runtime}"
        );
    }
}

#[test]
fn four_recovers_at_once_run_every_interrupted_step_once() {
    const RUNS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let (home, db) = (dir.path(), dir.path().join("weft.db"));
    let manifest = workflow(home);
    let mut killed_logs = Vec::new();
    for i in 0..RUNS {
        let tag = format!("run-{i}");
        // Both runtimes; half are killed in step `a`, half in step `b`.
        let runtime = RUNTIMES[i % 2];
        let step = if i % 4 < 2 { "a" } else { "b" };
        let log = home.join(format!("{tag}.log"));
        let mut run = start(home, &db, &manifest, (&tag, runtime, "10s"), &log);
        run.until(started(step)).expect("the step starts");
        run.kill();
        killed_logs.push(read(&log));
    }
    // The killed processes are gone from this host: their leases are free
    // at once. Four recovers race for the twenty runs, two on each runtime
    // (either continues runs started by either).
    let recovers: Vec<_> = (0..4)
        .map(|i| {
            weft(home)
                .args(["--log", "info", "recover", "--runtime", RUNTIMES[i % 2]])
                .arg("--db")
                .arg(&db)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = recovers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    }
    let recover_logs: Vec<String> = outputs.iter().map(stderr).collect();
    let all: Vec<String> = killed_logs
        .iter()
        .cloned()
        .chain(recover_logs.clone())
        .collect();
    for i in 0..RUNS {
        let tag = format!("run-{i}");
        let (status, events) = stored(&db, &tag);
        assert_eq!(
            (status, completions(&events)),
            (RunStatus::Success, 1),
            "{tag}"
        );
        for step in ["a", "b"] {
            let marker = format!("exec {step} [{tag}]");
            // Among the recovers, each step runs at most once (exactly once
            // if it had not completed before the kill); overall, a step
            // runs again only if it was in flight at the kill, which the
            // default runtime's whole run is (it records only at the end).
            assert!(
                count(&recover_logs, &marker) <= 1,
                "{marker}: {recover_logs:?}"
            );
            assert!(count(&all, &marker) >= 1, "{marker}");
        }
        // No step started again after its completion was committed.
        let mut done = Vec::new();
        for event in &events {
            match event {
                Event::StepStarted { path, .. } => {
                    assert!(
                        !done.contains(path),
                        "{tag}: {path} ran after its completion"
                    )
                }
                Event::StepCompleted { path, .. } => done.push(path.clone()),
                _ => {}
            }
        }
    }
}

#[test]
fn a_killed_owners_lease_is_taken_over_at_once_on_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let (home, db) = (dir.path(), dir.path().join("weft.db"));
    let manifest = workflow(home);
    let log = home.join("run.log");
    // A lease of ten minutes: only the proof that the process is gone can
    // free it before this test ends.
    let mut run = start(home, &db, &manifest, ("dead", "evented", "10m"), &log);
    run.until(started("b")).expect("step b starts");
    run.kill();
    let recovered = recover(home, &db, &[]);
    assert_eq!(recovered.status.code(), Some(0), "{}", stderr(&recovered));
    assert!(
        stdout(&recovered).contains("run dead: recovered, now success"),
        "{}",
        stdout(&recovered)
    );
    // `a` was committed before the kill: it never runs again.
    assert_eq!(count(&[stderr(&recovered)], "exec a [dead]"), 0);
    let (status, events) = stored(&db, "dead");
    assert_eq!((status, completions(&events)), (RunStatus::Success, 1));
}

#[cfg(unix)]
#[test]
fn a_stopped_owner_is_taken_over_and_commits_nothing_when_it_wakes() {
    for runtime in RUNTIMES {
        let dir = tempfile::tempdir().unwrap();
        let (home, db) = (dir.path(), dir.path().join("weft.db"));
        let manifest = workflow(home);
        let log = home.join("run.log");
        let mut run = start(home, &db, &manifest, ("stopped", runtime, "1s"), &log);
        run.until(started("a")).expect("step a starts");
        let pid = libc::pid_t::try_from(run.pid()).unwrap();
        // SAFETY: signalling a child process this test spawned.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGSTOP);
        }
        // `--wait`: the owner is alive (stopped), so its lease must run
        // out (1 s after its last renewal) before recover takes the run.
        let recovered = recover(home, &db, &["--wait"]);
        assert_eq!(
            recovered.status.code(),
            Some(0),
            "{runtime}: {}",
            stderr(&recovered)
        );
        assert!(
            stdout(&recovered).contains("run stopped: recovered, now success"),
            "{runtime}: {}",
            stdout(&recovered)
        );
        let before = stored(&db, "stopped").1.len();
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGCONT);
        }
        assert_eq!(run.exit_code(), Some(5), "{runtime}: {}", read(&log));
        let owner_log = read(&log);
        assert!(
            owner_log.contains("lost its lease"),
            "{runtime}: {owner_log}"
        );
        // It committed nothing after the takeover; the run completed once.
        let (status, events) = stored(&db, "stopped");
        assert_eq!(events.len(), before, "{runtime}");
        assert_eq!(
            (status, completions(&events)),
            (RunStatus::Success, 1),
            "{runtime}"
        );
        // `b` ran once, in the recover; `a` possibly twice (in flight at
        // the takeover: at-least-once, same idempotency key).
        assert_eq!(
            count(&[owner_log, stderr(&recovered)], "exec b [stopped]"),
            1,
            "{runtime}"
        );
    }
}

#[test]
fn a_detached_sleeping_run_leaves_its_wake_time_and_no_lease() {
    for runtime in RUNTIMES {
        let dir = tempfile::tempdir().unwrap();
        let (home, db) = (dir.path(), dir.path().join("weft.db"));
        let component = crate::support::guest("test-steps");
        let manifest = home.join("sleepy.toml");
        std::fs::write(
            &manifest,
            format!(
                "id = \"sleepy\"\nflow = [{{ sleep-ms = 600000, id = \"nap\" }}, {{ step = \"a\" }}]\n\n\
                 [steps.a]\ncomponent = \"{}\"\n",
                component.display()
            ),
        )
        .unwrap();
        let out = weft(home)
            .args(["run"])
            .arg(&manifest)
            .args(["--input", r#"{"action": "complete", "output": 1}"#])
            .args([
                "--run-id",
                "sleepy",
                "--detach",
                "--json",
                "--runtime",
                runtime,
                "--db",
            ])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{runtime}: {}", stderr(&out));
        let store = SqliteStore::open(&db).unwrap();
        let events = store.load(&RunId::new("sleepy").unwrap()).unwrap().1;
        let until: Vec<Timestamp> = events
            .iter()
            .filter_map(|e| match e {
                Event::SleepStarted { until, .. } => Some(*until),
                _ => None,
            })
            .collect();
        assert_eq!(until.len(), 1, "{runtime}: {events:?}");
        // The run is free (its process let go) and due at the sleep's end:
        // found by the store's one query, not by any process's memory.
        let claimable = store.claimable(Timestamp(u64::MAX)).unwrap();
        assert_eq!(claimable.len(), 1, "{runtime}");
        assert_eq!(claimable[0].wake, Some(until[0]), "{runtime}");
        assert!(
            store
                .claimable(Timestamp(until[0].0 - 1))
                .unwrap()
                .is_empty()
        );
        let _: Value = serde_json::from_slice(&out.stdout).unwrap();
    }
}
