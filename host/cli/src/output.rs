//! Human-readable output: live per-step lines and the final summary, and
//! the two rules every printing command follows.
//!
//! - **Untrusted text is escaped.** Error codes and messages, event kinds
//!   and data, labels, payloads, outputs and log lines come from guests (run
//!   ids and reasons from whoever started or canceled a run). Printed raw, a
//!   guest could clear the screen, retitle the terminal or forge lines such
//!   as `run … succeeded`. Human output passes all of it through [`escape`];
//!   `--json` output stays exact (JSON escapes control characters itself).
//! - **A closed stdout ends the output quietly.** `weft events RUN | head -1`
//!   closes the pipe after one line; [`print`] reports that as "stop
//!   printing", not as an error, and the command exits with the code it
//!   would have had anyway.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use serde_json::Value;
use weft_core::{Event, RunId, RunResult, RunStatus, StepPath, StepRecord, StepStatus, Timestamp};
use weft_runtime::RunObserver;

use crate::exit::Failure;
use crate::paged::ReadFailed;

/// `text` safe to print on a terminal: every control character (C0, DEL,
/// C1 — ESC, CR, LF, tab, backspace, the 8-bit CSI …) and every Unicode
/// bidirectional formatting character (which reorders what follows it on the
/// line) is replaced by a visible escape: `\n`, `\r`, `\t`, else `\u{1b}`.
/// Other text, including non-ASCII letters, is unchanged (and not copied).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Escapes each line of a multi-line text of our own making (pretty JSON),
/// keeping its line breaks.
fn escape_lines(text: &str) -> String {
    text.lines().map(escape).collect::<Vec<_>>().join("\n")
}

/// Writes to stdout with `write`, then flushes.
///
/// Returns `Ok(false)` when stdout is closed (the reader of a pipe went
/// away): the output ends there, quietly, and a command that keeps printing
/// (`weft events --follow`) stops.
///
/// # Errors
/// Any other write error (e.g. a full disk), as an I/O failure (exit 5).
pub fn print(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<bool, Failure> {
    let mut out = io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        // Reading what was being printed failed, not writing it.
        Err(e) if e.get_ref().is_some_and(|inner| inner.is::<ReadFailed>()) => {
            Err(Failure::other(e))
        }
        Err(e) => Err(Failure::other(
            anyhow::Error::new(e).context("cannot write to stdout"),
        )),
    }
}

/// [`print`] for the last output of a command whose exit code is already
/// decided (a run's result): a write error other than a closed pipe is
/// reported on stderr and does not change the exit code.
fn print_last(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
    if let Err(failure) = print(write) {
        eprintln!("error: {failure}");
    }
}

fn micros(start: u64, end: u64) -> String {
    let us = end.saturating_sub(start);
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else {
        format!("{:.2} ms", us as f64 / 1e3)
    }
}

/// A JSON value on one line, cut after 120 characters, escaped.
pub fn compact(value: &Value) -> String {
    let text = value.to_string();
    let text = if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    };
    escape(&text).into_owned()
}

/// Says on stderr when the run sleeps (step log lines go to `tracing` in
/// both runtimes, shown with `--log info`; the log layer set up in `main`
/// escapes them).
pub struct SleepNotes;

impl RunObserver for SleepNotes {
    fn event(&mut self, _run: &RunId, event: &Event) {
        if let Event::SleepStarted { path, until, .. } = event {
            sleeping_note(path, *until);
        }
    }
}

/// Says on stderr that the run sleeps (the foreground `weft run` waits).
pub fn sleeping_note(path: &StepPath, until: Timestamp) {
    eprintln!("sleeping until {} ({path})", until.rfc3339());
}

/// Follows the sleeps a run's events start and finish: (address, wake
/// time) of those still asleep after `event`.
fn sleeping(asleep: &mut Vec<(StepPath, Timestamp)>, event: &Event) {
    match event {
        Event::SleepStarted { path, until, .. } => asleep.push((path.clone(), *until)),
        Event::NodeCompleted { path, .. } => asleep.retain(|(p, _)| p != path),
        _ => {}
    }
}

