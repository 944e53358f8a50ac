//! Human-readable output: live per-step lines and the final summary.

use std::io::Write as _;

use serde_json::Value;
use weft_core::{Event, LogLine, RunId, RunResult, RunStatus, StepPath, StepRecord, StepStatus};
use weft_runtime::RunObserver;

fn micros(start: u64, end: u64) -> String {
    let us = end.saturating_sub(start);
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else {
        format!("{:.2} ms", us as f64 / 1e3)
    }
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

/// Forwards step log lines to `tracing` (shown with `--log info`), as the
/// evented runtime does, so both runtimes print the same.
pub struct LogObserver;

impl RunObserver for LogObserver {
    fn log(&mut self, run: &RunId, path: &StepPath, line: &LogLine) {
        tracing::info!(run = %run, step = %path, level = ?line.level, "{}", line.message);
    }
}

fn step_line(record: &StepRecord) -> String {
    let status = match record.status {
        StepStatus::Success => "success",
        StepStatus::Failed => "failed",
        StepStatus::Suspended => "suspended",
        StepStatus::Bailed => "bailed",
        StepStatus::Running => "running",
        StepStatus::Retrying => "retrying",
        StepStatus::Resumed => "resumed",
        StepStatus::Canceled => "canceled",
    };
    let took = record
        .ended_at
        .map(|end| micros(record.started_at.0, end.0))
        .unwrap_or_default();
    let attempts = if record.attempt > 1 {
        format!("  (attempt {})", record.attempt)
    } else {
        String::new()
    };
    format!(
        "  {:<24} {status:<10} {took:>10}{attempts}",
        record.path.as_str()
    )
}

/// Prints the run's result for humans: one line per step execution, the
/// custom events steps emitted, then the outcome.
pub fn summary(result: &RunResult, events: &[Event]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "run {} (workflow {})",
        result.run_id, result.workflow_id
    );
    for record in &result.steps {
        let _ = writeln!(out, "{}", step_line(record));
    }
    for event in events {
        if let Event::Custom { path, event, .. } = event {
            let _ = writeln!(
                out,
                "  {:<24} event {} {}",
                path.as_str(),
                event.kind,
                compact(&event.data)
            );
        }
    }
    match result.status {
        RunStatus::Success => {
            let output = result.output.as_ref().unwrap_or(&Value::Null);
            let pretty = serde_json::to_string_pretty(output).unwrap_or_default();
            let _ = writeln!(out, "run {} succeeded; output:\n{pretty}", result.run_id);
        }
        RunStatus::Failed => {
            let _ = writeln!(out, "run {} failed", result.run_id);
            if let Some(error) = &result.error {
                let at = error
                    .step
                    .as_ref()
                    .map(|p| format!(" at step `{p}`"))
                    .unwrap_or_default();
                let e = &error.error;
                let _ = writeln!(out, "  error{at}: [{}] {}", e.code, e.message);
                if let Some(details) = &e.details {
                    let _ = writeln!(out, "  details: {}", compact(details));
                }
                for cause in &e.causes {
                    let _ = writeln!(out, "  caused by: [{}] {}", cause.code, cause.message);
                }
            }
        }
        RunStatus::Suspended => {
            let _ = writeln!(out, "run {} suspended", result.run_id);
            for s in &result.suspended {
                let labels = if s.labels.is_empty() {
                    String::new()
                } else {
                    format!(" (labels: {})", s.labels.join(", "))
                };
                let _ = writeln!(out, "  {}{labels}: {}", s.path, compact(&s.payload));
            }
            let _ = writeln!(
                out,
                "resume with: weft resume {} [--step PATH | --label LABEL] --data JSON",
                result.run_id
            );
        }
        RunStatus::Canceled => {
            let _ = writeln!(out, "run {} was canceled", result.run_id);
        }
        RunStatus::Pending | RunStatus::Running => {
            let _ = writeln!(out, "run {} is {}", result.run_id, result.status);
        }
    }
}

/// Prints the result as one JSON object.
pub fn json(result: &RunResult) {
    println!("{}", serde_json::to_string(result).unwrap_or_default());
}
