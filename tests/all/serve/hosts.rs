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
