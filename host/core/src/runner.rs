//! The boundary to whatever executes a step (the sandbox), and time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StepError;
use crate::event::CustomEvent;
use crate::id::{RunId, StepId, StepPath, Timestamp};

/// One step execution to perform, as decided by [`crate::RunState::ready`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTask {
    /// The run.
    pub run: RunId,
    /// The workflow.
    pub workflow: StepId,
    /// The step to run. (qualified inside a nested workflow: `charge-flow/charge`).
    #[serde(deserialize_with = "StepId::deserialize_qualified")]
    pub step: StepId,
    /// The execution's path.
    pub path: StepPath,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Run id + path: identical for every retry and redelivery of this execution.
    pub idempotency_key: String,
    /// The step's input (shared: cloning a task does not copy it).
    pub input: Arc<Value>,
    /// The resume payload, when the execution runs again after a suspension.
    pub resume_payload: Option<Value>,
    /// The payload it suspended with before, when resumed.
    pub suspend_payload: Option<Value>,
    /// Foreach item index or loop iteration, where relevant.
    pub iteration: Option<u32>,
    /// Do not start before this time (retry delays).
    pub not_before: Option<Timestamp>,
    /// When this attempt started: the `at` of the `step-started` event the
    /// driver decided with it (set by [`crate::RunState::advance`] and
    /// [`crate::RunState::redeliver`]). The sandbox's deterministic wall
    /// clock reads it.
    #[serde(default)]
    pub started_at: Timestamp,
}

/// What a step can read of its run through the host imports. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StepView {
    /// The workflow input.
    pub workflow_input: Arc<Value>,
    /// The committed workflow state.
    pub state: Arc<Value>,
    /// Outputs of successful executions, by node id (for `step-result`).
    pub results: Arc<BTreeMap<StepId, Arc<Value>>>,
}

/// How a step execution ended when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Finished with an output.
    Completed(Value),
    /// Asks to suspend the run.
    Suspended {
        /// The suspend payload.
        payload: Value,
        /// Resume labels.
        labels: Vec<String>,
    },
    /// Ends the workflow successfully with this output.
    Bailed(Value),
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// A line of a step's log (its `log` calls and, when granted, its stdio).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Severity (stdout is `info`, stderr is `warn`).
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// What one attempt consumed, as the sandbox measured it: recorded with the
/// attempt's end ([`crate::Event::StepCompleted`] and the other ends) for
/// traces, the viewer and accounting. Measured, not decided: the state
/// machine never reads it, and two runs of one attempt may differ (a step
/// stopped at its deadline has used what it used by then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// Fuel units consumed (WebAssembly instructions, roughly).
    pub fuel: u64,
    /// The largest linear memory the instance held, in bytes.
    pub memory_peak: u64,
}

/// Everything one attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// How the attempt ended.
    pub outcome: Result<StepOutcome, StepError>,
    /// The state the step set (parsed), if it called `set-state`.
    pub state: Option<Value>,
    /// Custom events, in emission order.
    pub events: Vec<CustomEvent>,
    /// Log lines, in order.
    pub logs: Vec<LogLine>,
    /// What the attempt consumed, when measured (not for a failure before
    /// the guest ran, nor for a runner that does not measure).
    pub measured: Option<Measured>,
}

impl StepReport {
    /// A report of a failure before or outside the guest's code.
    pub fn failed(error: StepError) -> Self {
        Self {
            outcome: Err(error),
            state: None,
            events: Vec::new(),
            logs: Vec::new(),
            measured: None,
        }
    }
}

/// Executes steps. The sandbox implements it with WebAssembly components;
/// tests may implement it in plain Rust.
pub trait StepRunner: Send + Sync {
    /// Runs one attempt of `task`. Never panics on guest behaviour: every
    /// guest failure, trap and limit hit is a `StepError` in the report.
    fn run(&self, task: &StepTask, view: &StepView) -> StepReport;

    /// Runs one attempt of `task` that `interrupt` may stop early: once it
    /// fires (the run was canceled, or this process no longer owns the run),
    /// the attempt should end as soon as it can, with any report (the runtime
    /// discards it). The default runs the attempt to its end; the sandbox
    /// stops the guest wherever it is, in its own code or blocked in a host
    /// call.
    fn run_until(&self, task: &StepTask, view: &StepView, interrupt: &Interrupt) -> StepReport {
        let _ = interrupt;
        self.run(task, view)
    }
}

/// A one-way signal to attempts in flight: fired once, it stays fired.
/// Cheap to clone; every clone is the same signal. Waiting works from
/// threads ([`Interrupt::is_fired`], polled) and from futures
/// ([`Interrupt::poll_fired`]), without an async runtime.
#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<InterruptInner>,
}

#[derive(Default)]
struct InterruptInner {
    fired: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt")
            .field("fired", &self.is_fired())
            .finish()
    }
}

impl Interrupt {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal (again is a no-op) and wakes every future waiting on it.
    pub fn fire(&self) {
        if self.inner.fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let wakers = std::mem::take(&mut *self.wakers());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Ready once the signal has fired; otherwise wakes `cx`'s task when it does.
    pub fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            return Poll::Ready(());
        }
        {
            let mut wakers = self.wakers();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Fired between the check and the registration: `fire` may have
        // taken the wakers before ours was added.
        if self.is_fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.inner
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The source of time. The only way the runtimes learn what time it is.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Waits until `deadline` (returns at once if it has passed).
    fn sleep_until(&self, deadline: Timestamp);
    /// How long a thread that waits for messages until `deadline` should
    /// block on a real timer: the time left, for a clock that follows real
    /// time. A clock that jumps instead of sleeping returns zero (the waiter
    /// then calls [`Clock::sleep_until`], which jumps).
    fn wait_bound(&self, deadline: Timestamp) -> std::time::Duration {
        std::time::Duration::from_micros(deadline.micros_since(self.now()))
    }
}

/// A clock for tests: starts at a fixed time, advances by 1 µs per reading
/// (so events are strictly ordered) and jumps instead of sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start` first.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: AtomicU64::new(start.0),
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.fetch_add(1, Ordering::SeqCst))
    }

    fn sleep_until(&self, deadline: Timestamp) {
        self.now.fetch_max(deadline.0, Ordering::SeqCst);
    }

    fn wait_bound(&self, _deadline: Timestamp) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}
