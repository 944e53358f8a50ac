//! The API's contract: every error is a problem document of its kind, the
//! OpenAPI document lists every route, and Schemathesis finds no answer
//! off it; `--no-auth` only on loopback.

use std::io::Write as _;

use super::*;

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
    // A method a route does not take: 405, a problem too.
    let (status, problem, content_type) = server.answer(
        server
            .agent
            .delete(format!("{}/v1/runs", server.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call(),
    );
    assert_eq!(status, 405, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:weft:problem:method-not-allowed");
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
    // A body over the limit: 413, decided from its announced length before
    // any of it is read (a client sending it whole may see the connection
    // close under it, so this one announces it and waits for the answer).
    let mut stream =
        std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    write!(
        stream,
        "POST /v1/runs HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        17 << 20
    )
    .unwrap();
    // The status line, the headers, then the body of the length they give.
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
        let end = line.trim_end().is_empty();
        answer.push_str(&line);
        if end {
            break;
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut body).unwrap();
    answer.push_str(&String::from_utf8_lossy(&body));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:weft:problem:payload-too-large"),
        "{answer}"
    );
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

/// Event streams are bounded: past `--max-streams`, 429 with the kind.
#[test]
fn event_streams_beyond_the_limit_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &["--max-streams", "1"]);
    server.deploy(&sleepy(dir.path(), 600_000));
    let (status, _) = server.post(
        "/v1/runs",
        &json!({"workflow": "sleepy", "input": sleepy_input(), "run_id": "watched"}),
    );
    assert_eq!(status, 201);
    // The run sleeps ten minutes: its stream stays open, holding the one
    // permit, until the test drops it.
    let held = server.stream("watched", 0);
    held.until(|e| matches!(e, Event::SleepStarted { .. }));
    let sent = server
        .agent
        .get(format!("{}/v1/runs/watched/events", server.url))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Accept", "text/event-stream")
        .call();
    let (status, problem, _) = server.answer(sent);
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["type"], "urn:weft:problem:too-many-requests");
    // The run's JSON says what it waits for.
    let (_, run) = server.get("/v1/runs/watched");
    assert_eq!(run["status"], "running");
    assert_eq!(run["timers"][0]["path"], "nap", "{run}");
    assert_eq!(run["timers"][0]["kind"], "sleep");
    assert!(
        run["held_by"]
            .as_str()
            .is_some_and(|owner| !owner.is_empty()),
        "the server holds the sleeping run: {run}"
    );
    // A page is not a stream: still served.
    assert_eq!(server.get("/v1/runs/watched/events").0, 200);
    drop(held);
}
