//! Executing one step attempt.

use weft_core::{
    Clock, Event, LogLine, StepReport, StepRunner, StepTask, StepView, Workflow, check_input,
    settle,
};

/// What executing one attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The events to append, in order: custom events, then the attempt's end.
    pub events: Vec<Event>,
    /// The attempt's log lines (not events: they go to the run log).
    pub logs: Vec<LogLine>,
}

/// Runs one attempt of `task`: checks its input against the step's input
/// schema (a failing input fails the attempt without running the step),
/// runs it, and settles the report into events stamped with `clock`.
pub fn execute_step(
    workflow: &Workflow,
    runner: &dyn StepRunner,
    clock: &dyn Clock,
    task: &StepTask,
    view: &StepView,
) -> Executed {
    let mut report = match check_input(workflow, task) {
        Ok(()) => runner.run(task, view),
        Err(error) => StepReport::failed(error),
    };
    let logs = std::mem::take(&mut report.logs);
    let events = settle(workflow, task, report, clock.now());
    Executed { events, logs }
}
