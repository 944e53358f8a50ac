//! A loaded [`StepComponent`] and one attempt of it: a fresh store and
//! instance, the call of `run`, and the classification of how it ended.

use std::sync::Arc;

use serde_json::{Value, json};
use wasmtime::{Store, Trap, WasmBacktrace};
use weft_core::{
    ErrorCause, FailureKind, Limits, LogLevel, LogLine, StepError, StepOutcome, StepReport,
    StepTask, StepView,
};

use crate::bindings::{self, Outcome, StepContext, StepPre};
use crate::cache::{ContentHash, LoadedFrom};
use crate::host::{HostState, Leftovers, MemoryCap};
use crate::imports::NeededGrants;
use crate::sandbox::{EPOCH_TICK, EpochTicker};

/// What the sandbox keeps per distinct component content, whatever the grants.
pub(crate) struct Compiled {
    /// Pre-instantiated against the sandbox's linker, `run` type-checked.
    pub(crate) pre: StepPre<HostState>,
    /// Its imports that need a grant.
    pub(crate) needs: NeededGrants,
    pub(crate) hash: ContentHash,
}

/// A step component, loaded and checked for a step's grants, ready to run
/// attempts. Cheap to share: attempts on several threads at once are fine.
pub struct StepComponent {
    compiled: Arc<Compiled>,
    name: String,
    capture_stdio: bool,
    loaded_from: LoadedFrom,
    // Deadlines need the epoch to advance for as long as the component exists.
    _ticker: Arc<EpochTicker>,
}

impl std::fmt::Debug for StepComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepComponent")
            .field("name", &self.name)
            .field("content_hash", &self.compiled.hash)
            .field("capture_stdio", &self.capture_stdio)
            .field("loaded_from", &self.loaded_from)
            .finish_non_exhaustive()
    }
}

/// How an attempt failed before `run` returned.
enum Failure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

impl StepComponent {
    pub(crate) fn new(
        compiled: Arc<Compiled>,
        name: String,
        capture_stdio: bool,
        loaded_from: LoadedFrom,
        ticker: Arc<EpochTicker>,
    ) -> Self {
        Self {
            compiled,
            name,
            capture_stdio,
            loaded_from,
            _ticker: ticker,
        }
    }

    /// The component's name: its path, or the name given to `load_bytes`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 (hex) of the bytes it was loaded from.
    pub fn content_hash(&self) -> String {
        self.compiled.hash.to_string()
    }

    /// Where its compiled code came from when it was loaded.
    pub fn loaded_from(&self) -> LoadedFrom {
        self.loaded_from
    }

    /// Runs one attempt of `task` in a fresh instance, under `limits`.
    ///
    /// Never panics and never fails: every way the attempt can end is in the
    /// report's `outcome`, with the state, events and logs it produced (the
    /// caller discards the state of a failed attempt).
    pub fn run(&self, task: &StepTask, view: &StepView, limits: &Limits) -> StepReport {
        let input = task.input.to_string();
        if input.len() as u64 > limits.max_input_bytes {
            return StepReport::failed(StepError::host(
                FailureKind::PayloadTooLarge,
                format!(
                    "the step's input is {} bytes, over the limit of {} bytes",
                    input.len(),
                    limits.max_input_bytes
                ),
            ));
        }
        let ctx = StepContext {
            run_id: task.run.to_string(),
            workflow_id: task.workflow.to_string(),
            step_id: task.step.to_string(),
            step_path: task.path.to_string(),
            attempt: task.attempt,
            idempotency_key: task.idempotency_key.clone(),
            resume_payload: task.resume_payload.as_ref().map(Value::to_string),
            suspend_payload: task.suspend_payload.as_ref().map(Value::to_string),
            iteration: task.iteration,
        };

        let pre = &self.compiled.pre;
        let mut store = Store::new(
            pre.engine(),
            HostState::new(view, limits, self.capture_stdio),
        );
        store.limiter(|state| &mut state.memory);
        if let Err(error) = store.set_fuel(limits.fuel.unwrap_or(u64::MAX)) {
            return StepReport::failed(StepError::host(
                FailureKind::Host,
                format!("cannot set the step's fuel: {error:#}"),
            ));
        }
        store.set_epoch_deadline(deadline_ticks(limits.deadline_ms));
        store.epoch_deadline_trap();

        let result = match pre.instantiate(&mut store) {
            Ok(step) => step
                .call_run(&mut store, &input, &ctx)
                .map_err(Failure::Call),
            Err(error) => Err(Failure::Instantiate(error)),
        };
        let report = report(result, store.into_data().finish(), limits);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let outcome = match &report.outcome {
                Ok(StepOutcome::Completed(_)) => "completed",
                Ok(StepOutcome::Suspended { .. }) => "suspended",
                Ok(StepOutcome::Bailed(_)) => "bailed",
                Err(error) => error.kind.as_str(),
            };
            tracing::debug!(
                component = %self.name,
                step = %task.step,
                path = %task.path,
                attempt = task.attempt,
                outcome,
                "step attempt finished"
            );
        }
        report
    }
}

