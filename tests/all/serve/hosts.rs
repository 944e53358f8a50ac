//! Servers as hosts: killed -9 and started again, terminated gracefully,
//! two on one store, and `weft run` beside one.

use super::*;

#[test]
fn a_server_killed_mid_run_finishes_it_after_a_restart() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Three seconds: long enough to kill the server inside the sleep.
    const SLEEP_MS: u64 = 3_000;
    let manifest = sleepy(dir.path(), SLEEP_MS);
    let server = Server::start(home.path(), &[]);
    server.deploy(&manifest);
    let (status, run) = server.post(
        "/v1/runs",
        &json!({"workflow": "sleepy", "input": sleepy_input(), "run_id": "asleep"}),
    );
    assert_eq!(status, 201, "{run}");
    let (_, slept) = server
        .stream("asleep", 0)
        .until(|e| matches!(e, Event::SleepStarted { .. }));
    let Event::SleepStarted { until, .. } = slept else {
        unreachable!()
    };
    server.kill(); // SIGKILL, mid-sleep
    let before = stored_events(home.path(), "asleep");
    // A new server on the same store takes the run over at start-up and
    // wakes it at its recorded time.
    let server = Server::start(home.path(), &[]);
    let (_, end) = server.stream("asleep", 0).until_end();
    assert_eq!(end["status"], "success");
    let after = stored_events(home.path(), "asleep");
    assert_eq!(after[..before.len()], before[..], "recovery appends only");
    let count = |what: &dyn Fn(&Event) -> bool| after.iter().filter(|e| what(e)).count();
    assert_eq!(count(&|e| matches!(e, Event::SleepStarted { .. })), 1);
    let woke = after
        .iter()
        .find(|e| matches!(e, Event::NodeCompleted { path, .. } if path.as_str() == "nap"))
        .expect("the sleep ended");
    assert!(woke.at() >= until, "woke before its time");
    for step in ["a", "b"] {
        let execs =
            count(&|e| matches!(e, Event::Custom { event, .. } if event.data == json!(step)));
        assert_eq!(execs, 1, "step {step} ran {execs} times");
    }
    let (_, run) = server.get("/v1/runs/asleep");
    assert_eq!(run["output"], "woke");
}

#[test]
fn a_terminated_server_lets_sleeping_runs_go_and_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = sleepy(dir.path(), 600_000);
    let server = Server::start(home.path(), &[]);
    server.deploy(&manifest);
    let (status, _) = server.post(
        "/v1/runs",
        &json!({"workflow": "sleepy", "input": sleepy_input(), "run_id": "long-nap"}),
    );
    assert_eq!(status, 201);
    server
        .stream("long-nap", 0)
        .until(|e| matches!(e, Event::SleepStarted { .. }));
    let log_of = server.home.join("server.log");
    assert_eq!(server.terminate(), Some(0));
    let log = std::fs::read_to_string(log_of).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    // The run waits in the store, held by nobody, for the next host.
    let out = weft(home.path()).args(["runs", "--json"]).output().unwrap();
    let runs: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(runs[0]["run_id"], "long-nap");
    assert_eq!(runs[0]["status"], "running");
    assert!(runs[0].get("held_by").is_none(), "{runs}");
    // The next server takes it over and can cancel it.
    let server = Server::start(home.path(), &[]);
    let (status, canceled) = server.post("/v1/runs/long-nap/cancel", &json!({}));
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
}

/// A terminated server starts no new attempt: the one in flight finishes
/// and is recorded, the run is let go where it stands, and the next server
/// carries it on from there — no attempt run twice.
#[test]
fn a_terminated_server_stops_starting_steps_and_the_next_one_carries_on() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A thousand iterations: far more than run between the signal and the
    // exit, however loaded the machine (each is a commit and an attempt).
    const ITERATIONS: u64 = 1_000;
    let manifest = dir.path().join("counter.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"counter\"\nflow = [{{ dountil = [{{ step = \"t\", id = \"inc\" }}], until = \"output.n >= {ITERATIONS}\", id = \"count\" }}]\n\
             [steps.t]\ncomponent = \"{}\"\n",
            crate::support::guest("test-steps").display()
        ),
    )
    .unwrap();
    // A grace far longer than the whole run: only the drain ends it early.
    let server = Server::start(home.path(), &["--grace", "600s"]);
    server.deploy(&manifest);
    let (status, run) = server.post(
        "/v1/runs",
        &json!({"workflow": "counter", "input": {"action": "increment", "n": 0}, "run_id": "counting"}),
    );
    assert_eq!(status, 201, "{run}");
    server.stream("counting", 0).until(
        |e| matches!(e, Event::StepCompleted { path, .. } if path.as_str() == "count#5/inc"),
    );
    assert_eq!(server.terminate(), Some(0));
    let before = stored_events(home.path(), "counting");
    let started = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::StepStarted { .. }))
            .count()
    };
    let ended = before
        .iter()
        .filter(|e| matches!(e, Event::StepCompleted { .. } | Event::StepFailed { .. }))
        .count();
    assert_eq!(started(&before), ended, "an attempt was left in flight");
    assert!(
        (started(&before) as u64) < ITERATIONS,
        "the run went on to its end after the signal"
    );
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, Event::RunCompleted { .. })),
        "the run went on to its end after the signal"
    );
    let server = Server::start(home.path(), &[]);
    let (_, end) = server.stream("counting", 0).until_end();
    assert_eq!(end["status"], "success");
    let after = stored_events(home.path(), "counting");
    assert_eq!(
        after[..before.len()],
        before[..],
        "the next server only appends"
    );
    assert_eq!(
        started(&after) as u64,
        ITERATIONS,
        "each iteration ran once"
    );
    let (_, run) = server.get("/v1/runs/counting");
    assert_eq!(run["output"]["n"], ITERATIONS);
}

/// Two servers on one store: a run whose server is killed is taken over by
/// the other once its lease runs out, with no restart, and finishes there;
/// and a run `weft run --detach` left asleep is woken by a server when due.
#[test]
fn servers_and_cli_runs_share_one_store_safely() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = sleepy(dir.path(), 1_500);
    // A short lease: the survivor may take the run 1 s after the last renewal.
    let ttl = ["--lease-ttl", "1s"];
    let first = Server::start(home.path(), &ttl);
    let second = Server::start(home.path(), &ttl);
    first.deploy(&manifest);
    let (status, _) = first.post(
        "/v1/runs",
        &json!({"workflow": "sleepy", "input": sleepy_input(), "run_id": "orphaned"}),
    );
    assert_eq!(status, 201);
    first
        .stream("orphaned", 0)
        .until(|e| matches!(e, Event::SleepStarted { .. }));
    first.kill();
    // The second server's event stream sees it through.
    let (_, end) = second.stream("orphaned", 0).until_end();
    assert_eq!(end["status"], "success");
    let events = stored_events(home.path(), "orphaned");
    for step in ["a", "b"] {
        let execs = events
            .iter()
            .filter(|e| matches!(e, Event::Custom { event, .. } if event.data == json!(step)))
            .count();
        assert_eq!(execs, 1, "step {step} ran {execs} times");
    }
    // `weft run --detach` beside the server: it returns once the run
    // sleeps, and the server wakes it.
    let out = weft(home.path())
        .arg("run")
        .arg(&manifest)
        .args([
            "--input",
            &sleepy_input().to_string(),
            "--run-id",
            "detached",
            "--detach",
        ])
        .args(ttl)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, end) = second.stream("detached", 0).until_end();
    assert_eq!(end["status"], "success");
    let (_, run) = second.get("/v1/runs/detached");
    assert_eq!(run["output"], "woke");
}
