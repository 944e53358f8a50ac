//! Traces: a run's spans reach an OTLP receiver the test runs (HTTP on
//! loopback, the protobuf decoded), as one tree, across a server killed -9
//! mid-run and a second server that finishes the run; the guest's log
//! lines arrive as log records inside their attempt's span.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;
use weft_core::Event;

use super::{BOUND, Server};
use crate::support::guest;

/// An OTLP/HTTP receiver on 127.0.0.1: every span posted to `/v1/traces`
/// and every log record posted to `/v1/logs`.
struct Collector {
    url: String,
    spans: mpsc::Receiver<Span>,
    logs: mpsc::Receiver<LogRecord>,
}

fn collector() -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (sender, spans) = mpsc::channel();
    let (log_sender, logs) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let sender = sender.clone();
            let log_sender = log_sender.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                // One request after another on the connection (keep-alive).
                loop {
                    let mut length = 0usize;
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    if request_line.starts_with("POST /v1/logs ") {
                        let request = ExportLogsServiceRequest::decode(&body[..]).unwrap();
                        for resource in request.resource_logs {
                            for scope in resource.scope_logs {
                                for record in scope.log_records {
                                    let _ = log_sender.send(record);
                                }
                            }
                        }
                    } else {
                        assert!(
                            request_line.starts_with("POST /v1/traces "),
                            "{request_line}"
                        );
                        let request = ExportTraceServiceRequest::decode(&body[..]).unwrap();
                        for resource in request.resource_spans {
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    let _ = sender.send(span);
                                }
                            }
                        }
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    Collector { url, spans, logs }
}

impl Collector {
    /// Spans until one named `name` has come (the root arrives last).
    fn until(&self, name: &str) -> Vec<Span> {
        let deadline = Instant::now() + BOUND;
        let mut spans = Vec::new();
        loop {
            let span = self
                .spans
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| panic!("no span `{name}` ({e:?}); got {spans:?}"));
            let done = span.name == name;
            spans.push(span);
            if done {
                return spans;
            }
        }
    }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?} on {}", span.name),
    }
}

