//! Guest log lines as OpenTelemetry log records (OTLP/HTTP protobuf, posted
//! to `{endpoint}/v1/logs`), each with its run's trace id and the span id of
//! the attempt that wrote it, so a backend shows a step's lines inside its
//! span.
//!
//! The worker writes every guest line to weft's log (`tracing`, target
//! [`GUEST_LOG_TARGET`], with the run, address, attempt and span id);
//! [`GuestLogs`], a layer of the process's subscriber, hands those events
//! to the exporter while one runs, through a bounded queue: a flood of
//! lines drops lines (counted in weft's log), never blocks a step or grows
//! memory. Lines are exported as they come, not when the run settles.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use prost::Message as _;
use tracing::field::{Field, Visit};
use weft_core::{RunId, Store};
use weft_runtime::GUEST_LOG_TARGET;
use weft_runtime::trace_ids::run_trace_id;

use super::traces::{self, attribute, int_attribute, parse_traceparent, resource, scope};

/// Lines waiting for the exporter at most; more are dropped.
const QUEUE: usize = 10_000;
/// Lines per export request at most.
const BATCH: usize = 512;

/// A guest log line on its way to the exporter.
struct Line {
    run: String,
    address: String,
    attempt: u64,
    span_id: String,
    level: String,
    message: String,
    at: u64,
}

/// Where [`GuestLogs`] sends lines while an exporter runs.
static QUEUE_IN: Mutex<Option<Sender<Line>>> = Mutex::new(None);

/// Lines dropped because the queue was full, since the exporter last said.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The subscriber layer that hands guest log lines to the exporter (a
/// no-op while none runs). Install it with a filter on
/// [`GUEST_LOG_TARGET`].
pub struct GuestLogs;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GuestLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != GUEST_LOG_TARGET {
            return;
        }
        let queue = QUEUE_IN.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = queue.as_ref() else {
            return;
        };
        let mut line = Line {
            run: String::new(),
            address: String::new(),
            attempt: 0,
            span_id: String::new(),
            level: String::new(),
            message: String::new(),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        };
        event.record(&mut line);
        if let Err(TrySendError::Full(_)) = queue.try_send(line) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "attempt" {
            self.attempt = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let slot = match field.name() {
            "run" => &mut self.run,
            "step" => &mut self.address,
            "span_id" => &mut self.span_id,
            "level" => &mut self.level,
            "message" => &mut self.message,
            _ => return,
        };
        let _ = write!(slot, "{value:?}");
    }
}

/// Exports guest log lines on a thread of its own while it lives.
pub struct LogExporter {
    thread: Option<JoinHandle<()>>,
}

impl LogExporter {
    /// An exporter posting to `endpoint` (`http://host:4318`: records go to
    /// `{endpoint}/v1/logs`), reading runs' trace contexts from `store`.
    /// Lines logged before it starts are not exported.
    pub fn start(endpoint: &str, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let url = format!("{}/v1/logs", endpoint.trim_end_matches('/'));
        let (sender, lines) = crossbeam_channel::bounded::<Line>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("weft-logs".into())
            .spawn(move || export_all(&url, &*store, &lines))?;
        *QUEUE_IN.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
        Ok(Self {
            thread: Some(thread),
        })
    }
}

impl Drop for LogExporter {
    /// Exports what is queued, then stops.
    fn drop(&mut self) {
        QUEUE_IN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn export_all(url: &str, store: &dyn Store, lines: &Receiver<Line>) {
    let agent = traces::agent();
    // Each run's trace id, read once (a run's trace context never changes).
    let mut traces: HashMap<String, Vec<u8>> = HashMap::new();
    while let Ok(first) = lines.recv() {
        let batch: Vec<Line> = std::iter::once(first)
            .chain(lines.try_iter().take(BATCH - 1))
            .collect();
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "logs: guest log lines came faster than the OTLP export; some were not exported"
            );
        }
        if traces.len() > 10_000 {
            traces.clear();
        }
        let records = batch
            .into_iter()
            .map(|line| {
                let trace = traces
                    .entry(line.run.clone())
                    .or_insert_with(|| trace_of(store, &line.run))
                    .clone();
                record(line, trace)
            })
            .collect();
        post(&agent, url, records);
    }
}

/// The trace id a run's spans are exported under (as the traces do).
fn trace_of(store: &dyn Store, run: &str) -> Vec<u8> {
    let Ok(id) = RunId::new(run) else {
        return Vec::new();
    };
    let parent = store
        .trace(&id)
        .ok()
        .flatten()
        .as_deref()
        .and_then(parse_traceparent);
    parent
        .map_or_else(|| run_trace_id(&id), |(trace, _)| trace)
        .to_vec()
}

fn record(line: Line, trace_id: Vec<u8>) -> LogRecord {
    let (severity, text) = match line.level.as_str() {
        "Trace" => (SeverityNumber::Trace, "TRACE"),
        "Debug" => (SeverityNumber::Debug, "DEBUG"),
        "Warn" => (SeverityNumber::Warn, "WARN"),
        "Error" => (SeverityNumber::Error, "ERROR"),
        _ => (SeverityNumber::Info, "INFO"),
    };
    LogRecord {
        time_unix_nano: line.at,
        observed_time_unix_nano: line.at,
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(line.message)),
        }),
        attributes: vec![
            attribute("weft.run_id", line.run),
            attribute("weft.address", line.address),
            int_attribute("weft.attempt", i64::try_from(line.attempt).unwrap_or(0)),
        ],
        trace_id,
        span_id: hex::decode(&line.span_id).unwrap_or_default(),
        ..LogRecord::default()
    }
}

fn post(agent: &ureq::Agent, url: &str, records: Vec<LogRecord>) {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    if let Err(e) = traces::post(agent, url, &request.encode_to_vec()) {
        tracing::warn!("logs: guest log records were not exported: {e}");
    }
}