/// Called with each of a run's events, in order.
pub type Visit<'v> = dyn FnMut(&Event) -> io::Result<()> + 'v;

/// A run's events, visited in order by the summary: page after page from
/// the store ([`crate::paged::each_stored`]), never all held at once.
pub type Events<'a> = &'a mut dyn FnMut(&mut Visit<'_>) -> io::Result<()>;

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
/// custom events steps emitted, then the outcome. Guest-controlled text is
/// escaped.
pub fn summary(result: &RunResult, events: Events<'_>) {
    print_last(|out| write_summary(out, result, events));
}

fn write_summary(out: &mut dyn Write, result: &RunResult, events: Events<'_>) -> io::Result<()> {
    let run = escape(result.run_id.as_str());
    writeln!(out, "run {run} (workflow {})", result.workflow_id)?;
    for record in &result.steps {
        writeln!(out, "{}", step_line(record))?;
    }
    let mut asleep = Vec::new();
    events(&mut |event| {
        sleeping(&mut asleep, event);
        if let Event::Custom { path, event, .. } = event {
            writeln!(
                out,
                "  {:<24} event {} {}",
                path.as_str(),
                escape(&event.kind),
                compact(&event.data)
            )?;
        }
        Ok(())
    })?;
    match result.status {
        RunStatus::Success => {
            let output = result.output.as_ref().unwrap_or(&Value::Null);
            let pretty = serde_json::to_string_pretty(output).unwrap_or_default();
            writeln!(
                out,
                "run {run} succeeded; output:\n{}",
                escape_lines(&pretty)
            )?;
        }
        RunStatus::Failed => {
            writeln!(out, "run {run} failed")?;
            if let Some(error) = &result.error {
                let at = error
                    .step
                    .as_ref()
                    .map(|p| format!(" at step `{p}`"))
                    .unwrap_or_default();
                let e = &error.error;
                writeln!(
                    out,
                    "  error{at}: [{}] {}",
                    escape(&e.code),
                    escape(&e.message)
                )?;
                if let Some(details) = &e.details {
                    writeln!(out, "  details: {}", compact(details))?;
                }
                for cause in &e.causes {
                    writeln!(
                        out,
                        "  caused by: [{}] {}",
                        escape(&cause.code),
                        escape(&cause.message)
                    )?;
                }
            }
        }
        RunStatus::Suspended => {
            writeln!(out, "run {run} suspended")?;
            for s in &result.suspended {
                let labels = if s.labels.is_empty() {
                    String::new()
                } else {
                    format!(" (labels: {})", escape(&s.labels.join(", ")))
                };
                writeln!(out, "  {}{labels}: {}", s.path, compact(&s.payload))?;
            }
            writeln!(
                out,
                "resume with: weft resume {run} [--step PATH | --label LABEL] --data JSON"
            )?;
        }
        RunStatus::Canceled => writeln!(out, "run {run} was canceled")?,
        RunStatus::Pending | RunStatus::Running => {
            writeln!(out, "run {run} is {}", result.status)?;
            for (path, until) in asleep {
                writeln!(out, "  {path}: sleeping until {}", until.rfc3339())?;
            }
            writeln!(
                out,
                "unless a weft process still drives it, `weft recover` continues it"
            )?;
        }
    }
    Ok(())
}

/// Prints the result as one JSON object.
pub fn json(result: &RunResult) {
    print_last(|out| {
        serde_json::to_writer(&mut *out, result)?;
        writeln!(out)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_control_characters_visible() {
        assert!(matches!(escape("plain, ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\u{1b}[2J\r\nfake: run succeeded\t\u{7}\u{7f}\u{9b}"),
            "\\u{1b}[2J\\r\\nfake: run succeeded\\t\\u{7}\\u{7f}\\u{9b}"
        );
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(
            escape_lines("{\n  \"a\": \"\u{9b}\"\n}"),
            "{\n  \"a\": \"\\u{9b}\"\n}"
        );
    }
}
