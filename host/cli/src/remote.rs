//! The CLI verbs against a server (`--server URL`): the same requests as the
//! API's routes, the same output and exit codes as on a local store.
//!
//! A command that waits for its run (`run`, `resume`, `rerun`) follows the
//! run's event stream until it settles (printing the events with
//! `--watch`), then reads the run; a stream cut by a restarting server is
//! resumed where it stopped (`Last-Event-ID`).

use std::io::{BufRead as _, BufReader};
use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;
use weft_core::{Event, RunResult};

use crate::client::Client;
use crate::exit::{Code, Failure};
use crate::watch::Watcher;

/// How many times a cut event stream is opened again before the command
/// gives up.
const RECONNECTS: usize = 20;

/// `text` as one URL path segment or query value (RFC 3986: everything but
/// unreserved characters percent-encoded).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The path of a run's route: `/v1/runs/{run}{rest}`.
pub fn run_path(run: &str, rest: &str) -> String {
    format!("/v1/runs/{}{rest}", encode(run))
}

/// A run's JSON as the result type the CLI prints.
///
/// # Errors
/// A body that is not a run.
pub fn run_result(body: Value) -> Result<RunResult, Failure> {
    serde_json::from_value(body)
        .map_err(|e| Failure::other(anyhow!("the server's run does not parse: {e}")))
}

/// The run as the server has it now.
///
/// # Errors
/// The server's problem (a missing run: invalid input).
pub fn fetch(client: &Client, run: &str) -> Result<RunResult, Failure> {
    run_result(client.get(&run_path(run, ""))?.ok()?)
}

/// Visits the run's events a page at a time.
pub fn each_event(
    client: &Client,
    run: &str,
    visit: &mut dyn FnMut(&Event) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut after = 0u64;
    loop {
        let page = client
            .get(&run_path(run, &format!("/events?after={after}&limit=1000")))
            .and_then(|reply| reply.ok())
            .map_err(|f| std::io::Error::other(crate::paged::ReadFailed(f.to_string())))?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return Ok(());
        }
        for value in events {
            let event: Event = serde_json::from_value(value).map_err(|e| {
                std::io::Error::other(crate::paged::ReadFailed(format!(
                    "an event of run {run} does not parse: {e}"
                )))
            })?;
            visit(&event)?;
            after += 1;
        }
    }
}

/// Prints the result (human, with the run's events read from the server,
/// or JSON) and returns its exit code.
pub fn report(client: &Client, result: &RunResult, json: bool) -> Code {
    let run = result.run_id.to_string();
    crate::run::report(result, &mut |visit| each_event(client, &run, visit), json)
}

/// Follows the run's events from after `after` until it settles, each
/// event to `watcher`; returns how many events it saw.
///
/// # Errors
/// The stream cannot be opened (a missing run), or keeps being cut.
pub fn follow(
    client: &Client,
    run: &str,
    mut after: u64,
    watcher: &mut Watcher,
) -> Result<u64, Failure> {
    let mut cuts = 0;
    loop {
        let reader = client.stream(&run_path(run, "/events"), after)?;
        let mut data = String::new();
        let mut kind = None;
        let mut id = None;
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if line.is_empty() {
                if kind.as_deref() == Some("end") {
                    return Ok(after);
                }
                if let Some(seq) = id.take()
                    && !data.is_empty()
                {
                    let event: Event = serde_json::from_str(&data).map_err(|e| {
                        Failure::other(anyhow!("an event of run {run} does not parse: {e}"))
                    })?;
                    watcher.event(&event);
                    after = seq;
                }
                data.clear();
                kind = None;
                continue;
            }
            if let Some(value) = line.strip_prefix("id:") {
                id = value.trim().parse::<u64>().ok();
            } else if let Some(value) = line.strip_prefix("event:") {
                kind = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        cuts += 1;
        if cuts > RECONNECTS {
            return Err(Failure::other(anyhow!(
                "run {run}: the server's event stream keeps closing; `weft status --server` shows where the run is"
            )));
        }
        std::thread::sleep(Duration::from_millis(200 * cuts as u64));
    }
}

/// Waits (following its events) until the run settles, then reports it.
///
/// # Errors
/// As [`follow`] and [`fetch`].
pub fn settle_and_report(
    client: &Client,
    run: &str,
    after: u64,
    mut watcher: Watcher,
    json: bool,
) -> Result<Code, Failure> {
    follow(client, run, after, &mut watcher)?;
    let open = watcher.finish()?;
    let result = fetch(client, run)?;
    if !open {
        return Ok(Code::of(result.status));
    }
    Ok(report(client, &result, json))
}

/// How many events a run has now.
///
/// # Errors
/// The server's problem.
pub fn event_count(client: &Client, run: &str) -> Result<u64, Failure> {
    let mut after = 0;
    loop {
        let page = client
            .get(&run_path(run, &format!("/events?after={after}&limit=1000")))?
            .ok()?;
        let next = page["next"].as_u64().unwrap_or(after);
        if next == after {
            return Ok(after);
        }
        after = next;
    }
}

/// Refuses a local-only option with `--server`.
///
/// # Errors
/// Always, naming the option.
pub fn local_only(option: &str) -> Failure {
    Failure::invalid(anyhow!(
        "{option} is for a local store; with --server the server's store and runtime are used"
    ))
}
