//! The default runtime: the state machine driven in memory, recorded in the
//! same store as the evented runtime.
//!
//! A run is driven on the caller's thread and calls the step runner directly;
//! nothing is written while it runs. The store sees the run only where it
//! enters or leaves this process:
//!
//! - **entering** — `start` creates the run with its `run-started` event,
//!   `resume` appends `run-resumed`, `cancel` appends `run-canceled`, each an
//!   optimistic append fenced by sequence number. Only after that claim
//!   commits does a step run, so a run id is created once and a suspended
//!   step is resumed once, however many processes try at the same moment;
//! - **leaving** — when the run finishes, fails or suspends, every event it
//!   produced is appended in one transaction.
//!
//! Between the two the run lives only in memory: if the process dies, the
//! store holds the run as `running` at its claim, and `weft recover` drives it
//! again from there (its steps run again, with the same idempotency keys).

use std::sync::Arc;

use serde_json::Value;
use weft_core::{
    Append, Clock, Effect, Event, EventStore, LogLine, ResumeTarget, RunId, RunResult, RunState,
    RunStatus, StepPath, StoreError,
};

use crate::error::RuntimeError;
use crate::evented::Registered;
use crate::stored;
use crate::worker::execute_step;

/// Sees a run's events and log lines as they happen (e.g. the CLI's
/// per-step lines). Both methods default to doing nothing.
pub trait RunObserver {
    /// An event was applied.
    fn event(&mut self, _run: &RunId, _event: &Event) {}
    /// A step attempt logged a line.
    fn log(&mut self, _run: &RunId, _path: &StepPath, _line: &LogLine) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl RunObserver for NoObserver {}

/// A run held in memory: its state and every event that built it.
#[derive(Debug, Clone)]
pub struct Run {
    state: RunState,
    events: Vec<Event>,
    /// How many of `events` the store holds.
    committed: u64,
}

impl Run {
    /// The run's state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Every event applied so far, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The run's result.
    pub fn result(&self) -> RunResult {
        self.state.result()
    }

    fn apply(&mut self, event: Event, observer: &mut dyn RunObserver) -> Result<(), RuntimeError> {
        self.state.apply(&event)?;
        self.record(vec![event], observer);
        Ok(())
    }

    /// Keeps events already applied to the state.
    fn record(&mut self, events: Vec<Event>, observer: &mut dyn RunObserver) {
        if let Some(run) = self.state.run_id() {
            for event in &events {
                observer.event(run, event);
            }
        }
        self.events.extend(events);
    }
}

/// Drives runs in memory, calling the step runner directly, and records them
/// in an [`EventStore`] where they enter and leave the process (see the
/// module documentation).
pub struct DefaultRuntime {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
}

impl DefaultRuntime {
    /// A runtime recording runs in `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Starts a run of `workflow` with `input` and drives it until it
    /// finishes or suspends.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidInput`] when `input` is too large or fails the
    /// workflow's input schema, [`RuntimeError::Exists`] when the run id is
    /// taken (nothing runs in either case); store failures. Step failures
    /// are not errors: they are in the run's result.
    pub fn start(
        &self,
        workflow: &Arc<Registered>,
        run_id: RunId,
        input: Value,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        self.begin(workflow, run_id, input, observer, false)
    }

    /// [`DefaultRuntime::start`], but returns (with the run recorded as
    /// `running`) once the run has nothing to do but wait for a timer (a
    /// sleep, a retry delay), instead of waiting in this process; `weft
    /// recover` continues it.
    ///
    /// # Errors
    /// As [`DefaultRuntime::start`].
    pub fn start_detached(
        &self,
        workflow: &Arc<Registered>,
        run_id: RunId,
        input: Value,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        self.begin(workflow, run_id, input, observer, true)
    }

    fn begin(
        &self,
        workflow: &Arc<Registered>,
        run_id: RunId,
        input: Value,
        observer: &mut dyn RunObserver,
        detach: bool,
    ) -> Result<Run, RuntimeError> {
        let wf = &workflow.workflow;
        wf.check_input(&input)
            .map_err(|reason| RuntimeError::InvalidInput {
                workflow: wf.id().to_string(),
                reason,
            })?;
        let started = Event::RunStarted {
            run: run_id.clone(),
            workflow: wf.id().clone(),
            input,
            state: wf.initial_state().clone(),
            at: self.clock.now(),
            origin: None,
        };
        self.create(workflow, &run_id, vec![started], observer, detach)
    }

    /// Starts a run whose first events are `events` (a rerun's, see
    /// [`weft_core::rerun`]: `run-started` and what it takes over) and
    /// drives it until it finishes or suspends.
    ///
    /// # Errors
    /// [`RuntimeError::Exists`] when the run id is taken; events that do not
    /// apply; store failures.
    pub fn start_with(
        &self,
        workflow: &Arc<Registered>,
        run_id: RunId,
        events: Vec<Event>,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        self.create(workflow, &run_id, events, observer, false)
    }

    /// Creates the run with its first events (one transaction), then drives it.
    fn create(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        first: Vec<Event>,
        observer: &mut dyn RunObserver,
        detach: bool,
    ) -> Result<Run, RuntimeError> {
        let mut run = Run {
            state: RunState::new(Arc::clone(&workflow.workflow)),
            events: Vec::new(),
            committed: 0,
        };
        for event in first {
            run.apply(event, observer)?;
        }
        self.store
            .create_run(&workflow.meta(run_id), &run.events)
            .map_err(|e| stored::error(run_id, e))?;
        run.committed = run.events.len() as u64;
        self.drive(workflow, run, observer, detach)
    }

