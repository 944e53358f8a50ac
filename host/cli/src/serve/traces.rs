//! Traces (OpenTelemetry, exported as OTLP/HTTP protobuf): one trace per
//! run, built from the run's event log.
//!
//! Spans are not kept open in memory while a run goes on: when a run
//! settles (finishes, fails, is canceled, suspends), the process that
//! committed the settling event reads the log and exports the spans that
//! ended since the run last settled — a span per node address (from
//! `node-started` to `node-completed`, a sleep from `sleep-started`), a span
//! per step attempt (from `step-started` to its end, with workflow, run id,
//! address, attempt and outcome as attributes) and, when the run ends, the
//! run's root span. The log is the record, so a run driven by one process,
//! killed with it and finished by another is one trace whose spans each
//! arrive once: nothing was exported before the kill that is not exported
//! again after, and ids are derived, not drawn — a span's id is a hash of
//! the run id, its kind, its address, its attempt and its start; the trace id is the
//! one of the `traceparent` the run was started under (recorded in the
//! store, [`weft_core::RunIndex::put_trace`]), else a hash of the run id.
//!
//! An attempt's span carries the fuel it used and its memory peak when the
//! sandbox measured them (recorded with the attempt's end), and its id is
//! the one the worker wrote beside the attempt's log lines
//! ([`weft_runtime::trace_ids`]; the lines themselves are exported as log
//! records by [`super::logs`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message as _;
use weft_core::{Event, Measured, RunId, RunMeta, RunStatus, Store, Timestamp};
use weft_runtime::trace_ids::{run_trace_id, span_id};

use super::logs::LogExporter;

/// Exports runs' spans to an OTLP endpoint, on a thread of its own, and
/// guest log lines beside them ([`LogExporter`]).
pub struct Tracer {
    settled: Option<Sender<RunId>>,
    thread: Option<JoinHandle<()>>,
    _logs: LogExporter,
}

impl Tracer {
    /// A tracer exporting to `endpoint` (`http://host:4318`: spans are
    /// posted to `{endpoint}/v1/traces`, log records to `{endpoint}/v1/logs`),
    /// reading runs from `store`.
    pub fn start(endpoint: &str, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let logs = LogExporter::start(endpoint, Arc::clone(&store))?;
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let (settled, runs) = crossbeam_channel::unbounded::<RunId>();
        let thread = std::thread::Builder::new()
            .name("weft-traces".into())
            .spawn(move || {
                let agent = agent();
                for run in runs {
                    export(&agent, &url, &*store, &run);
                }
            })?;
        Ok(Self {
            settled: Some(settled),
            thread: Some(thread),
            _logs: logs,
        })
    }

    /// `run` settled with the events just committed: its new spans are due.
    pub fn settled(&self, run: &RunId) {
        if let Some(settled) = &self.settled {
            let _ = settled.send(run.clone());
        }
    }
}

impl Drop for Tracer {
    /// Exports what is queued, then stops.
    fn drop(&mut self) {
        self.settled = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether `events` settle their run.
pub fn settles(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| RunStatus::after(e).is_some_and(|s| s != RunStatus::Running))
}

fn export(agent: &ureq::Agent, url: &str, store: &dyn Store, run: &RunId) {
    let (meta, events) = match store.load(run) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::warn!(run = %run, "traces: cannot read the run: {e}");
            return;
        }
    };
    let parent = match store.trace(run) {
        Ok(traceparent) => traceparent.as_deref().and_then(parse_traceparent),
        Err(e) => {
            tracing::warn!(run = %run, "traces: cannot read the run's trace context: {e}");
            None
        }
    };
    let spans = spans(&meta, &events, parent);
    if spans.is_empty() {
        return;
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    if let Err(e) = post(agent, url, &request.encode_to_vec()) {
        tracing::warn!(run = %run, "traces: the run's spans were not exported: {e}");
    }
}

/// The HTTP client of the OTLP exporters.
pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// What every export names as its source: the `weft` service.
pub(super) fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![attribute("service.name", "weft")],
        ..Resource::default()
    })
}

