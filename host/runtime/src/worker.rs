//! Executing one step attempt.

use std::panic::AssertUnwindSafe;

use weft_core::{
    Clock, Event, FailureKind, Interrupt, LogLine, StepError, StepReport, StepRunner, StepTask,
    StepView, Workflow, check_input, settle,
};

/// What executing one attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The events to append, in order: custom events, then the attempt's end.
    pub events: Vec<Event>,
}

/// Runs one attempt of `task`: checks its input against the step's input
/// schema (a failing input fails the attempt without running the step),
/// runs it, and settles the report into events stamped with `clock`. Its
/// log lines go to weft's log (not events: see [`log_lines`]).
///
/// A runner that panics (a bug in the host, never guest behaviour) fails the
/// attempt with a `host` error instead of taking the runtime's thread down.
pub fn execute_step(
    workflow: &Workflow,
    runner: &dyn StepRunner,
    clock: &dyn Clock,
    task: &StepTask,
    view: &StepView,
    interrupt: &Interrupt,
) -> Executed {
    let mut report = match check_input(workflow, task) {
        Ok(()) => {
            std::panic::catch_unwind(AssertUnwindSafe(|| runner.run_until(task, view, interrupt)))
                .unwrap_or_else(|panic| {
                    StepReport::failed(StepError::host(
                        FailureKind::Host,
                        format!(
                            "step `{}`: the step runner panicked: {}",
                            task.step,
                            panic_message(&*panic)
                        ),
                    ))
                })
        }
        Err(error) => StepReport::failed(error),
    };
    log_lines(task, &std::mem::take(&mut report.logs));
    let events = settle(workflow, task, report, clock.now());
    Executed { events }
}

/// The target of guest log lines in weft's log: what a subscriber selects
/// to export them (the server's OTLP log records).
pub const GUEST_LOG_TARGET: &str = "weft::guest";

/// Hands an attempt's log lines to `tracing` (shown with `--log info`),
/// each with its run, address, attempt and the span id of the attempt's
/// span in the run's trace ([`crate::trace_ids`]): the same in both
/// runtimes.
fn log_lines(task: &StepTask, lines: &[LogLine]) {
    if lines.is_empty() {
        return;
    }
    let span = crate::trace_ids::attempt_span_id(
        &task.run,
        task.path.as_str(),
        task.attempt,
        task.started_at,
    );
    let span = crate::trace_ids::hex_id(&span);
    for line in lines {
        tracing::info!(
            target: GUEST_LOG_TARGET,
            run = %task.run,
            step = %task.path,
            attempt = task.attempt,
            span_id = %span,
            level = ?line.level,
            "{}",
            line.message
        );
    }
}

/// The text of a panic payload (a `&str` or `String`), for error messages.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text panic payload")
}
