//! Crash recovery: a real `weft run` process is killed with SIGKILL at seeded
//! random points during multi-step runs, then `weft recover` finishes them.
//! Every test alternates the store's durability mode (`--durability full`
//! and `normal`) from one kill to the next: both survive a process crash.
//!
//! Checks, over ≥ 50 kills: every run finishes; its output equals the default
//! runtime's; no step whose completion was persisted ran again (each step's
//! custom `exec` event appears exactly once, and no `step-started` follows a
//! path's `step-completed`); `PRAGMA integrity_check` is ok.
//!
//! Runs of a workflow with a nested workflow, killed at every length of
//! their log, recover with every step run once and the child completed once.
//!
//! And a 10,000-item evented `foreach` (concurrency 16) killed a few times
//! in the middle: recovery completes it with every output in item order, and
//! no item whose completion was committed before the kill runs again.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId, RunIndex as _, RunStatus};
use weft_store_sqlite::SqliteStore;

use crate::support::{Watched, guest, stderr, stdout, test_steps_manifest, weft};

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

/// The durability mode of kill `n`: the crash tests alternate between the
/// two (`full` syncs every commit, `normal` only survives a process crash —
/// which is what SIGKILL is).
fn durability(n: usize) -> &'static str {
    if n.is_multiple_of(2) {
        "full"
    } else {
        "normal"
    }
}

/// Starts `weft run MANIFEST ARGS --run-id RUN --db DB`, watching the
/// events it commits, and kills it with SIGKILL as soon as `enough` holds
/// of one of them. Returns false if the run ended first.
fn kill_when(
    home: &Path,
    manifest: &Path,
    db: &Path,
    run: &RunId,
    args: &[&str],
    durability: &str,
    enough: impl FnMut(&Event) -> bool,
) -> bool {
    let mut command = weft(home);
    command
        .env("WEFT_DURABILITY", durability)
        .arg("run")
        .arg(manifest)
        .args(args)
        .args(["--run-id", run.as_str(), "--db"])
        .arg(db);
    let mut watched = Watched::spawn(command);
    let killed = watched.until(enough).is_some();
    watched.kill();
    killed
}

/// For [`kill_when`]: true once `target` events were committed.
fn logged(target: u64) -> impl FnMut(&Event) -> bool {
    let mut seen = 0;
    move |_| {
        seen += 1;
        seen >= target
    }
}

/// Runs `weft recover`; returns how many runs it picked up.
fn recover(home: &Path, db: &Path, durability: &str) -> usize {
    let out = weft(home)
        .env("WEFT_DURABILITY", durability)
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
    let mut rng = Rng(SEED);
    let mut recovered = 0;
    // On a loaded machine the watcher reads a run's events late, and a kill
    // aimed near a run's end may land after it: kill again (seeded, at most
    // three times as often) until half of KILLS interrupted a run.
    let mut kills = 0;
    while kills < KILLS || (recovered < KILLS / 2 && kills < 3 * KILLS) {
        let kill = kills;
        kills += 1;
        let run = RunId::new(&format!("crash-{kill}")).unwrap();
        let target = 1 + rng.next() % total;
        let run_args = ["--input", &input_arg];
        kill_when(
            home.path(),
            &manifest,
            &db,
            &run,
            &run_args,
            durability(kill),
            logged(target),
        );
        recovered += recover(home.path(), &db, durability(kill));
    }
    // The test means something only if most kills landed mid-run.
    assert!(
        recovered >= KILLS / 2,
        "only {recovered} of {kills} kills interrupted a run"
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

const ITEMS: usize = 10_000;
const FOREACH_KILLS: usize = 3;

/// What one address went through in a log: its `step-started` attempts and
/// `step-completed` count, in order.
#[derive(Debug, Default)]
struct Address {
    started: Vec<u32>,
    completed: usize,
}

fn addresses(events: &[Event]) -> HashMap<String, Address> {
    let mut by_path: HashMap<String, Address> = HashMap::new();
    for event in events {
        match event {
            Event::StepStarted { path, attempt, .. } => by_path
                .entry(path.to_string())
                .or_default()
                .started
                .push(*attempt),
            Event::StepCompleted { path, .. } => {
                by_path.entry(path.to_string()).or_default().completed += 1;
            }
            _ => {}
        }
    }
    by_path
}

fn completions(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::StepCompleted { .. }))
        .count()
}

