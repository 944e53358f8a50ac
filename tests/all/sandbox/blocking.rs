//! Steps blocked in WASI: a conformance guest (`guest-examples/CONFORMANCE.md`,
//! action `sleep`) that sleeps through its language's standard library —
//! Rust `std::thread::sleep` or a `wasi:clocks` pollable, Python
//! `time.sleep`, Go `time.Sleep`, C `nanosleep` or `poll`, JavaScript
//! `setTimeout`, a clock pollable or a spin on `performance.now()` — for far longer than its
//! deadline ends as a `deadline` failure, on both runtimes, with and
//! without the `clocks` grant, in every language whose guest is built; steps blocked that way do not keep an
//! evented runtime's workers from other runs; a cancel interrupts a blocked
//! step, in process and from another process.
//!
//! Every wait is bounded by [`BOUND`]: a host that only stops a step once
//! its sleep returns fails these tests after the bound, loudly, instead of
//! passing late or hanging. Nothing here sleeps to wait, and no duration is
//! asserted beyond the bound: how soon after its deadline a blocked step
//! stops is the sandbox's own tests' and the benchmarks' business.

use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, FailureKind, RunId, RunResult, RunStatus};
use weft_manifest::Manifest;
use weft_runtime::{
    EventedRuntime, LeaseOptions, MemoryStore, NoObserver, Registered, Request, Runtime,
    RuntimeKind, SystemClock,
};
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};
use weft_store_sqlite::SqliteStore;

use crate::conformance::{component, required};
use crate::support::{Watched, cache_dir, stderr, weft};

/// How long a blocked step sleeps: a minute, twice [`BOUND`], so only a
/// step the host interrupted can settle in time.
const SLEEP_MS: u64 = 60_000;

/// The deadline of a sleeping step.
const DEADLINE_MS: u64 = 500;

/// How long a run blocked in WASI may take to settle once it is running
/// (components are loaded before the clock starts). 30 s is sixty times the
/// 500 ms deadline: a loaded 2-core machine (the rest of the suite and its
/// `weft` processes, this module's other guests, a debug-built host, a
/// spinning JavaScript guest beside them) delays the epoch thread, the
/// worker threads and the runtimes' own threads by far less than that, so
/// only a step the host does not interrupt reaches the bound. And it is half
/// of [`SLEEP_MS`]: a step that sleeps to the end never settles in time.
const BOUND: Duration = Duration::from_secs(30);

/// One sandbox for this module's runs, compiling through the suite's shared
/// on-disk cache (the Python and JavaScript guests take minutes to compile
/// in a debug-built host).
fn sandbox() -> &'static Sandbox {
    static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(cache_dir()),
            ..SandboxConfig::default()
        })
        .expect("the sandbox starts")
    });
    &SANDBOX
}

/// Whether `lang`'s conformance guest is built; a guest `guest-examples/build.sh`
/// builds must be.
fn present(lang: &str) -> bool {
    if component(lang).exists() {
        return true;
    }
    assert!(
        !required().contains(&lang),
        "{} is missing: run ./guest-examples/build.sh",
        component(lang).display()
    );
    eprintln!("skipped: no conformance-{lang} guest is built");
    false
}

/// The grants of a step: none, or the host's clocks. Without `clocks` the
/// guest sleeps on the sandbox's virtual clocks; with it, on the host's.
/// Either way a sleep of [`SLEEP_MS`] must end at the deadline. (Should the
/// sandbox decide that a sleep on the virtual clock advances it at once, a
/// step without the grant would complete instead: that expectation is then
/// the one to change, in [`ends_at_its_deadline`].)
const GRANT_SETS: [&[&str]; 2] = [&[], &["clocks"]];

/// The grants of the tests that need a step to be still asleep when they
/// act (the cancel tests, and the workers test): the host's clocks, whose
/// sleeps take real time whatever the sandbox does with virtual ones.
const CLOCKS: &[&str] = &["clocks"];

/// The text of a workflow of one step, `nap`, running `lang`'s conformance
/// guest with `grants` and a deadline of `deadline_ms` (and no retries: a
/// deadline failure fails the run at once).
fn manifest_text(lang: &str, grants: &[&str], deadline_ms: u64) -> String {
    format!(
        "id = \"blocked\"\nflow = [{{ step = \"nap\" }}]\n\n[steps.nap]\ncomponent = \"{}\"\n\
         grants = {grants:?}\nlimits = {{ deadline-ms = {deadline_ms} }}\n",
        component(lang).display()
    )
}

