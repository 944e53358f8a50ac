//! `weft serve` end to end, through a real HTTP client on loopback (ports
//! chosen by the OS): deploys, every route and error type, idempotent
//! starts, cursor paging, SSE with `Last-Event-ID`, a server killed -9 and
//! started again, a graceful shutdown, and the OpenAPI document. This file
//! holds the harness (a server process, its HTTP client and event streams);
//! the tests are in `serve/`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::Event;

use crate::support::{stderr, stdout, weft};
use crate::timers::{sleepy_input, sleepy_manifest as sleepy};

mod api;
mod cli;
mod contract;
mod hosts;
mod traces;

const EXAMPLE: &str = "examples/order-approval/workflow.toml";
pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// Every bounded wait of these tests: far above what anything takes here
/// (a loaded 2-core machine included), so only a hang reaches it.
pub(crate) const BOUND: Duration = Duration::from_secs(120);

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

    /// Where it listens (`http://127.0.0.1:PORT`).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Its process id (for signals).
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("the server runs").id()).unwrap()
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

    pub(crate) fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
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
    pub(crate) fn stream(&self, run: &str, after: u64) -> Stream {
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
    pub(crate) fn kill(mut self) {
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
pub(crate) struct Stream {
    messages: Receiver<(Option<u64>, Option<String>, String)>,
}

impl Stream {
    /// Run events until the `end` event; returns them (with their ids) and
    /// the end's data.
    pub(crate) fn until_end(&self) -> (Vec<(u64, Event)>, Value) {
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
    pub(crate) fn until(&self, mut found: impl FnMut(&Event) -> bool) -> (u64, Event) {
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

/// The run's stored events, read from the server's store.
fn stored_events(home: &Path, run: &str) -> Vec<Event> {
    crate::timers::events(&home.join("weft.db"), run)
}
