//! The per-store state of one attempt and the host imports it implements.
//!
//! [`HostState`] lives in the attempt's `Store`. It serves `weft:step/host`
//! (reading the [`StepView`] only when the guest asks, so nothing is
//! serialized for a step that does not look), records what the attempt
//! produced (state, events, logs), enforces the limits that apply to imports,
//! caps the guest's memory, and builds a WASI context only if the guest
//! calls WASI.
//!
//! A limit broken through an import is a *violation*: it is recorded here and
//! fails the attempt, whatever the guest does afterwards.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use weft_core::{CustomEvent, FailureKind, Limits, LogLevel, LogLine, StepError, StepId, StepView};

use crate::bindings::{self, Json};
use crate::outcome::truncated;
use crate::stdio::Capture;
use crate::wasi::{self, AttemptWasi, SleepClock};

/// The store data of one attempt.
pub(crate) struct HostState {
    view: StepView,
    limits: Limits,
    /// The state this attempt set, if it called `set-state`.
    state: Option<Value>,
    events: Vec<CustomEvent>,
    logs: Vec<LogLine>,
    violation: Option<StepError>,
    pub(crate) memory: MemoryCap,
    /// What the attempt's WASI context is built from, on first use.
    wasi_setup: AttemptWasi,
    capture: Option<Arc<Mutex<Capture>>>,
    wasi: Option<Wasi>,
}

struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
    /// The logical clock without the `clocks` grant.
    logical: Option<Arc<wasi::Logical>>,
}

/// What an attempt left behind, once its store is gone.
pub(crate) struct Leftovers {
    pub(crate) state: Option<Value>,
    pub(crate) events: Vec<CustomEvent>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) violation: Option<StepError>,
    pub(crate) memory: MemoryCap,
}

impl HostState {
    pub(crate) fn new(view: &StepView, limits: &Limits, wasi_setup: AttemptWasi) -> Self {
        Self {
            view: view.clone(),
            limits: *limits,
            state: None,
            events: Vec::new(),
            logs: Vec::new(),
            violation: None,
            memory: MemoryCap::new(limits.memory_bytes),
            wasi_setup,
            capture: None,
            wasi: None,
        }
    }

    /// Ends the attempt: flushes captured stdio and returns what it produced.
    pub(crate) fn finish(mut self) -> Leftovers {
        self.drain_stdio(true);
        Leftovers {
            state: self.state,
            events: self.events,
            logs: self.logs,
            violation: self.violation,
            memory: self.memory,
        }
    }

    /// Records a broken limit (the first one wins) and returns the trap that
    /// stops the guest.
    fn violate(&mut self, kind: FailureKind, message: String) -> wasmtime::Error {
        let trap = wasmtime::Error::msg(message.clone());
        self.violation
            .get_or_insert_with(|| StepError::host(kind, message));
        trap
    }

    /// Counts one more event or log line against `max-events`.
    fn count_one(&mut self) -> Result<(), wasmtime::Error> {
        let produced = self.events.len().saturating_add(self.logs.len());
        if produced >= self.limits.max_events as usize {
            let message = format!(
                "the step produced more than {} events and log lines",
                self.limits.max_events
            );
            return Err(self.violate(FailureKind::PayloadTooLarge, message));
        }
        Ok(())
    }

    fn push_log(&mut self, line: LogLine) -> Result<(), wasmtime::Error> {
        if line.message.len() as u64 > self.limits.max_event_bytes {
            let message = format!(
                "the step logged a line of {} bytes, over the limit of {} bytes",
                line.message.len(),
                self.limits.max_event_bytes
            );
            return Err(self.violate(FailureKind::PayloadTooLarge, message));
        }
        self.count_one()?;
        self.logs.push(line);
        Ok(())
    }

    /// Moves the lines the guest wrote to stdout/stderr into the log, so they
    /// keep their order relative to `log` and `emit` calls.
    fn drain_stdio(&mut self, all: bool) {
        let Some(capture) = &self.capture else { return };
        let (lines, violation) = {
            let mut capture = capture.lock().unwrap_or_else(PoisonError::into_inner);
            (
                capture.take_lines(all),
                capture.violation().map(str::to_owned),
            )
        };
        for line in lines {
            if self.push_log(line).is_err() {
                break;
            }
        }
        if let Some(message) = violation {
            self.violate(FailureKind::PayloadTooLarge, message);
        }
    }

    fn drain_stdio_or_trap(&mut self) -> Result<(), wasmtime::Error> {
        self.drain_stdio(false);
        match &self.violation {
            Some(violation) => Err(wasmtime::Error::msg(violation.message.clone())),
            None => Ok(()),
        }
    }
}

impl bindings::weft::step::types::Host for HostState {}