/// [`manifest_text`]'s workflow, its component loaded.
fn registered(lang: &str, grants: &[&str], deadline_ms: u64) -> Arc<Registered> {
    let name = format!("blocked-{lang}.toml");
    let manifest =
        Manifest::from_toml_str(&manifest_text(lang, grants, deadline_ms), Path::new(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    let steps = WorkflowSteps::load(sandbox(), manifest.workflow())
        .unwrap_or_else(|e| panic!("conformance-{lang} loads: {e}"));
    Arc::new(Registered {
        workflow: manifest.workflow().clone(),
        runner: Arc::new(steps),
        manifest: name,
        manifest_sha256: "0".repeat(64),
        workflow_digest: None,
    })
}

/// The `sleep` action's input.
fn sleep(ms: u64, via: Option<&str>) -> Value {
    let mut input = json!({"action": "sleep", "ms": ms});
    if let Some(via) = via {
        input["via"] = json!(via);
    }
    input
}

/// The `transform` action's input, and what it completes with (state empty).
fn ordinary() -> (Value, Value) {
    (
        json!({"action": "transform", "text": "abc", "n": 2}),
        json!({"text": "ABC", "n": 4, "count": 1}),
    )
}

fn run_id(text: &str) -> RunId {
    RunId::new(text).unwrap()
}

/// Starts a run on a thread of its own, over a fresh memory store and the
/// real clock; the receiver gets its result (after the runtime has shut
/// down: an evented runtime's workers joined). A run that never settles
/// leaves its thread behind, blocked, until the test binary exits.
fn spawn_run(
    kind: RuntimeKind,
    registered: &Arc<Registered>,
    id: &str,
    input: Value,
) -> Receiver<Result<RunResult, String>> {
    let (sender, receiver) = mpsc::channel();
    let registered = registered.clone();
    let id = run_id(id);
    std::thread::Builder::new()
        .name(format!("{id} on the {kind} runtime"))
        .spawn(move || {
            let runtime = runtime(kind, 2);
            let result = runtime.call(
                Request::Start {
                    workflow: registered,
                    run: id,
                    input,
                    detach: false,
                },
                &mut NoObserver,
            );
            drop(runtime);
            let _ = sender.send(result.map_err(|e| e.to_string()));
        })
        .expect("spawn a run's thread");
    receiver
}

/// A runtime of `kind` over a fresh memory store and the real clock, with
/// `workers` threads.
fn runtime(kind: RuntimeKind, workers: usize) -> Box<dyn Runtime> {
    kind.build(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        workers,
        LeaseOptions::default(),
    )
}

fn start(registered: &Arc<Registered>, id: &str, input: Value) -> Request {
    Request::Start {
        workflow: registered.clone(),
        run: run_id(id),
        input,
        detach: false,
    }
}

/// What `receiver` gets by `until`; fails the test, naming `what`, after it.
#[track_caller]
fn settled<T>(what: &str, receiver: &Receiver<T>, until: Instant) -> T {
    match receiver.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!(
            "{what}: not settled within {BOUND:?} of its start: the host is still waiting \
             for a step blocked in WASI (it sleeps {SLEEP_MS} ms)"
        ),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: its thread panicked"),
    }
}

/// A run that failed at once because its one step `nap` hit its deadline.
#[track_caller]
fn assert_deadline(what: &str, result: &RunResult) {
    assert_eq!(result.status, RunStatus::Failed, "{what}: {result:#?}");
    let error = result.error.as_ref().expect("a failed run has an error");
    assert_eq!(error.error.kind, FailureKind::Deadline, "{what}: {error:?}");
    assert_eq!(
        error.step.as_ref().map(ToString::to_string).as_deref(),
        Some("nap"),
        "{what}: {error:?}"
    );
    let attempts: Vec<u32> = result.steps.iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [1], "{what}: one attempt, no retry");
}

/// `lang`'s guest sleeping [`SLEEP_MS`] (through `via`) with a
/// [`DEADLINE_MS`] deadline fails the run with `deadline` within
/// [`BOUND`], on both runtimes, with each of [`GRANT_SETS`], all at once.
fn ends_at_its_deadline(lang: &str, via: Option<&str>) {
    if !present(lang) {
        return;
    }
    let how = via.unwrap_or("its standard library");
    let mut runs: Vec<(String, Receiver<_>)> = Vec::new();
    for grants in GRANT_SETS {
        let registered = registered(lang, grants, DEADLINE_MS);
        for runtime in RuntimeKind::ALL {
            let what = format!(
                "conformance-{lang} sleeping through {how}, granted {grants:?}, on the \
                 {runtime} runtime"
            );
            let id = format!("blocked-{lang}-{}", via.unwrap_or("std"));
            let run = spawn_run(runtime, &registered, &id, sleep(SLEEP_MS, via));
            runs.push((what, run));
        }
    }
    let until = Instant::now() + BOUND;
    for (what, receiver) in &runs {
        let result = settled(what, receiver, until).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_deadline(what, &result);
    }
}

