//! Turning what a runner reported into events, with the step's schemas
//! applied. Both runtimes call these, so validation cannot drift apart.

use serde_json::Value;

use crate::error::{FailureKind, StepError};
use crate::event::Event;
use crate::id::Timestamp;
use crate::runner::{StepOutcome, StepReport, StepTask};
use crate::schema::Schema;
use crate::workflow::Workflow;

/// Checks a task's input against its step's input schema before it runs.
///
/// # Errors
/// An [`FailureKind::InvalidInput`] error naming the violations.
pub fn check_input(workflow: &Workflow, task: &StepTask) -> Result<(), StepError> {
    let Some(schema) = workflow
        .step(&task.step)
        .and_then(|s| s.input_schema.as_ref())
    else {
        return Ok(());
    };
    schema.validate(&task.input).map_err(|e| {
        StepError::host(
            FailureKind::InvalidInput,
            format!("step `{}`: input fails the input schema: {e}", task.step),
        )
    })
}

fn check(
    schema: Option<&Schema>,
    value: &Value,
    kind: FailureKind,
    what: &str,
    task: &StepTask,
) -> Result<(), StepError> {
    match schema.map(|s| s.validate(value)) {
        Some(Err(e)) => Err(StepError::host(
            kind,
            format!("step `{}`: {what} fails the {what} schema: {e}", task.step),
        )),
        _ => Ok(()),
    }
}

/// The events that record `report` for `task`: its custom events, then one
/// of `step-completed`, `step-suspended`, `step-bailed` or `step-failed`.
///
/// An output, suspend payload or state that fails its schema turns the
/// attempt into a failure (`invalid-output`, `invalid-suspend`,
/// `invalid-state`), and a failed attempt's state is discarded.
pub fn settle(
    workflow: &Workflow,
    task: &StepTask,
    report: StepReport,
    at: Timestamp,
) -> Vec<Event> {
    let path = task.path.clone();
    let mut events: Vec<Event> = report
        .events
        .into_iter()
        .map(|event| Event::Custom {
            path: path.clone(),
            event,
            at,
        })
        .collect();
    let def = workflow.step(&task.step);
    let checked_state = |state: Option<Value>| -> Result<Option<Value>, StepError> {
        if let Some(state) = &state {
            let step_schema = def.and_then(|d| d.state_schema.as_ref());
            check(step_schema, state, FailureKind::InvalidState, "state", task)?;
            check(
                workflow.state_schema(),
                state,
                FailureKind::InvalidState,
                "state",
                task,
            )?;
        }
        Ok(state)
    };
    let measured = report.measured;
    let result = report.outcome.and_then(|outcome| match outcome {
        StepOutcome::Completed(output) => {
            let schema = def.and_then(|d| d.output_schema.as_ref());
            check(schema, &output, FailureKind::InvalidOutput, "output", task)?;
            let state = checked_state(report.state)?;
            Ok(Event::StepCompleted {
                path: path.clone(),
                output: output.into(),
                state,
                measured,
                at,
            })
        }
        StepOutcome::Suspended { payload, labels } => {
            let schema = def.and_then(|d| d.suspend_schema.as_ref());
            check(
                schema,
                &payload,
                FailureKind::InvalidSuspend,
                "suspend",
                task,
            )?;
            let state = checked_state(report.state)?;
            Ok(Event::StepSuspended {
                path: path.clone(),
                payload,
                labels,
                state,
                measured,
                at,
            })
        }
        StepOutcome::Bailed(output) => {
            let state = checked_state(report.state)?;
            Ok(Event::StepBailed {
                path: path.clone(),
                output,
                state,
                measured,
                at,
            })
        }
    });
    events.push(result.unwrap_or_else(|error| Event::StepFailed {
        path,
        error,
        measured,
        at,
    }));
    events
}