/// Epoch ticks for a deadline: rounded up, plus one because the current tick
/// is already partly over.
fn deadline_ticks(deadline_ms: u64) -> u64 {
    let tick_ms = EPOCH_TICK.as_millis().max(1) as u64;
    deadline_ms.div_ceil(tick_ms).saturating_add(1)
}

fn report(
    result: Result<Result<Outcome, bindings::StepError>, Failure>,
    left: Leftovers,
    limits: &Limits,
) -> StepReport {
    let Leftovers {
        state,
        events,
        logs,
        violation,
        memory,
    } = left;
    let outcome = match (violation, result) {
        // A limit broken through an import fails the attempt, whatever the
        // guest did next (it may have ignored a `set-state` error).
        (Some(violation), _) => Err(violation),
        (None, Ok(Ok(outcome))) => outcome_of(outcome, limits),
        (None, Ok(Err(error))) => Err(step_error_of(error)),
        (None, Err(Failure::Call(error))) => Err(classify(&error, &memory, limits, &logs, false)),
        (None, Err(Failure::Instantiate(error))) => {
            Err(classify(&error, &memory, limits, &logs, true))
        }
    };
    StepReport {
        outcome,
        state,
        events,
        logs,
    }
}

// `StepError` is large, but these build the report's own `Result<StepOutcome,
// StepError>`: boxing it only to unbox it again would buy nothing.
#[allow(clippy::result_large_err)]
fn outcome_of(outcome: Outcome, limits: &Limits) -> Result<StepOutcome, StepError> {
    let max = limits.max_output_bytes;
    Ok(match outcome {
        Outcome::Completed(text) => {
            StepOutcome::Completed(payload(&text, max, "output", FailureKind::InvalidOutput)?)
        }
        Outcome::Bailed(text) => StepOutcome::Bailed(payload(
            &text,
            max,
            "bail output",
            FailureKind::InvalidOutput,
        )?),
        Outcome::Suspended(bindings::Suspension {
            payload: text,
            resume_labels,
        }) => {
            let payload = payload(&text, max, "suspend payload", FailureKind::InvalidSuspend)?;
            StepOutcome::Suspended {
                payload,
                labels: resume_labels,
            }
        }
    })
}

/// Parses a JSON payload the guest returned, within `max` bytes.
#[allow(clippy::result_large_err)]
fn payload(text: &str, max: u64, what: &str, invalid: FailureKind) -> Result<Value, StepError> {
    if text.len() as u64 > max {
        return Err(StepError::host(
            FailureKind::PayloadTooLarge,
            format!(
                "the step's {what} is {} bytes, over the limit of {max} bytes",
                text.len()
            ),
        ));
    }
    serde_json::from_str(text).map_err(|error| {
        StepError::host(invalid, format!("the step's {what} is not JSON: {error}"))
    })
}

/// The guest's own error, with its JSON details parsed.
fn step_error_of(error: bindings::StepError) -> StepError {
    let bindings::StepError {
        code,
        message,
        details,
        retryable,
        causes,
    } = error;
    let invalid = |whose: &str, parse: serde_json::Error| {
        StepError::host(
            FailureKind::InvalidOutput,
            format!(
                "the step failed with error `{code}`, but {whose} details are not JSON: {parse}"
            ),
        )
    };
    let details = match details.as_deref().map(serde_json::from_str).transpose() {
        Ok(details) => details,
        Err(parse) => return invalid("its", parse),
    };
    let mut parsed = Vec::with_capacity(causes.len());
    for bindings::ErrorCause {
        code: cause,
        message,
        details,
    } in causes
    {
        match details.as_deref().map(serde_json::from_str).transpose() {
            Ok(details) => parsed.push(ErrorCause {
                code: cause,
                message,
                details,
            }),
            Err(parse) => return invalid(&format!("its cause `{cause}`'s"), parse),
        }
    }
    StepError {
        kind: FailureKind::Step,
        code,
        message,
        details,
        retryable,
        causes: parsed,
    }
}

