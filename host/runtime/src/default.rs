//! The default runtime: the state machine driven in memory.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_core::{
    Clock, Event, LogLine, ResumeTarget, RunId, RunResult, RunState, StepPath, StepRunner, Work,
    Workflow,
};

use crate::error::RuntimeError;
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

    /// The run's serializable form.
    pub fn save(&self) -> SavedRun {
        SavedRun {
            format: SavedRun::FORMAT.to_owned(),
            run_id: self.state.run_id().cloned(),
            workflow_id: self.state.workflow().id().to_string(),
            events: self.events.clone(),
        }
    }

    fn apply(&mut self, event: Event, observer: &mut dyn RunObserver) -> Result<(), RuntimeError> {
        self.state.apply(&event)?;
        if let Some(run) = self.state.run_id() {
            observer.event(run, &event);
        }
        self.events.push(event);
        Ok(())
    }
}

/// A run in serializable form: its events. Replaying them onto the same
/// workflow rebuilds the run exactly, in any process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    /// Always [`SavedRun::FORMAT`].
    pub format: String,
    /// The run id.
    pub run_id: Option<RunId>,
    /// The workflow id.
    pub workflow_id: String,
    /// The run's events, in order.
    pub events: Vec<Event>,
}

impl SavedRun {
    /// The format tag of this version.
    pub const FORMAT: &'static str = "weft.saved-run/1";

    /// Rebuilds the run on `workflow`.
    ///
    /// # Errors
    /// When the run belongs to another workflow, or its events do not replay.
    pub fn restore(&self, workflow: Arc<Workflow>) -> Result<Run, RuntimeError> {
        let run = self
            .run_id
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        if self.workflow_id != workflow.id().as_str() {
            return Err(RuntimeError::WrongWorkflow {
                run,
                saved: self.workflow_id.clone(),
                given: workflow.id().to_string(),
            });
        }
        let workflow_id = workflow.id().to_string();
        let state =
            RunState::replay(workflow, &self.events).map_err(|source| RuntimeError::Replay {
                run,
                workflow: workflow_id,
                source,
            })?;
        Ok(Run {
            state,
            events: self.events.clone(),
        })
    }
}

/// Drives runs in memory, calling the step runner directly.
pub struct DefaultRuntime {
    runner: Arc<dyn StepRunner>,
    clock: Arc<dyn Clock>,
}

impl DefaultRuntime {
    /// A runtime executing steps with `runner`, reading time from `clock`.
    pub fn new(runner: Arc<dyn StepRunner>, clock: Arc<dyn Clock>) -> Self {
        Self { runner, clock }
    }

    /// Starts a run of `workflow` with `input` and drives it until it
    /// finishes or suspends.
    ///
    /// # Errors
    /// [`RuntimeError::InvalidInput`] when `input` fails the workflow's input
    /// schema (no run is created). Step failures are not errors: they are in
    /// the run's result.
    pub fn start(
        &self,
        workflow: Arc<Workflow>,
        run_id: RunId,
        input: Value,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        if let Some(schema) = workflow.input_schema() {
            schema
                .validate(&input)
                .map_err(|source| RuntimeError::InvalidInput {
                    workflow: workflow.id().to_string(),
                    source,
                })?;
        }
        let started = Event::RunStarted {
            run: run_id,
            workflow: workflow.id().clone(),
            input,
            state: workflow.initial_state().clone(),
            at: self.clock.now(),
        };
        let mut run = Run {
            state: RunState::new(workflow),
            events: Vec::new(),
        };
        run.apply(started, observer)?;
        self.drive(&mut run, observer)?;
        Ok(run)
    }

    /// Resumes a suspended step of `run` with `payload` and drives the run
    /// until it finishes or suspends again.
    ///
    /// # Errors
    /// [`RuntimeError::Resume`] when the run is not suspended, the target
    /// names no suspended step, or the payload fails the step's resume
    /// schema; the run is then unchanged.
    pub fn resume(
        &self,
        run: &mut Run,
        target: &ResumeTarget,
        payload: Value,
        observer: &mut dyn RunObserver,
    ) -> Result<(), RuntimeError> {
        let resumed = run.state.resume(target, payload, self.clock.now())?;
        run.apply(resumed, observer)?;
        self.drive(run, observer)
    }

    /// Cancels a running or suspended run: nothing more runs.
    ///
    /// # Errors
    /// [`RuntimeError::Resume`] when the run has finished; it is then unchanged.
    pub fn cancel(
        &self,
        run: &mut Run,
        reason: Option<String>,
        observer: &mut dyn RunObserver,
    ) -> Result<(), RuntimeError> {
        let canceled = run.state.cancel(reason, self.clock.now())?;
        run.apply(canceled, observer)
    }

    /// Applies ready work until there is none.
    fn drive(&self, run: &mut Run, observer: &mut dyn RunObserver) -> Result<(), RuntimeError> {
        loop {
            let work = run.state.ready();
            if work.is_empty() {
                return Ok(());
            }
            for item in work {
                match item {
                    Work::Finish(finish) => {
                        run.apply(finish.into_event(self.clock.now()), observer)?
                    }
                    Work::Execute(task) => {
                        if let Some(not_before) = task.not_before {
                            self.clock.sleep_until(not_before);
                        }
                        let started = Event::StepStarted {
                            path: task.path.clone(),
                            step: task.step.clone(),
                            attempt: task.attempt,
                            input: task.input.clone(),
                            at: self.clock.now(),
                        };
                        run.apply(started, observer)?;
                        let view = run.state.view();
                        let workflow = Arc::clone(run.state.workflow());
                        let executed =
                            execute_step(&workflow, &*self.runner, &*self.clock, &task, &view);
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
                }
            }
        }
    }
}