/// Checks a recovered foreach run's log against what was committed before
/// the kill (`before`, a prefix of `after`).
fn check_foreach_run(run: &str, before: &[Event], after: &[Event]) {
    assert!(
        after.len() > before.len() && after[..before.len()] == *before,
        "run {run}: the log after recovery does not extend the log committed before the kill"
    );
    let before = addresses(before);
    let after = addresses(after);
    assert_eq!(after.len(), ITEMS, "run {run}: executed addresses");
    for i in 0..ITEMS {
        let path = format!("items[{i}]/echo");
        let Some(now) = after.get(&path) else {
            panic!("run {run}: `{path}` never ran");
        };
        assert_eq!(now.completed, 1, "run {run}: `{path}` completions");
        match before.get(&path) {
            // Committed before the kill: never executed again.
            Some(then) if then.completed == 1 => assert_eq!(
                now.started, then.started,
                "run {run}: `{path}` was completed before the kill and started again"
            ),
            // In flight at the kill: redelivered, with the same attempt.
            Some(then) => assert!(
                !then.started.is_empty()
                    && now.started.starts_with(&then.started)
                    && now.started.iter().all(|a| *a == then.started[0]),
                "run {run}: `{path}` in flight at the kill: {:?} then {:?}",
                then.started,
                now.started
            ),
            None => assert_eq!(now.started, [1], "run {run}: `{path}` attempts"),
        }
    }
}