/// Classifies an error of instantiation or of the call of `run`.
fn classify(
    error: &wasmtime::Error,
    memory: &MemoryCap,
    limits: &Limits,
    logs: &[LogLine],
    instantiating: bool,
) -> StepError {
    let trap = error.downcast_ref::<Trap>();
    match trap {
        Some(Trap::Interrupt) => {
            return StepError::host(
                FailureKind::Deadline,
                format!(
                    "the step ran past its deadline of {} ms",
                    limits.deadline_ms
                ),
            );
        }
        Some(Trap::OutOfFuel) => {
            return StepError::host(
                FailureKind::Fuel,
                format!(
                    "the step ran out of fuel (limit: {} units)",
                    limits.fuel.unwrap_or(u64::MAX)
                ),
            );
        }
        _ => {}
    }
    if let Some(wanted) = memory.denied {
        return StepError::host(
            FailureKind::Memory,
            format!(
                "the step tried to grow its memory to {wanted} bytes, past its limit of {} bytes",
                memory.cap()
            ),
        );
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return StepError::host(
            FailureKind::Trap,
            format!(
                "the step called exit({}) instead of returning from `run`",
                exit.0
            ),
        );
    }
    if instantiating && trap.is_none() {
        return StepError::host(
            FailureKind::Host,
            format!("cannot instantiate the step's component: {error:#}"),
        );
    }

    let what = match trap {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    let what = what.strip_prefix("wasm trap: ").unwrap_or(&what);
    let mut message = format!("the step trapped: {what}");
    if let Some(panic) = panic_message(logs) {
        message.push_str(&format!(" ({panic})"));
    }
    let mut failure = StepError::host(FailureKind::Trap, message);
    if let Some(backtrace) = error.downcast_ref::<WasmBacktrace>() {
        let frames: Vec<String> = backtrace
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_owned)
            .collect();
        failure = failure.with_details(json!({ "backtrace": frames }));
    }
    failure
}

/// The panic message a guest printed to stderr before trapping (Rust guests
/// with stdio print `thread '…' panicked at file:line:col:` then the message).
fn panic_message(logs: &[LogLine]) -> Option<String> {
    let at = logs
        .iter()
        .rposition(|line| line.level == LogLevel::Warn && line.message.contains("panicked at"))?;
    let mut text = logs[at].message.trim_end_matches(':').to_owned();
    if let Some(next) = logs.get(at + 1).filter(|line| line.level == LogLevel::Warn) {
        text.push_str(": ");
        text.push_str(&next.message);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_ticks() {
        assert_eq!(deadline_ticks(0), 1);
        assert_eq!(deadline_ticks(1), 2);
        assert_eq!(deadline_ticks(5), 2);
        assert_eq!(deadline_ticks(6), 3);
        assert_eq!(deadline_ticks(u64::MAX), u64::MAX.div_ceil(5) + 1);
    }

    #[test]
    fn step_errors_keep_the_guest_code_and_parse_details() {
        let error = step_error_of(bindings::StepError {
            code: "card-declined".into(),
            message: "no".into(),
            details: Some(r#"{"a":1}"#.into()),
            retryable: true,
            causes: vec![bindings::ErrorCause {
                code: "issuer".into(),
                message: "m".into(),
                details: None,
            }],
        });
        assert_eq!(error.kind, FailureKind::Step);
        assert_eq!(error.code, "card-declined");
        assert_eq!(error.details, Some(json!({"a": 1})));
        assert!(error.retryable);
        assert_eq!(error.causes[0].code, "issuer");

        let error = step_error_of(bindings::StepError {
            code: "x".into(),
            message: "m".into(),
            details: Some("{".into()),
            retryable: false,
            causes: Vec::new(),
        });
        assert_eq!(error.kind, FailureKind::InvalidOutput);
    }
}