/// The instrumentation scope of every export: weft and its version.
pub(super) fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "weft".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    })
}

/// Posts an OTLP/HTTP protobuf `body` to `url`; why it failed, if it did.
pub(super) fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<(), String> {
    match agent
        .post(url)
        .content_type("application/x-protobuf")
        .send(body)
    {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "the OTLP endpoint answered {}",
            response.status().as_u16()
        )),
        Err(e) => Err(format!("cannot reach the OTLP endpoint: {e}")),
    }
}

/// A W3C `traceparent` (`00-TRACEID-SPANID-FLAGS`): the trace id and the
/// parent span id, if it is one (all-zero ids are not).
pub fn parse_traceparent(text: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || flags.len() != 2 || parts.next().is_some() {
        return None;
    }
    let trace: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
    let span: [u8; 8] = hex::decode(span).ok()?.try_into().ok()?;
    hex::decode(version).ok()?;
    hex::decode(flags).ok()?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
}

pub(super) fn attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

pub(super) fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// The addresses a span at `address` may nest in, nearest first:
/// `a/b[1]/c` → `a/b[1]`, `a/b`, `a`.
fn ancestors(address: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current = address.to_owned();
    loop {
        let start = current.rfind('/').map_or(0, |i| i + 1);
        match current[start..].find(['[', '#']) {
            Some(i) => current.truncate(start + i),
            None if start == 0 => return found,
            None => current.truncate(start - 1),
        }
        found.push(current.clone());
    }
}

/// A span begun and not yet ended, while the log is read.
struct Open {
    kind: &'static str,
    address: String,
    attempt: u32,
    /// What tells it from other spans of its kind, address and attempt
    /// ([`span_id`]'s `start`): where in the log a node began, when an
    /// attempt started.
    start_key: u64,
    name: String,
    start: Timestamp,
}