    /// Resumes a suspended step of a stored run with `payload` and drives the
    /// run until it finishes or suspends again.
    ///
    /// # Errors
    /// [`RuntimeError::Resume`] when the run is not suspended, the target
    /// names no suspended step, or the payload fails the step's resume schema
    /// — decided on the run as stored, so of several concurrent resumes of
    /// one step exactly one wins and the others are told the run is no
    /// longer suspended. The run is then unchanged. Store failures.
    pub fn resume(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        target: &ResumeTarget,
        payload: Value,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        let run = self.claim(workflow, run_id, observer, |state, at| {
            state.resume_stored(target, payload.clone(), at)
        })?;
        self.drive(workflow, run, observer, false)
    }

    /// Cancels a stored running or suspended run: nothing more runs.
    ///
    /// # Errors
    /// [`RuntimeError::Resume`] when the run has finished; it is then
    /// unchanged. Store failures.
    pub fn cancel(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        reason: Option<String>,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        self.claim(workflow, run_id, observer, |state, at| {
            state.cancel(reason.clone(), at).map(|e| vec![e])
        })
    }

    /// Loads the run, lets `decide` turn the request into events and
    /// appends them. When another process appended first, the request is
    /// decided again on the run as it is now.
    fn claim(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        observer: &mut dyn RunObserver,
        decide: impl Fn(&RunState, weft_core::Timestamp) -> Result<Vec<Event>, weft_core::ResumeError>,
    ) -> Result<Run, RuntimeError> {
        loop {
            let (state, events) = stored::load(&*self.store, workflow, run_id)?;
            let mut run = Run {
                state,
                committed: events.len() as u64,
                events,
            };
            for event in decide(&run.state, self.clock.now())? {
                run.apply(event, observer)?;
            }
            match self.persist(&mut run) {
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(stored::error(run_id, e)),
                Ok(()) => return Ok(run),
            }
        }
    }

    /// Waits until `due` (a sleep, a retry delay), checking every second
    /// whether another process changed the stored run (`weft cancel`).
    /// Returns `false` when it did: the run's new events will not commit,
    /// and what is stored is the caller's answer.
    fn wait(&self, run: &Run, due: weft_core::Timestamp) -> bool {
        loop {
            let now = self.clock.now();
            if now >= due {
                return true;
            }
            if self.clock.wait_bound(due).is_zero() {
                // A clock that jumps (tests): nothing can happen meanwhile.
                self.clock.sleep_until(due);
                return true;
            }
            self.clock.sleep_until(now.plus_millis(1000).min(due));
            let id = run.state.run_id();
            let changed = id.is_some_and(|id| {
                self.store
                    .events_after(id, run.committed)
                    .is_ok_and(|events| !events.is_empty())
            });
            if changed {
                return false;
            }
        }
    }

    /// Appends the run's uncommitted events in one transaction.
    fn persist(&self, run: &mut Run) -> Result<(), StoreError> {
        let Some(id) = run.state.run_id() else {
            return Ok(());
        };
        let new = &run.events[run.committed as usize..];
        if new.is_empty() {
            return Ok(());
        }
        self.store.append_batch(&[Append {
            run: id,
            expected: run.committed,
            events: new,
        }])?;
        run.committed = run.events.len() as u64;
        Ok(())
    }

    /// Advances the run and performs what the driver decides until it
    /// settles (finishes, fails, suspends), then records the run's new events. If another process changed the run meanwhile (e.g. canceled
    /// it), what is stored wins and is what the caller gets.
    fn drive(
        &self,
        workflow: &Arc<Registered>,
        mut run: Run,
        observer: &mut dyn RunObserver,
        detach: bool,
    ) -> Result<Run, RuntimeError> {
        loop {
            let advance = run.state.advance(self.clock.now())?;
            let mut executed_any = false;
            let mut waits = false;
            let mut changed = false;
            let idle = advance.effects.is_empty();
            run.record(advance.events, observer);
            for effect in advance.effects {
                match effect {
                    Effect::Execute(task) => {
                        executed_any = true;
                        let view = run.state.view(&task.path);
                        let executed = execute_step(
                            &workflow.workflow,
                            &*workflow.runner,
                            &*self.clock,
                            &task,
                            &view,
                        );
                        drop(view);
                        if let Some(id) = run.state.run_id() {
                            for line in &executed.logs {
                                observer.log(id, &task.path, line);
                            }
                        }
                        for event in executed.events {
                            run.apply(event, observer)?;
                        }
                    }
                    // Only when nothing else ran: what ran may change the plan.
                    Effect::WakeAt(_) if detach && !executed_any => waits = true,
                    Effect::WakeAt(due) if !executed_any => {
                        changed = !self.wait(&run, due);
                    }
                    Effect::WakeAt(_) => {}
                }
            }
            // Settled, detached while it only waits for a timer, or (never
            // for runs this runtime drives) waiting for an attempt it does
            // not execute.
            if idle || waits || changed || run.state.status() != RunStatus::Running {
                break;
            }
        }
        let run_id = run.result().run_id;
        match self.persist(&mut run) {
            Ok(()) => Ok(run),
            Err(StoreError::Conflict { .. }) => {
                let (state, events) = stored::load(&*self.store, workflow, &run_id)?;
                stored::settled(&state, &run_id)?;
                Ok(Run {
                    state,
                    committed: events.len() as u64,
                    events,
                })
            }
            Err(e) => Err(stored::error(&run_id, e)),
        }
    }
}