#[test]
fn a_big_evented_foreach_killed_mid_run_recovers_without_repeating_finished_items() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"fan-out\"\n\
             flow = [{{ foreach = [{{ step = \"echo\" }}], concurrency = 16, id = \"items\" }}]\n\
             [steps.echo]\ncomponent = \"{}\"\n",
            guest("echo").display()
        ),
    )
    .unwrap();
    let items: Vec<usize> = (0..ITEMS).collect();
    let input = dir.path().join("input.json");
    std::fs::write(&input, serde_json::to_string(&items).unwrap()).unwrap();
    let input_arg = format!("@{}", input.display());
    let db = dir.path().join("weft.db");

    // Compile the component once, into the cache every process below reads.
    let out = weft(home.path())
        .arg("validate")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let mut rng = Rng(SEED ^ 0xf0_4e4c);
    for kill in 0..FOREACH_KILLS {
        let run = RunId::new(&format!("fan-out-{kill}")).unwrap();
        // Kill once a seeded number of items between 20 % and 80 % have
        // committed their completion.
        let target = ITEMS / 5 + (rng.next() % (3 * ITEMS as u64 / 5)) as usize;
        let mut done = 0;
        let killed = kill_when(
            home.path(),
            &manifest,
            &db,
            &run,
            &["--runtime", "evented", "--input", &input_arg],
            durability(kill),
            |event| {
                done += usize::from(matches!(event, Event::StepCompleted { .. }));
                done >= target
            },
        );
        assert!(
            killed,
            "kill {kill}: the run ended before {target} items completed"
        );

        // What the store holds now is exactly what was committed before the kill.
        let (_, before) = SqliteStore::open_read_only(&db)
            .unwrap()
            .load(&run)
            .unwrap();
        let done_before = completions(&before);
        assert!(
            (target..ITEMS).contains(&done_before),
            "kill {kill}: {done_before} items completed before the kill (target {target})"
        );
        assert_eq!(
            recover(home.path(), &db, durability(kill)),
            1,
            "kill {kill}: recovered runs"
        );

        let store = SqliteStore::open_read_only(&db).unwrap();
        let (_, after) = store.load(&run).unwrap();
        check_foreach_run(run.as_str(), &before, &after);
        let redelivered = addresses(&after)
            .values()
            .filter(|a| a.started.len() > 1)
            .count();
        assert!(
            redelivered <= 16,
            "kill {kill}: {redelivered} items redelivered, more than were in flight"
        );
        eprintln!(
            "kill {kill}: {done_before} of {ITEMS} items committed before the kill, \
             {redelivered} redelivered"
        );
        let out = weft(home.path())
            .args(["status", run.as_str(), "--json", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["status"], "success", "kill {kill}");
        assert_eq!(
            result["output"],
            json!(items),
            "kill {kill}: outputs in item order"
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }
}

/// The events of one run of [`nested_crash_manifest`]: `run-started`, three
/// per step (started, custom, completed) for `a`, `sub/x`, `sub/y` and `b`,
/// `node-started` and `node-completed` of `sub`, and `run-completed`.
const NESTED_EVENTS: u64 = 1 + 3 * 4 + 2 + 1;

/// `a`, then a nested workflow `sub` running `x` and `y`, then `b`.
fn nested_crash_manifest(dir: &Path) -> std::path::PathBuf {
    let component = guest("test-steps");
    std::fs::write(
        dir.join("child.toml"),
        format!(
            "id = \"child\"\nflow = [{{ step = \"x\" }}, {{ step = \"y\" }}]\n\
             [steps.x]\ncomponent = \"{c}\"\n[steps.y]\ncomponent = \"{c}\"\n",
            c = component.display()
        ),
    )
    .unwrap();
    let path = dir.join("parent.toml");
    std::fs::write(
        &path,
        format!(
            "id = \"parent\"\nflow = [{{ step = \"a\" }}, {{ workflow = \"child.toml\", id = \"sub\" }}, {{ step = \"b\" }}]\n\
             [steps.a]\ncomponent = \"{c}\"\n[steps.b]\ncomponent = \"{c}\"\n",
            c = component.display()
        ),
    )
    .unwrap();
    path
}

/// A recovered run of [`nested_crash_manifest`]: it completed, every step
/// ran once, none started again after its completion was committed, and the
/// child completed once.
fn check_nested_run(store: &SqliteStore, run: &RunId) {
    let (_, events) = store.load(run).unwrap();
    assert!(
        matches!(events.last(), Some(Event::RunCompleted { output, .. }) if *output == json!("done")),
        "run {run}: {:?}",
        events.last()
    );
    let mut execs: HashMap<String, usize> = HashMap::new();
    let mut completed: HashMap<String, usize> = HashMap::new();
    for event in &events {
        match event {
            Event::StepStarted { path, .. } => assert!(
                !completed.contains_key(path.as_str()),
                "run {run}: `{path}` started again after its completion was committed"
            ),
            Event::StepCompleted { path, .. } => {
                *completed.entry(path.to_string()).or_default() += 1;
            }
            Event::Custom { event, .. } => {
                *execs.entry(event.data.to_string()).or_default() += 1;
            }
            _ => {}
        }
    }
    let mut paths: Vec<&String> = completed.keys().collect();
    paths.sort();
    assert_eq!(paths, ["a", "b", "sub/x", "sub/y"], "run {run}");
    assert!(execs.values().all(|n| *n == 1), "run {run}: {execs:?}");
    let nodes = events
        .iter()
        .filter(|e| matches!(e, Event::NodeCompleted { path, .. } if path.as_str() == "sub"))
        .count();
    assert_eq!(nodes, 1, "run {run}: the child completed once");
}

#[test]
fn runs_killed_in_and_around_a_nested_workflow_recover_without_repeating_steps() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = nested_crash_manifest(dir.path());
    // Each of the 4 steps emits `exec` and hands the rest on.
    let mut input = json!("done");
    for step in ["b", "y", "x", "a"] {
        input =
            json!({"action": "emit", "events": [{"kind": "exec", "data": step}], "output": input});
    }
    let input = input.to_string();
    let db = dir.path().join("weft.db");
    let out = weft(home.path())
        .arg("validate")
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let store = SqliteStore::open(&db).unwrap();
    let mut recovered = 0;
    // Kill once the log reaches each possible length in turn: during the
    // child's steps, after its last step, and around the node's completion
    // (which commits in one transaction with the parent's next step, so the
    // parent can never miss the child's end).
    for target in 1..NESTED_EVENTS {
        // A kill that lands after the run ended (on a loaded machine the
        // run can get ahead of its watcher) is tried again on a new run.
        for attempt in 0..5 {
            let run = RunId::new(&format!("nested-{target}-{attempt}")).unwrap();
            let run_args = ["--input", input.as_str()];
            kill_when(
                home.path(),
                &manifest,
                &db,
                &run,
                &run_args,
                durability(target as usize),
                logged(target),
            );
            let interrupted = recover(home.path(), &db, durability(target as usize));
            check_nested_run(&store, &run);
            if interrupted > 0 {
                recovered += 1;
                break;
            }
        }
    }
    eprintln!(
        "{recovered} of {} kills interrupted a run",
        NESTED_EVENTS - 1
    );
    // The test means something only if most kills landed mid-run.
    assert!(
        recovered >= (NESTED_EVENTS as usize - 1) / 2,
        "only {recovered} kills interrupted a run"
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
}
