//! A loaded [`StepComponent`] and one attempt of it: a fresh store and
//! instance, the call of `run`, and the classification of how it ended.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};
use weft_core::{
    FailureKind, Interrupt, Limits, LogLevel, LogLine, Measured, StepError, StepOutcome,
    StepReport, StepTask, StepView,
};

use crate::bindings::{self, Outcome, StepContext, StepPre};
use crate::cache::{ContentHash, LoadedFrom};
use crate::deadline::{Deadline, EPOCH_TICK, EpochTicker, TickSchedule};
use crate::executor::{self, Stopped};
use crate::host::{HostState, Leftovers, MemoryCap};
use crate::outcome::{self, hostcall_budget, outcome_of, step_error_of};
use crate::wasi::{AttemptWasi, WasiGrants};

/// What the sandbox keeps per distinct component content, whatever the grants.
pub(crate) struct Compiled {
    /// Pre-instantiated against the sandbox's linker, `run` type-checked.
    pub(crate) pre: StepPre<HostState>,
    pub(crate) hash: ContentHash,
}

/// A step component, loaded and checked for a step's grants, ready to run
/// attempts. Cheap to share: attempts on several threads at once are fine.
pub struct StepComponent {
    compiled: Arc<Compiled>,
    name: String,
    grants: WasiGrants,
    loaded_from: LoadedFrom,
    // Deadlines need the epoch to advance for as long as the component exists.
    _ticker: Arc<EpochTicker>,
}

impl std::fmt::Debug for StepComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepComponent")
            .field("name", &self.name)
            .field("content_hash", &self.compiled.hash)
            .field("grants", &self.grants)
            .field("loaded_from", &self.loaded_from)
            .finish_non_exhaustive()
    }
}

/// How an attempt failed before `run` returned.
enum Failure {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    /// Abandoned while blocked in a host call, or interrupted.
    Stopped(Stopped),
}

impl StepComponent {
    pub(crate) fn new(
        compiled: Arc<Compiled>,
        name: String,
        grants: WasiGrants,
        loaded_from: LoadedFrom,
        ticker: Arc<EpochTicker>,
    ) -> Self {
        Self {
            compiled,
            name,
            grants,
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
        self.run_until(task, view, limits, &Interrupt::new())
    }

    /// As [`StepComponent::run`], stopped early when `interrupt` fires: the
    /// guest is stopped wherever it is (in its own code within one epoch
    /// tick, in a blocking host call at once) and the attempt fails as
    /// [`FailureKind::Host`], retryable (the runtime that fired it discards
    /// the report).
    pub fn run_until(
        &self,
        task: &StepTask,
        view: &StepView,
        limits: &Limits,
        interrupt: &Interrupt,
    ) -> StepReport {
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
            step_id: task.step.declared().to_owned(),
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
            HostState::new(view, limits, AttemptWasi::new(self.grants, task, limits)),
        );
        store.limiter(|state| &mut state.memory);
        let fuel = limits.fuel.unwrap_or(u64::MAX);
        if let Err(error) = store.set_fuel(fuel) {
            return StepReport::failed(StepError::host(
                FailureKind::Host,
                format!("cannot set the step's fuel: {error:#}"),
            ));
        }
        // What wasmtime may copy out of the guest at once (see `outcome`).
        store.set_hostcall_fuel(hostcall_budget(limits));
        // The deadline counts from here, on the monotonic clock; epoch ticks
        // only wake the check up (see `deadline`).
        let now = Instant::now();
        let deadline = Deadline::after(now, limits.deadline_ms, TickSchedule::every(EPOCH_TICK));
        store.set_epoch_deadline(deadline.first_wait(now));
        let stop = interrupt.clone();
        store.epoch_deadline_callback(move |_| {
            Ok(if stop.is_fired() {
                UpdateDeadline::Interrupt
            } else {
                deadline.on_epoch(Instant::now())
            })
        });

        // The guest runs on a fiber: blocked in a host call, it is stopped by
        // the deadline or the interrupt all the same (see `executor`).
        let call = async {
            match pre.instantiate_async(&mut store).await {
                Ok(step) => step
                    .call_run(&mut store, &input, &ctx)
                    .await
                    .map_err(Failure::Call),
                Err(error) => Err(Failure::Instantiate(error)),
            }
        };
        let result = match executor::run_until(call, deadline.at(), interrupt) {
            Ok(Ok(result)) => result,
            Ok(Err(Stopped::Deadline)) => Err(Failure::Stopped(Stopped::Deadline)),
            Ok(Err(Stopped::Interrupted)) => Err(Failure::Stopped(Stopped::Interrupted)),
            Err(reason) => return StepReport::failed(StepError::host(FailureKind::Host, reason)),
        };
        // Fuel is on for every store (the engine's config), so `get_fuel`
        // answers; what is left never exceeds what was given.
        let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(fuel));
        let report = report(result, store.into_data().finish(), limits, fuel_used);
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

fn report(
    result: Result<Result<Outcome, bindings::StepError>, Failure>,
    left: Leftovers,
    limits: &Limits,
    fuel_used: u64,
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
        (None, Ok(Err(error))) => Err(step_error_of(error, limits)),
        (None, Err(Failure::Call(error))) => Err(classify(&error, &memory, limits, &logs, false)),
        (None, Err(Failure::Instantiate(error))) => {
            Err(classify(&error, &memory, limits, &logs, true))
        }
        (None, Err(Failure::Stopped(Stopped::Deadline))) => Err(past_deadline(limits)),
        (None, Err(Failure::Stopped(Stopped::Interrupted))) => Err(interrupted()),
    };
    let measured = Measured {
        fuel: fuel_used,
        memory_peak: memory.used(),
    };
    StepReport {
        outcome,
        state,
        events,
        logs,
        measured: Some(measured),
    }
}

fn past_deadline(limits: &Limits) -> StepError {
    StepError::host(
        FailureKind::Deadline,
        format!(
            "the step ran past its deadline of {} ms",
            limits.deadline_ms
        ),
    )
}

fn interrupted() -> StepError {
    StepError::host(
        FailureKind::Host,
        "the attempt was interrupted: its run was canceled or is no longer driven by this process",
    )
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
        // The epoch callback interrupts at the deadline, or when the
        // attempt's interrupt fired (then the report is discarded anyway).
        Some(Trap::Interrupt) => return past_deadline(limits),
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
    // The guest's result (or a host call's arguments) could not be copied out
    // of it: too large for any limit, or text that is not UTF-8.
    if outcome::is_over_budget(error) {
        return outcome::over_budget(limits);
    }
    if let Some(utf8) = error.downcast_ref::<std::str::Utf8Error>() {
        return StepError::host(
            FailureKind::InvalidOutput,
            format!("the step handed the host text that is not UTF-8: {utf8}"),
        );
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
