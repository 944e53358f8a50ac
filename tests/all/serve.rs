//! `weft serve` end to end, through a real HTTP client on loopback (ports
//! chosen by the OS): deploys, every route and error type, idempotent
//! starts, cursor paging, SSE with `Last-Event-ID`, a server killed -9 and
//! started again, a graceful shutdown, and the OpenAPI document.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::{Event, EventStore as _, RunId};
use weft_store_sqlite::SqliteStore;

use crate::support::{guest, stderr, stdout, weft};

const EXAMPLE: &str = "examples/order-approval/workflow.toml";
const TOKEN: &str = "test-token-0123456789abcdef";

/// Every bounded wait of these tests: far above what anything takes here
/// (a loaded 2-core machine included), so only a hang reaches it.
const BOUND: Duration = Duration::from_secs(120);

/// A `weft serve` process on 127.0.0.1, port chosen by the OS, killed
/// (SIGKILL) when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    url: String,
    home: PathBuf,
    agent: ureq::Agent,
}

impl Server {
    /// Starts a server with `home` (its store is `home/weft.db`).
    pub(crate) fn start(home: &Path, extra: &[&str]) -> Self {
        let token_file = home.join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("server.log"))
            .unwrap();
        let mut child = weft(home)
            .args(["serve", "--listen", "127.0.0.1:0", "--print-address"])
            .arg("--token-file")
            .arg(&token_file)
            .args(["--log", "info"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("weft serve starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let url = lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|e| panic!("the server printed no address ({e})"));
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(BOUND))
            .build()
            .into();
        Self {
            child: Some(child),
            url,
            home: home.to_owned(),
            agent,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("server.log")).unwrap_or_default()
    }

    fn answer(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, Value, String) {
        let mut response = sent.unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.log()));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.body_mut().read_to_string().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, body, content_type)
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let (status, body, _) = self.answer(
            self.agent
                .get(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .call(),
        );
        (status, body)
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(path, body, &[])
    }

    fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {TOKEN}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (status, body, _) = self.answer(request.send_json(body));
        (status, body)
    }

    /// `weft deploy` of `manifest` to this server.
    pub(crate) fn deploy(&self, manifest: &Path) -> Value {
        let out = weft(&self.home)
            .arg("deploy")
            .arg(manifest)
            .args(["--server", &self.url, "--json"])
            .env("WEFT_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    /// The run's SSE stream from after event `after`: events as they come.
    fn stream(&self, run: &str, after: u64) -> Stream {
        let response = self
            .agent
            .get(format!("{}/v1/runs/{run}/events", self.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Accept", "text/event-stream")
            .header("Last-Event-ID", after.to_string())
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let reader = response.into_body().into_reader();
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut id, mut kind, mut data) = (None, None, String::new());
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if line.is_empty() {
                    if !data.is_empty() {
                        let message = (id.take(), kind.take(), std::mem::take(&mut data));
                        if sender.send(message).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                if let Some(value) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                    id = value.trim().parse::<u64>().ok();
                } else if let Some(value) = line.strip_prefix("event:") {
                    kind = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
        });
        Stream { messages }
    }

    /// Sends SIGKILL and reaps the process.
    fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit code.
    fn terminate(mut self) -> Option<i32> {
        let child = self.child.take().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: signalling our own child process.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        finish_within(child, BOUND).status.code()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit and collects its output, failing the test
/// after `bound`.
fn finish_within(child: Child, bound: Duration) -> std::process::Output {
    let (sender, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    done.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("the process did not exit within {bound:?}"))
        .unwrap()
}

/// An SSE stream's messages: (id, event type, data).
struct Stream {
    messages: Receiver<(Option<u64>, Option<String>, String)>,
}

impl Stream {
    /// Run events until the `end` event; returns them (with their ids) and
    /// the end's data.
    fn until_end(&self) -> (Vec<(u64, Event)>, Value) {
        let deadline = Instant::now() + BOUND;
        let mut events = Vec::new();
        loop {
            match self
                .messages
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok((_, Some(kind), data)) if kind == "end" => {
                    return (events, serde_json::from_str(&data).unwrap());
                }
                Ok((Some(id), _, data)) => {
                    events.push((id, serde_json::from_str(&data).unwrap()));
                }
                Ok(other) => panic!("unexpected message {other:?}"),
                Err(RecvTimeoutError::Timeout) => panic!("no end event in {BOUND:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the stream closed before its end"),
            }
        }
    }

    /// The next run event `found` accepts.
    fn until(&self, mut found: impl FnMut(&Event) -> bool) -> (u64, Event) {
        let deadline = Instant::now() + BOUND;
        loop {
            match self
                .messages
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok((Some(id), _, data)) => {
                    let event: Event = serde_json::from_str(&data).unwrap();
                    if found(&event) {
                        return (id, event);
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("no awaited event: {e:?}"),
            }
        }
    }
}

fn small_order() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string("examples/order-approval/small-order.json")
            .or_else(|_| {
                std::fs::read_to_string(
                    crate::support::root().join("examples/order-approval/small-order.json"),
                )
            })
            .unwrap(),
    )
    .unwrap()
}

fn big_order() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(
            crate::support::root().join("examples/order-approval/big-order.json"),
        )
        .unwrap(),
    )
    .unwrap()
}