#[test]
fn rust_thread_sleep_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("rust", None);
}

#[test]
fn rust_blocking_on_a_clock_pollable_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("rust", Some("pollable"));
}

#[test]
fn python_time_sleep_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("python", None);
}

#[test]
fn go_time_sleep_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("go", None);
}

#[test]
fn c_nanosleep_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("c", None);
}

#[test]
fn c_poll_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("c", Some("poll"));
}

#[test]
fn js_awaiting_set_timeout_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("js", None);
}

#[test]
fn js_blocking_on_a_clock_pollable_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("js", Some("pollable"));
}

/// Guest code the whole time, which the epoch deadline has always stopped:
/// the control beside the blocking `via`s.
#[test]
fn js_spinning_on_the_monotonic_clock_ends_at_its_deadline_on_both_runtimes() {
    ends_at_its_deadline("js", Some("spin"));
}

/// Collects the result of each of `runs` (started on `runtime`) within
/// [`BOUND`] of now. If one does not settle in time, its worker is still
/// blocked: `runtime` is leaked rather than dropped (dropping it joins its
/// workers, which would wait for the sleep), and the test fails.
fn collect(
    runtime: impl Sized,
    runs: Vec<(
        String,
        crossbeam_channel::Receiver<Result<RunResult, weft_runtime::RuntimeError>>,
    )>,
) -> Vec<(String, RunResult)> {
    let until = Instant::now() + BOUND;
    let mut results = Vec::new();
    for (what, receiver) in runs {
        match receiver.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Ok(result)) => results.push((what, result)),
            Ok(Err(e)) => {
                std::mem::forget(runtime);
                panic!("{what}: {e}");
            }
            Err(e) => {
                std::mem::forget(runtime);
                panic!(
                    "{what}: not settled within {BOUND:?} ({e}): a worker is still blocked \
                     in a step that sleeps {SLEEP_MS} ms"
                );
            }
        }
    }
    drop(runtime);
    results
}

/// Two workers (the evented runtime's, or the default runtime's threads
/// for submitted runs), four runs whose steps block in WASI far past their
/// deadline, and an ordinary run queued behind them: every blocked step
/// frees its thread at its deadline, so all five settle — the sleepers as
/// `deadline` failures, the ordinary run with its output.
#[test]
fn blocked_steps_free_their_workers_for_an_ordinary_run() {
    assert!(present("rust"));
    let registered = registered("rust", CLOCKS, DEADLINE_MS);
    for kind in RuntimeKind::ALL {
        let runtime = runtime(kind, 2);
        let mut runs = Vec::new();
        for (i, via) in [None, Some("pollable"), None, Some("pollable")]
            .into_iter()
            .enumerate()
        {
            let what = format!("{kind}: sleeper {i} ({})", via.unwrap_or("thread::sleep"));
            let input = sleep(SLEEP_MS, via);
            let id = format!("sleeper-{i}");
            runs.push((what, runtime.submit(start(&registered, &id, input), None)));
        }
        let (input, output) = ordinary();
        runs.push((
            format!("{kind}: the ordinary run"),
            runtime.submit(start(&registered, "ordinary", input), None),
        ));
        let results = collect(runtime, runs);
        let (ordinary, sleepers) = results.split_last().unwrap();
        for (what, result) in sleepers {
            assert_deadline(what, result);
        }
        let (what, result) = ordinary;
        assert_eq!(result.status, RunStatus::Success, "{what}: {result:#?}");
        assert_eq!(result.output.as_ref(), Some(&output), "{what}");
    }
}

/// The deadline of a step a test cancels: as long as its sleep, so only the
/// cancel can end it in time.
const CANCELED_DEADLINE_MS: u64 = SLEEP_MS;