impl bindings::weft::step::host::Host for HostState {
    async fn workflow_input(&mut self) -> wasmtime::Result<Json> {
        Ok(self.view.workflow_input.to_string())
    }

    async fn step_result(&mut self, step_id: String) -> wasmtime::Result<Option<Json>> {
        // An id that is not even valid names no step: `none`, not a trap.
        let Ok(id) = StepId::new(&step_id) else {
            return Ok(None);
        };
        Ok(self.view.results.get(&id).map(|output| output.to_string()))
    }

    async fn get_state(&mut self) -> wasmtime::Result<Json> {
        Ok(match &self.state {
            Some(state) => state.to_string(),
            None => self.view.state.to_string(),
        })
    }

    async fn set_state(&mut self, state: Json) -> wasmtime::Result<Result<(), String>> {
        if state.len() as u64 > self.limits.max_state_bytes {
            // The contract says `set-state` returns an error here; the attempt
            // fails with payload-too-large whatever the guest does with it.
            let message = format!(
                "the step set a state of {} bytes, over the limit of {} bytes",
                state.len(),
                self.limits.max_state_bytes
            );
            self.violate(FailureKind::PayloadTooLarge, message.clone());
            return Ok(Err(message));
        }
        match serde_json::from_str(&state) {
            Ok(value) => {
                self.state = Some(value);
                Ok(Ok(()))
            }
            Err(error) => Ok(Err(format!("the state is not JSON: {error}"))),
        }
    }

    async fn log(&mut self, level: bindings::LogLevel, message: String) -> wasmtime::Result<()> {
        self.drain_stdio_or_trap()?;
        let level = match level {
            bindings::LogLevel::Trace => LogLevel::Trace,
            bindings::LogLevel::Debug => LogLevel::Debug,
            bindings::LogLevel::Info => LogLevel::Info,
            bindings::LogLevel::Warn => LogLevel::Warn,
            bindings::LogLevel::Error => LogLevel::Error,
        };
        self.push_log(LogLine { level, message })
    }

    async fn emit(&mut self, kind: String, data: Json) -> wasmtime::Result<()> {
        self.drain_stdio_or_trap()?;
        let size = kind.len().saturating_add(data.len());
        if size as u64 > self.limits.max_event_bytes {
            let message = format!(
                "the step emitted a `{}` event of {size} bytes, over the limit of {} bytes",
                truncated(&kind),
                self.limits.max_event_bytes
            );
            return Err(self.violate(FailureKind::PayloadTooLarge, message));
        }
        let data = match serde_json::from_str(&data) {
            Ok(data) => data,
            Err(error) => {
                let message = format!(
                    "the step emitted a `{}` event whose data is not JSON: {error}",
                    truncated(&kind)
                );
                return Err(self.violate(FailureKind::InvalidOutput, message));
            }
        };
        self.count_one()?;
        self.events.push(CustomEvent { kind, data });
        Ok(())
    }
}

impl HostState {
    /// What `wasi:clocks/monotonic-clock` works on (see `wasi::clocks`).
    pub(crate) fn sleep_clock(&mut self) -> SleepClock<'_> {
        self.ctx();
        let wasi = self.wasi.as_mut().expect("built by `ctx`");
        SleepClock {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
            logical: wasi.logical.as_ref(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Built on the first WASI call only: most steps never make one.
        let wasi = self.wasi.get_or_insert_with(|| {
            let capture = self.wasi_setup.captures_stdio().then(|| {
                Arc::new(Mutex::new(Capture::new(
                    usize::try_from(self.limits.max_event_bytes).unwrap_or(usize::MAX),
                    self.limits.max_events as usize,
                )))
            });
            self.capture = capture.clone();
            let (ctx, logical) = wasi::attempt_ctx(&self.wasi_setup, capture);
            Wasi {
                ctx,
                table: ResourceTable::new(),
                logical,
            }
        });
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// Caps the total linear memory of an attempt and remembers a refusal, so a
/// trap that follows it is reported as a memory failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryCap {
    cap: u64,
    used: u64,
    /// The last growth allowed, taken back if the growth then fails.
    last_growth: u64,
    /// The size the guest asked for when growth was refused.
    pub(crate) denied: Option<u64>,
}

impl MemoryCap {
    fn new(cap: u64) -> Self {
        Self {
            cap,
            used: 0,
            last_growth: 0,
            denied: None,
        }
    }

    /// The cap, in bytes.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// The bytes of linear memory the instance holds: its peak, since
    /// WebAssembly memories only grow.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let total = self.used.saturating_add(growth);
        if total > self.cap {
            self.denied = Some(total);
            return Ok(false);
        }
        self.used = total;
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Past the pool's maximum (or the OS refused): as much a memory failure.
        self.denied.get_or_insert(self.used);
        self.used = self.used.saturating_sub(self.last_growth);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}