fn example() -> PathBuf {
    crate::support::root().join(EXAMPLE)
}

/// `a`, a sleep of `sleep_ms`, then `b`; each step emits `exec`.
fn sleepy(dir: &Path, sleep_ms: u64) -> PathBuf {
    let text = format!(
        "id = \"sleepy\"\nflow = [{{ step = \"a\" }}, {{ sleep-ms = {sleep_ms}, id = \"nap\" }}, {{ step = \"b\" }}]\n\
         [steps.a]\ncomponent = \"{c}\"\n[steps.b]\ncomponent = \"{c}\"\n",
        c = guest("test-steps").display()
    );
    let path = dir.join("sleepy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sleepy_input() -> Value {
    json!({
        "action": "emit", "events": [{"kind": "exec", "data": "a"}],
        "output": {"action": "emit", "events": [{"kind": "exec", "data": "b"}], "output": "woke"},
    })
}

fn stored_events(home: &Path, run: &str) -> Vec<Event> {
    SqliteStore::open(&home.join("weft.db"))
        .unwrap()
        .load(&RunId::new(run).unwrap())
        .unwrap()
        .1
}

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

#[test]
fn errors_are_problem_documents() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    // No token, a wrong token: 401 with WWW-Authenticate.
    for token in [None, Some("wrong-token-0123456789")] {
        let mut request = server.agent.get(format!("{}/v1/runs", server.url));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.call().unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Bearer"
        );
        let (_, problem, content_type) = server.answer(Ok(response));
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["type"], "urn:weft:problem:unauthorized");
    }
    // The probes need no token.
    let (status, _, _) = server.answer(server.agent.get(format!("{}/healthz", server.url)).call());
    assert_eq!(status, 200);
    let cases: Vec<(&str, Option<Value>, u16, &str)> = vec![
        ("/v1/runs/ghost", None, 404, "not-found"),
        ("/v1/runs/ghost/events", None, 404, "not-found"),
        ("/v1/runs/ghost/cancel", Some(json!({})), 404, "not-found"),
        ("/v1/runs/ghost/resume", Some(json!({})), 404, "not-found"),
        (
            "/v1/runs/ghost/rerun",
            Some(json!({"from": "a"})),
            404,
            "not-found",
        ),
        ("/v1/workflows/ghost", None, 404, "not-found"),
        ("/v1/no-such-route", None, 404, "not-found"),
        (
            "/v1/runs",
            Some(json!({"workflow": "ghost"})),
            404,
            "not-found",
        ),
        (
            "/v1/runs",
            Some(json!({"workflow": 5})),
            400,
            "invalid-input",
        ),
        (
            "/v1/runs",
            Some(json!({"workflow": "x", "surprise": 1})),
            400,
            "invalid-input",
        ),
        (
            "/v1/runs?wait=forever",
            Some(json!({"workflow": "x"})),
            400,
            "invalid-input",
        ),
        ("/v1/runs?limit=0", None, 400, "invalid-input"),
        ("/v1/runs?status=asleep", None, 400, "invalid-input"),
        ("/v1/runs?cursor=zz", None, 400, "invalid-input"),
        (
            "/v1/runs/x/resume",
            Some(json!({"step": "a", "label": "b"})),
            400,
            "invalid-input",
        ),
    ];
    for (path, body, status, kind) in cases {
        let sent = match &body {
            Some(body) => server
                .agent
                .post(format!("{}{path}", server.url))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .send_json(body),
            None => server
                .agent
                .get(format!("{}{path}", server.url))
                .header("Authorization", format!("Bearer {TOKEN}"))
                .call(),
        };
        let (got, problem, content_type) = server.answer(sent);
        assert_eq!(got, status, "{path}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(
            problem["type"],
            format!("urn:weft:problem:{kind}"),
            "{path}"
        );
        assert_eq!(problem["status"], status, "{path}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (_, problem) = server.post("/v1/runs", &json!({"workflow": 5}));
    assert_eq!(problem["pointer"], "/workflow");
    // A body over the limit: 413.
    let big = json!({"workflow": "x", "input": "x".repeat(17 << 20)});
    let (status, problem) = server.post("/v1/runs", &big);
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["type"], "urn:weft:problem:payload-too-large");
    // A bundle that is not one.
    let (status, problem, _) = server.answer(
        server
            .agent
            .post(format!("{}/v1/workflows", server.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .content_type("application/x-tar")
            .send(&b"not a tar archive"[..]),
    );
    assert_eq!(status, 400, "{problem}");
}

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

#[test]
fn no_auth_is_refused_off_loopback() {
    let home = tempfile::tempdir().unwrap();
    let out = weft(home.path())
        .args(["serve", "--listen", "0.0.0.0:0", "--no-auth"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

#[test]
fn the_openapi_document_covers_every_route() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    let (status, document, _) = server.answer(
        server
            .agent
            .get(format!("{}/openapi.json", server.url))
            .call(),
    );
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes: &[(&str, &[&str])] = &[
        ("/v1/runs", &["get", "post"]),
        ("/v1/runs/{id}", &["get"]),
        ("/v1/runs/{id}/events", &["get"]),
        ("/v1/runs/{id}/resume", &["post"]),
        ("/v1/runs/{id}/cancel", &["post"]),
        ("/v1/runs/{id}/rerun", &["post"]),
        ("/v1/workflows", &["get", "post"]),
        ("/v1/workflows/{id}", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ];
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), routes.len(), "{:?}", paths.keys());
    for (path, methods) in routes {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not in the document"));
        let mut documented: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort_unstable();
        assert_eq!(documented, *methods, "{path}");
    }
}

/// `weft VERB --server URL`: what a local command prints, with the same
/// exit code.
#[test]
fn the_cli_verbs_talk_to_a_server_with_the_same_output() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    let remote = |args: &[&str]| {
        weft(home.path())
            .args(args)
            .env("WEFT_SERVER", &server.url)
            .env("WEFT_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let local = |args: &[&str]| weft(home.path()).args(args).output().unwrap();
    // A manifest is deployed, then run; the run suspends (exit 3).
    let out = remote(&[
        "run",
        EXAMPLE,
        "--input",
        "@examples/order-approval/big-order.json",
        "--run-id",
        "cli-big",
        "--watch",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "run-started", "--watch prints the events");
    assert_eq!(lines.last().unwrap()["status"], "suspended");
    // status, runs and events read the same as from the local store.
    for args in [
        &["status", "cli-big"][..],
        &["status", "cli-big", "--json"],
        &["events", "cli-big"],
        &["events", "cli-big", "--json"],
        &["runs"],
        &["runs", "--status", "suspended", "--json"],
    ] {
        let (there, here) = (remote(args), local(args));
        assert_eq!(there.status.code(), here.status.code(), "{args:?}");
        assert_eq!(
            stdout(&there),
            stdout(&here),
            "{args:?}: {}",
            stderr(&there)
        );
    }
    // A bad resume: exit 2, the CLI's words.
    let out = remote(&["resume", "cli-big", "--data", r#"{"approved": true}"#]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fails its resume schema"),
        "{}",
        stderr(&out)
    );
    // A good one: followed to success (exit 0), events numbered on.
    let out = remote(&[
        "resume",
        "cli-big",
        "--label",
        "manager-approval",
        "--data",
        r#"{"approved": true, "approver": "dana"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("succeeded; output:"),
        "{}",
        stdout(&out)
    );
    // By workflow id (deployed already), then canceled (exit 4).
    let out = remote(&[
        "run",
        "order-approval",
        "--input",
        "@examples/order-approval/big-order.json",
        "--run-id",
        "cli-cancel",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = remote(&["cancel", "cli-cancel", "--reason", "test", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = remote(&["rerun", "cli-cancel", "--from", "approve", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // A missing run: exit 2, as locally.
    let (there, here) = (remote(&["status", "ghost"]), local(&["status", "ghost"]));
    assert_eq!(
        (there.status.code(), here.status.code()),
        (Some(2), Some(2))
    );
    assert_eq!(stderr(&there), stderr(&here));
    // A wrong token: refused (exit 2), saying so.
    let out = weft(home.path())
        .args([
            "runs",
            "--server",
            &server.url,
            "--token",
            "wrong-token-xxxxxxxx",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Bearer"), "{}", stderr(&out));
}

/// Schemathesis (from PyPI, installed by `scripts/schemathesis` into
/// `target/tools/`) against `/openapi.json`: 50 examples per operation,
/// every phase; no response may be a 5xx, and every status code, content
/// type, header and body must be the one the document declares. The seed
/// is fixed (`WEFT_SCHEMATHESIS_SEED` picks another) so a failure replays.
#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_spec() {
    let install = std::process::Command::new(crate::support::root().join("scripts/schemathesis"))
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", stderr(&install));
    let schemathesis = stdout(&install).trim().to_owned();
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &[]);
    // Something to find: a deployed workflow and a suspended run.
    server.deploy(&example());
    let (status, _) = server.post(
        "/v1/runs?wait=60s",
        &json!({"workflow": "order-approval", "input": big_order(), "run_id": "fuzz"}),
    );
    assert_eq!(status, 201);
    let seed = std::env::var("WEFT_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let child = std::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/openapi.json", server.url))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "50", "--seed", &seed, "--request-timeout", "60"])
        .args(["--no-color", "--workers", "2"])
        .current_dir(home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: it takes seconds here; only a hang reaches this.
    let out = finish_within(child, Duration::from_secs(600));
    let status = out.status;
    assert!(
        status.success(),
        "schemathesis (seed {seed}) found problems:\n{}\n{}\nserver log:\n{}",
        stdout(&out),
        stderr(&out),
        server.log()
    );
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
