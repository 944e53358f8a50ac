//! The API's routes end to end: a deploy, starts (waiting, idempotent),
//! runs and events (pages, SSE with `Last-Event-ID`), resume, cancel,
//! rerun, and the metrics.

use super::*;

#[test]
fn a_deployed_workflow_runs_through_the_api() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    let deployed = server.deploy(&example());
    assert_eq!(deployed["id"], "order-approval");
    assert_eq!(deployed["new"], true);
    let digest = deployed["digest"].as_str().unwrap().to_owned();
    // The same bytes again: no new version.
    let again = server.deploy(&example());
    assert_eq!(
        (again["digest"].as_str(), &again["new"]),
        (Some(&*digest), &json!(false))
    );
    let (status, listed) = server.get("/v1/workflows");
    assert_eq!(status, 200);
    assert_eq!(listed["workflows"][0]["id"], "order-approval");
    assert_eq!(listed["workflows"][0]["versions"], 1);
    let (status, versions) = server.get("/v1/workflows/order-approval");
    assert_eq!(status, 200);
    assert_eq!(versions["versions"][0]["digest"], json!(digest));

    // Start and wait for the result: the same JSON as `weft run --json`.
    let (status, run) = server.post(
        "/v1/runs?wait=60s",
        &json!({"workflow": "order-approval", "input": small_order(), "run_id": "small-1"}),
    );
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["run_id"], "small-1");
    assert_eq!(run["workflow_id"], "order-approval");
    assert_eq!(run["status"], "success");
    assert_eq!(run["output"]["notified"], true);
    let addresses: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["validate", "reserve", "approve", "charge", "notify"]
    );
    // The stored run reads the same through the API and the CLI.
    let (status, fetched) = server.get("/v1/runs/small-1");
    assert_eq!(status, 200);
    assert_eq!(fetched, run);
    let out = weft(home.path())
        .args(["status", "small-1", "--json"])
        .output()
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap(), run);
    // Events a page at a time, as `weft events --json` prints them.
    let (status, first) = server.get("/v1/runs/small-1/events?limit=3");
    assert_eq!(status, 200);
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    assert_eq!(first["events"][0]["type"], "run-started");
    assert_eq!(first["next"], 3);
    let (_, rest) = server.get("/v1/runs/small-1/events?after=3&limit=1000");
    let out = weft(home.path())
        .args(["events", "small-1", "--json"])
        .output()
        .unwrap();
    let cli: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let api: Vec<Value> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["events"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(api, cli);
    // An SSE stream of a settled run replays it and ends.
    let (events, end) = server.stream("small-1", 0).until_end();
    assert_eq!(events.len(), cli.len());
    assert_eq!(
        events.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (1..=cli.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(end["status"], "success");
    // The metrics count what happened.
    let response = server
        .agent
        .get(format!("{}/metrics", server.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let metrics = response.into_body().read_to_string().unwrap();
    for line in [
        "weft_runs{status=\"success\"} 1",
        "weft_events_total{type=\"step-completed\"} 5",
        "weft_runs_claimable 0",
        "weft_attempts_in_flight 0",
        "weft_step_seconds_count{outcome=\"success\"} 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("weft_commit_seconds_count"), "{metrics}");
    // A start without `wait` answers once the run exists (201, running or
    // further).
    let (status, started) = server.post(
        "/v1/runs",
        &json!({"workflow": "order-approval", "input": small_order()}),
    );
    assert_eq!(status, 201, "{started}");
    assert!(started["run_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[test]
fn starts_are_idempotent_and_runs_page_with_a_cursor() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    server.deploy(&example());
    let body = json!({"workflow": "order-approval", "input": small_order()});
    let key = [("Idempotency-Key", "order-1001-attempt")];
    let (first_status, first) = server.post_with("/v1/runs?wait=60s", &body, &key);
    assert_eq!(first_status, 201, "{first}");
    // The same key and body: the same run, not a second one.
    let (status, second) = server.post_with("/v1/runs?wait=60s", &body, &key);
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["run_id"], first["run_id"]);
    // The same key with another body: a conflict.
    let other = json!({"workflow": "order-approval", "input": big_order()});
    let (status, problem) = server.post_with("/v1/runs", &other, &key);
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "urn:weft:problem:conflict");
    // So is an explicit run id.
    let named = json!({"workflow": "order-approval", "input": small_order(), "run_id": "named"});
    assert_eq!(server.post("/v1/runs?wait=60s", &named).0, 201);
    assert_eq!(server.post("/v1/runs", &named).0, 200);
    let mut renamed = named.clone();
    renamed["input"] = big_order();
    assert_eq!(server.post("/v1/runs", &renamed).0, 409);

    // Five runs in all, listed newest first two at a time.
    for i in 0..3 {
        let body = json!({"workflow": "order-approval", "input": small_order(), "run_id": format!("page-{i}")});
        assert_eq!(server.post("/v1/runs?wait=60s", &body).0, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/runs?limit=2&cursor={c}"),
            None => "/v1/runs?limit=2".to_owned(),
        };
        let (status, page) = server.get(&path);
        assert_eq!(status, 200, "{page}");
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= 2);
        seen.extend(
            runs.iter()
                .map(|r| r["run_id"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(&seen[..3], ["page-2", "page-1", "page-0"]);
    let (_, filtered) = server.get("/v1/runs?status=success&workflow=order-approval&limit=1000");
    assert_eq!(filtered["runs"].as_array().unwrap().len(), 5);
    let (_, none) = server.get("/v1/runs?status=failed");
    assert!(none["runs"].as_array().unwrap().is_empty());
    let (_, future) = server.get("/v1/runs?since=2999-01-01T00:00:00Z");
    assert!(future["runs"].as_array().unwrap().is_empty());
}

#[test]
fn a_suspended_run_resumes_through_the_api_while_a_stream_follows_it() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    server.deploy(&example());
    let (status, run) = server.post(
        "/v1/runs?wait=60s",
        &json!({"workflow": "order-approval", "input": big_order(), "run_id": "big"}),
    );
    assert_eq!(status, 201);
    assert_eq!(run["status"], "suspended");
    assert_eq!(run["suspended"][0]["labels"][0], "manager-approval");
    let (_, page) = server.get("/v1/runs/big/events?limit=1000");
    let seen = page["next"].as_u64().unwrap();
    // Data that fails the resume schema: refused, the run unchanged.
    let (status, problem) = server.post(
        "/v1/runs/big/resume",
        &json!({"label": "manager-approval", "data": {"approved": true}}),
    );
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["type"], "urn:weft:problem:invalid-input");
    assert!(
        problem["detail"].as_str().unwrap().contains("approver"),
        "{problem}"
    );
    let (status, problem) = server.post(
        "/v1/runs/big/resume",
        &json!({"step": "charge", "data": {}}),
    );
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "urn:weft:problem:not-suspended");
    // A stream resuming after the last event seen sees the resume and
    // what follows, then the end.
    let (status, resumed) = server.post(
        "/v1/runs/big/resume",
        &json!({"label": "manager-approval", "data": {"approved": true, "approver": "dana"}}),
    );
    assert!(status == 200 || status == 202, "{status} {resumed}");
    let stream = server.stream("big", seen);
    let (events, end) = stream.until_end();
    assert_eq!(events[0].0, seen + 1);
    assert!(
        matches!(events[0].1, Event::RunResumed { .. }),
        "{:?}",
        events[0]
    );
    assert!(matches!(
        events.last().unwrap().1,
        Event::RunCompleted { .. }
    ));
    assert_eq!(end["status"], "success");
    // Resuming it again: not suspended, with the CLI's words.
    let (status, problem) = server.post("/v1/runs/big/resume", &json!({"data": {}}));
    assert_eq!(status, 409);
    assert_eq!(
        problem["detail"],
        "run big is not suspended (status: success)"
    );
}

#[test]
fn cancel_and_rerun_go_through_the_api() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    server.deploy(&example());
    let (_, run) = server.post(
        "/v1/runs?wait=60s",
        &json!({"workflow": "order-approval", "input": big_order(), "run_id": "to-cancel"}),
    );
    assert_eq!(run["status"], "suspended");
    let (status, canceled) = server.post(
        "/v1/runs/to-cancel/cancel",
        &json!({"reason": "customer called"}),
    );
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let (status, problem) = server.post("/v1/runs/to-cancel/cancel", &json!({}));
    assert_eq!(status, 409, "{problem}");
    // Time travel from `approve` with a small order's total: a new run.
    let (status, rerun) = server.post(
        "/v1/runs/to-cancel/rerun?wait=60s",
        &json!({"from": "approve", "run_id": "rerun-1"}),
    );
    assert!(status == 201, "{status} {rerun}");
    assert_eq!(rerun["run_id"], "rerun-1");
    assert_eq!(rerun["status"], "suspended", "{rerun}");
    let (status, problem) =
        server.post("/v1/runs/to-cancel/rerun", &json!({"from": "no-such-step"}));
    assert_eq!(status, 400, "{problem}");
}