/// The evented runtime with ONE worker: a run whose step blocks in WASI is
/// canceled while the step sleeps; the run settles canceled, and the worker
/// is free for the next run within [`BOUND`] — the cancel interrupted the
/// step rather than waiting out its sleep or its (as long) deadline.
#[test]
fn cancel_interrupts_a_blocked_step_and_frees_its_worker() {
    assert!(present("rust"));
    let registered = registered("rust", CLOCKS, CANCELED_DEADLINE_MS);
    let store = Arc::new(MemoryStore::new());
    // Leaked if the test fails: dropping it would join its worker, which
    // would wait for the sleep.
    let runtime = ManuallyDrop::new(Arc::new(EventedRuntime::new(
        store.clone(),
        Arc::new(SystemClock),
        1,
    )));
    let id = run_id("canceled-asleep");
    let (watch, events) = crossbeam_channel::unbounded();
    let blocked = runtime.submit(
        start(&registered, id.as_str(), sleep(SLEEP_MS, None)),
        Some(watch),
    );
    let until = Instant::now() + BOUND;
    loop {
        match events.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::StepStarted { .. }) => break,
            Ok(_) => {}
            Err(e) => panic!("the step was not seen starting within {BOUND:?}: {e}"),
        }
    }

    // The cancel, on a thread of its own: it must not wait for the step.
    let (sender, canceled) = mpsc::channel();
    {
        let (runtime, registered, id) = (Arc::clone(&runtime), registered.clone(), id.clone());
        std::thread::spawn(move || {
            let cancel = Request::Cancel {
                workflow: registered,
                run: id,
                reason: Some("enough".into()),
            };
            let result = runtime.call(cancel, &mut NoObserver);
            drop(runtime);
            let _ = sender.send(result.map_err(|e| e.to_string()));
        });
    }
    let until = Instant::now() + BOUND;
    let result = settled("the cancel", &canceled, until).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        result.status,
        RunStatus::Canceled,
        "the cancel: {result:#?}"
    );

    // The next run needs the one worker.
    let (input, output) = ordinary();
    let next = runtime.submit(start(&registered, "after-the-cancel", input), None);
    let runtime = Arc::into_inner(ManuallyDrop::into_inner(runtime))
        .expect("the cancel's thread let go of the runtime");
    let mut results = collect(
        runtime,
        vec![
            ("the canceled run".to_owned(), blocked),
            ("the run after the cancel".to_owned(), next),
        ],
    );
    let (what, after) = results.pop().unwrap();
    assert_eq!(after.status, RunStatus::Success, "{what}: {after:#?}");
    assert_eq!(after.output.as_ref(), Some(&output), "{what}");
    let (what, canceled) = results.pop().unwrap();
    assert_eq!(
        canceled.status,
        RunStatus::Canceled,
        "{what}: {canceled:#?}"
    );
    let stored = store.load(&id).unwrap().1;
    assert!(
        matches!(stored.last(), Some(Event::RunCanceled { .. })),
        "{stored:#?}"
    );
    assert!(
        !stored
            .iter()
            .any(|e| matches!(e, Event::StepCompleted { .. })),
        "the sleep must not complete: {stored:#?}"
    );
}

/// The real thing: `weft run` of a step blocked in WASI, and `weft cancel`
/// from another process while it sleeps. The canceler and the driver both
/// report the cancellation (exit 4), the driver within [`BOUND`] of the
/// cancel, on both runtimes.
#[test]
fn weft_cancel_from_another_process_interrupts_a_blocked_step_on_both_runtimes() {
    assert!(present("rust"));
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("blocked.toml");
    std::fs::write(
        &manifest,
        manifest_text("rust", CLOCKS, CANCELED_DEADLINE_MS),
    )
    .unwrap();
    let db = dir.path().join("weft.db");
    let input = sleep(SLEEP_MS, None).to_string();
    for runtime in ["evented", "default"] {
        let id = format!("blocked-{runtime}");
        let mut command = weft(home.path());
        command
            .arg("run")
            .arg(&manifest)
            .args([
                "--runtime",
                runtime,
                "--run-id",
                &id,
                "--input",
                &input,
                "--db",
            ])
            .arg(&db);
        let mut driver = Watched::spawn(command);
        // Loading (compiling) the component comes first, unbounded here.
        driver
            .until(|e| matches!(e, Event::StepStarted { .. }))
            .unwrap_or_else(|| panic!("{runtime}: weft run ended before its step started"));
        let out = weft(home.path())
            .args(["cancel", &id, "--reason", "enough", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{runtime}: {}", stderr(&out));
        assert_eq!(
            driver.exit_code_within(BOUND),
            Some(4),
            "{runtime}: weft run's exit"
        );
        let stored = SqliteStore::open(&db)
            .unwrap()
            .load(&run_id(&id))
            .unwrap()
            .1;
        assert!(
            matches!(stored.last(), Some(Event::RunCanceled { .. })),
            "{runtime}: {stored:#?}"
        );
        assert!(
            !stored
                .iter()
                .any(|e| matches!(e, Event::StepCompleted { .. })),
            "{runtime}: the sleep must not complete: {stored:#?}"
        );
    }
}
