//! Tests of the sandbox.
//!
//! Edge cases use inline WAT steps: a core module written here, given the
//! component-type metadata of a world of the real `wit/step.wit` (or of a small
//! world defined inline), loaded as is (the sandbox encodes core modules) or
//! encoded into a component first. Host imports are exercised with the Rust
//! `test-steps` guest (`guest-examples/dist/test-steps.wasm`), and steps
//! blocked in WASI with every language's conformance guest (`blocking`).

mod blocked;
mod blocking;
mod cache;
mod guest_data;
mod guests;
mod limits;
mod loading;
mod wasi;
pub(crate) mod wat_steps;

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::Value;
use weft_core::{
    FailureKind, Limits, RunId, StepError, StepId, StepOutcome, StepPath, StepReport, StepTask,
    StepView, Timestamp,
};
use weft_sandbox::{Sandbox, SandboxConfig, StepComponent};

// ---------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------

/// One sandbox for the whole test binary, as in a real process.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
        Sandbox::new(SandboxConfig {
            max_instances: 32,
            ..SandboxConfig::default()
        })
        .expect("the sandbox starts")
    });
    &SANDBOX
}

fn id(text: &str) -> StepId {
    StepId::new(text).unwrap()
}

fn task(input: Value) -> StepTask {
    StepTask {
        run: RunId::new("run-1").unwrap(),
        workflow: id("wf"),
        step: id("s"),
        path: StepPath::root(&id("s")),
        attempt: 1,
        idempotency_key: "run-1/s".into(),
        input: input.into(),
        resume_payload: None,
        suspend_payload: None,
        iteration: None,
        not_before: None,
        started_at: STARTED_AT,
    }
}

/// When test attempts start (2023-11-14T22:13:20.123456Z).
const STARTED_AT: Timestamp = Timestamp(1_700_000_000_123_456);

fn limits() -> Limits {
    Limits {
        deadline_ms: 5_000,
        ..Limits::default()
    }
}

fn run(component: &StepComponent, input: Value, limits: &Limits) -> StepReport {
    component.run(&task(input), &StepView::default(), limits)
}

#[track_caller]
fn completed(report: &StepReport) -> &Value {
    match &report.outcome {
        Ok(StepOutcome::Completed(output)) => output,
        other => panic!("expected a completed step, got {other:?}"),
    }
}

#[track_caller]
fn failure(report: &StepReport, kind: FailureKind) -> &StepError {
    match &report.outcome {
        Err(error) if error.kind == kind => error,
        other => panic!("expected a {} failure, got {other:?}", kind.as_str()),
    }
}

/// A deadline is never early, and it stops a guest that would never stop by
/// itself. The lower bound is a guarantee: the deadline runs from the start
/// of the call, which `elapsed` includes. The upper bound is generous on
/// purpose, 30 s: the guests here loop forever, so stopping at all is what
/// counts, and a loaded 2-core machine (four spinning guests, the rest of the
/// suite and its `weft` processes) can delay the epoch thread and the
/// guest's thread by far more than a tick. How late a deadline is — the
/// first 5 ms epoch tick after it, not drifting with its length or the load
/// — is unit-tested with a simulated clock in the sandbox's `deadline`
/// module (`deadlines_stop_at_the_first_tick_after_them_whatever_the_load`).
#[track_caller]
fn assert_on_time(elapsed: Duration, deadline_ms: u64) {
    let deadline = Duration::from_millis(deadline_ms);
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    assert!(
        elapsed < deadline + Duration::from_secs(30),
        "not stopped by its deadline: {elapsed:?}"
    );
}