/// `a`, a foreach of `b` over `a`'s three items, a sleep, a nested
/// workflow running `c`.
fn workflow(dir: &Path) -> PathBuf {
    let component = guest("test-steps");
    std::fs::write(
        dir.join("child.toml"),
        format!(
            "id = \"child\"\nflow = [{{ map = {{ action = \"'complete'\", output = \"'done'\" }}, id = \"prep\" }}, {{ step = \"c\" }}]\n\
             [steps.c]\ncomponent = \"{}\"\n",
            component.display()
        ),
    )
    .unwrap();
    let path = dir.join("traced.toml");
    std::fs::write(
        &path,
        format!(
            "id = \"traced\"\nflow = [\n  {{ step = \"a\" }},\n  {{ foreach = [{{ map = {{ action = \"'complete'\", output = \"input\" }}, id = \"prep\" }}, {{ step = \"b\" }}], id = \"items\", concurrency = 2 }},\n  {{ sleep-ms = 1500, id = \"nap\" }},\n  {{ workflow = \"child.toml\", id = \"sub\" }},\n]\n\
             [steps.a]\ncomponent = \"{c}\"\n[steps.b]\ncomponent = \"{c}\"\n",
            c = component.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_run_is_one_trace_across_a_kill_and_a_recovery() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = workflow(dir.path());
    let collector = collector();
    let otlp = ["--otlp-endpoint", &collector.url];
    let server = Server::start(home.path(), &otlp);
    server.deploy(&manifest);
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (status, run) = server.post_with(
        "/v1/runs",
        &json!({"workflow": "traced", "input": {"action": "spin", "marker": "a says hello", "output": [1, 2, 3]}, "run_id": "traced"}),
        &[("traceparent", parent)],
    );
    assert_eq!(status, 201, "{run}");
    server
        .stream("traced", 0)
        .until(|e| matches!(e, Event::SleepStarted { .. }));
    // `a`'s log line is exported as it is written, not when the run settles.
    let said = collector.logs.recv_timeout(BOUND).expect("a's log record");
    server.kill(); // SIGKILL mid-sleep: no span was exported yet
    let server = Server::start(home.path(), &otlp);
    let (_, end) = server.stream("traced", 0).until_end();
    assert_eq!(end["status"], "success");
    let spans = collector.until("run traced");
    // One trace: the traceparent's, the root's parent its span.
    let trace = hex::decode("0af7651916cd43dd8448eb211c80319c").unwrap();
    assert!(spans.iter().all(|s| s.trace_id == trace), "{spans:?}");
    let root = spans.last().unwrap();
    assert_eq!(
        root.parent_span_id,
        hex::decode("b7ad6b7169203331").unwrap()
    );
    // Each span once, and every parent in the tree.
    let ids: HashSet<&[u8]> = spans.iter().map(|s| &s.span_id[..]).collect();
    assert_eq!(ids.len(), spans.len(), "a span arrived twice");
    for span in &spans[..spans.len() - 1] {
        assert!(
            ids.contains(&span.parent_span_id[..]),
            "{}: its parent is not in the trace",
            span.name
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    // A span per attempt, with its address and outcome, under its node.
    let by_address: HashMap<String, &Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("step "))
        .map(|s| (text(s, "weft.address"), s))
        .collect();
    let mut addresses: Vec<&str> = by_address.keys().map(String::as_str).collect();
    addresses.sort_unstable();
    assert_eq!(
        addresses,
        ["a", "items[0]/b", "items[1]/b", "items[2]/b", "sub/c"]
    );
    // The log record is in `a`'s span, of the run's trace.
    assert!(
        matches!(&said.body.as_ref().and_then(|b| b.value.as_ref()), Some(any_value::Value::StringValue(s)) if s == "a says hello"),
        "{said:?}"
    );
    assert_eq!(said.severity_text, "INFO");
    assert_eq!(said.trace_id, trace);
    assert_eq!(said.span_id, by_address["a"].span_id);
    for span in by_address.values() {
        assert_eq!(text(span, "weft.outcome"), "success");
        // What the attempt consumed, as the sandbox measured it.
        for measured in ["weft.fuel", "weft.memory_peak_bytes"] {
            assert!(
                matches!(attribute(span, measured), Some(any_value::Value::IntValue(n)) if *n > 0),
                "{measured} on {}",
                span.name
            );
        }
        assert_eq!(text(span, "weft.run_id"), "traced");
        assert_eq!(text(span, "weft.workflow"), "traced");
        assert!(matches!(
            attribute(span, "weft.attempt"),
            Some(any_value::Value::IntValue(1))
        ));
    }
    let node = |address: &str| {
        spans
            .iter()
            .find(|s| s.name == address)
            .unwrap_or_else(|| panic!("no node span {address}"))
    };
    assert_eq!(by_address["sub/c"].parent_span_id, node("sub").span_id);
    assert_eq!(node("items").parent_span_id, root.span_id);
    assert_eq!(node("nap").parent_span_id, root.span_id);
    // The sleep's span covers the kill: it ends after its recorded wake.
    let nap = node("nap");
    assert!(
        nap.end_time_unix_nano - nap.start_time_unix_nano >= 1_500_000_000,
        "{nap:?}"
    );
    // No more spans: everything came once.
    assert!(
        collector
            .spans
            .recv_timeout(Duration::from_millis(200))
            .is_err()
    );
}

#[test]
fn a_suspended_run_exports_what_ended_before_and_the_rest_after_its_resume() {
    let home = tempfile::tempdir().unwrap();
    let collector = collector();
    let server = Server::start(home.path(), &["--otlp-endpoint", &collector.url]);
    server.deploy(&crate::support::root().join(super::EXAMPLE));
    let (status, run) = server.post(
        "/v1/runs?wait=60s",
        &json!({"workflow": "order-approval", "input": super::big_order(), "run_id": "approved"}),
    );
    assert_eq!((status, &run["status"]), (201, &json!("suspended")));
    // At the suspension: the attempts that ended, no root yet.
    let mut first = Vec::new();
    while first.len() < 3 {
        first.push(
            collector
                .spans
                .recv_timeout(BOUND)
                .expect("the spans so far"),
        );
    }
    let outcomes: Vec<(String, String)> = first
        .iter()
        .map(|s| (text(s, "weft.address"), text(s, "weft.outcome")))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("validate".to_owned(), "success".to_owned()),
            ("reserve".to_owned(), "success".to_owned()),
            ("approve".to_owned(), "suspended".to_owned()),
        ]
    );
    let (status, _) = server.post(
        "/v1/runs/approved/resume?wait=60s",
        &json!({"label": "manager-approval", "data": {"approved": true, "approver": "dana"}}),
    );
    assert_eq!(status, 200);
    let rest = collector.until("run order-approval");
    let all: Vec<&Span> = first.iter().chain(&rest).collect();
    let ids: HashSet<&[u8]> = all.iter().map(|s| &s.span_id[..]).collect();
    assert_eq!(ids.len(), all.len(), "a span arrived twice");
    let after: Vec<String> = rest
        .iter()
        .filter(|s| s.name.starts_with("step "))
        .map(|s| text(s, "weft.address"))
        .collect();
    assert_eq!(after, ["approve", "charge", "notify"]);
    let root = rest.last().unwrap();
    assert!(
        all[..all.len() - 1]
            .iter()
            .all(|s| s.parent_span_id == root.span_id)
    );
    assert!(root.parent_span_id.is_empty(), "no traceparent: a root");
}