/// The spans of a run's trace that ended after the run's previous settling
/// event and up to its last one, and the root span if the run ended there.
pub fn spans(meta: &RunMeta, events: &[Event], parent: Option<([u8; 16], [u8; 8])>) -> Vec<Span> {
    let Some(last) = events
        .iter()
        .rposition(|e| settles(std::slice::from_ref(e)))
    else {
        return Vec::new();
    };
    let since = events[..last]
        .iter()
        .rposition(|e| settles(std::slice::from_ref(e)))
        .map_or(0, |i| i + 1);
    let id = &meta.run_id;
    let run = id.as_str();
    let trace: [u8; 16] = parent.map_or_else(|| run_trace_id(id), |(trace, _)| trace);
    let root = span_id(id, "run", "", 0, 0);
    // Node addresses with a span, and where in the log it began.
    let mut nodes: HashMap<String, usize> = HashMap::new();
    let mut open: HashMap<String, Open> = HashMap::new();
    let mut out = Vec::new();
    let make = |o: &Open,
                end: Timestamp,
                outcome: &str,
                measured: Option<&Measured>,
                nodes: &HashMap<String, usize>| {
        let parent = ancestors(&o.address)
            .into_iter()
            .find_map(|a| {
                nodes
                    .get(&a)
                    .map(|seq| span_id(id, "node", &a, 0, *seq as u64))
            })
            .unwrap_or(root);
        let mut attributes = vec![
            attribute("weft.workflow", meta.workflow_id.as_str()),
            attribute("weft.run_id", run),
            attribute("weft.address", o.address.clone()),
            attribute("weft.outcome", outcome),
        ];
        if o.kind == "attempt" {
            attributes.push(int_attribute("weft.attempt", i64::from(o.attempt)));
        }
        if let Some(m) = measured {
            let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            attributes.push(int_attribute("weft.fuel", int(m.fuel)));
            attributes.push(int_attribute("weft.memory_peak_bytes", int(m.memory_peak)));
        }
        let code = match outcome {
            "failed" | "canceled" => status::StatusCode::Error,
            _ => status::StatusCode::Ok,
        };
        Span {
            trace_id: trace.to_vec(),
            span_id: span_id(id, o.kind, &o.address, o.attempt, o.start_key).to_vec(),
            parent_span_id: parent.to_vec(),
            name: o.name.clone(),
            kind: 1, // internal
            start_time_unix_nano: o.start.0.saturating_mul(1_000),
            end_time_unix_nano: end.0.saturating_mul(1_000),
            attributes,
            status: Some(Status {
                code: code as i32,
                ..Status::default()
            }),
            ..Span::default()
        }
    };
    for (i, event) in events[..=last].iter().enumerate() {
        let in_window = i >= since;
        let mut end = |key: String,
                       outcome: &str,
                       at: Timestamp,
                       measured: &Option<Measured>,
                       out: &mut Vec<Span>| {
            if let Some(o) = open.remove(&key)
                && in_window
            {
                out.push(make(&o, at, outcome, measured.as_ref(), &nodes));
            }
        };
        match event {
            Event::NodeStarted { path, at, .. } | Event::SleepStarted { path, at, .. } => {
                let address = path.to_string();
                let key = format!("node {address}");
                if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(key) {
                    nodes.insert(address.clone(), i);
                    slot.insert(Open {
                        kind: "node",
                        name: address.clone(),
                        address,
                        attempt: 0,
                        start_key: i as u64,
                        start: *at,
                    });
                }
            }
            Event::NodeCompleted { path, at, .. } => {
                end(format!("node {path}"), "success", *at, &None, &mut out);
            }
            Event::StepStarted {
                path,
                step,
                attempt,
                at,
                ..
            } => {
                let address = path.to_string();
                open.insert(
                    format!("attempt {address}"),
                    Open {
                        kind: "attempt",
                        name: format!("step {step}"),
                        address,
                        attempt: *attempt,
                        start_key: at.0,
                        start: *at,
                    },
                );
            }
            Event::StepCompleted {
                path, at, measured, ..
            } => {
                end(
                    format!("attempt {path}"),
                    "success",
                    *at,
                    measured,
                    &mut out,
                );
            }
            Event::StepFailed {
                path, at, measured, ..
            } => {
                end(format!("attempt {path}"), "failed", *at, measured, &mut out);
            }
            Event::StepSuspended {
                path, at, measured, ..
            } => {
                end(
                    format!("attempt {path}"),
                    "suspended",
                    *at,
                    measured,
                    &mut out,
                );
            }
            Event::StepBailed {
                path, at, measured, ..
            } => {
                end(format!("attempt {path}"), "bailed", *at, measured, &mut out);
            }
            _ => {}
        }
    }
    let settled = RunStatus::after(&events[last]).unwrap_or(RunStatus::Running);
    if settled == RunStatus::Suspended {
        return out;
    }
    // The run ended: what is still open ends with it, and so does the root.
    let at = events[last].at();
    let outcome = settled.as_str();
    let mut rest: Vec<Open> = open.into_values().collect();
    rest.sort_by(|a, b| (a.start, &a.address).cmp(&(b.start, &b.address)));
    for o in &rest {
        out.push(make(o, at, outcome, None, &nodes));
    }
    let started = events.first().map_or(at, Event::at);
    let mut root_span = make(
        &Open {
            kind: "run",
            address: String::new(),
            attempt: 0,
            start_key: 0,
            name: format!("run {}", meta.workflow_id),
            start: started,
        },
        at,
        outcome,
        None,
        &HashMap::new(),
    );
    root_span.span_id = root.to_vec();
    root_span.parent_span_id = parent.map(|(_, span)| span.to_vec()).unwrap_or_default();
    out.push(root_span);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_go_up_through_items_and_iterations() {
        assert_eq!(ancestors("a/b[1]/c"), ["a/b[1]", "a/b", "a"]);
        assert_eq!(ancestors("again#2/check"), ["again#2", "again"]);
        assert!(ancestors("top").is_empty());
    }

    #[test]
    fn a_traceparent_parses_only_when_well_formed() {
        let (trace, span) =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(hex::encode(trace), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(span), "b7ad6b7169203331");
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
