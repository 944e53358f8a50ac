//! The evented runtime: the same state machine, driven through persisted
//! events, a bus and step workers.
//!
//! One orchestrator thread owns the in-memory state of the runs this process
//! drives. Each round it takes every message waiting (commands, finished
//! attempts), applies their events to the runs' states, computes the ready
//! work with [`weft_core::RunState::ready`], and appends ALL the new events of
//! all runs in ONE store transaction (group commit). Only after that commit
//! does anything take effect: attempts are dispatched to workers and callers
//! learn results. If the commit fails, the affected runs are dropped from
//! memory and stay in the store as their last committed events say; `recover`
//! picks them up.
//!
//! Delivery is at-least-once: an attempt in flight when its process died runs
//! again on recovery, with the same attempt number and idempotency key. An
//! attempt whose completion was committed never runs again.

mod bus;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use serde_json::Value;
use weft_core::{
    Append, Clock, Event, EventStore, ResumeTarget, RunId, RunMeta, RunResult, RunState, RunStatus,
    StepPath, StoreError, Timestamp, Work,
};

pub use bus::{Bus, Done, InProcessBus, Registered, WorkItem};

use crate::error::RuntimeError;
use crate::worker::execute_step;

type Reply = Sender<Result<RunResult, RuntimeError>>;

/// Attempts waiting for their retry time: (due, run, path), earliest first.
type Delayed = BinaryHeap<Reverse<(Timestamp, RunId, StepPath)>>;

enum Command {
    Start {
        workflow: Arc<Registered>,
        run: RunId,
        input: Value,
        reply: Reply,
    },
    Resume {
        workflow: Arc<Registered>,
        run: RunId,
        target: ResumeTarget,
        payload: Value,
        reply: Reply,
    },
    Recover {
        workflow: Arc<Registered>,
        run: RunId,
        reply: Reply,
    },
    Cancel {
        workflow: Arc<Registered>,
        run: RunId,
        reason: Option<String>,
        reply: Reply,
    },
}

/// Drives runs through an [`EventStore`] and step workers.
pub struct EventedRuntime {
    commands: Option<Sender<Command>>,
    orchestrator: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl EventedRuntime {
    /// Starts an orchestrator and `workers` step-worker threads (at least 1).
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, workers: usize) -> Self {
        let (bus, done) = InProcessBus::new();
        let bus: Arc<dyn Bus> = Arc::new(bus);
        let workers = (0..workers.max(1))
            .map(|i| {
                let bus = Arc::clone(&bus);
                let clock = Arc::clone(&clock);
                std::thread::Builder::new()
                    .name(format!("weft-worker-{i}"))
                    .spawn(move || work(&*bus, &*clock))
                    .expect("spawn a worker thread")
            })
            .collect::<Vec<_>>();
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let mut orchestrator = Orchestrator {
            store,
            clock,
            bus,
            runs: HashMap::new(),
            delayed: BinaryHeap::new(),
            workers: workers.len(),
        };
        let orchestrator = std::thread::Builder::new()
            .name("weft-orchestrator".into())
            .spawn(move || orchestrator.run(&command_rx, &done))
            .expect("spawn the orchestrator thread");
        Self {
            commands: Some(commands),
            orchestrator: Some(orchestrator),
            workers,
        }
    }

    fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<RunResult, RuntimeError> {
        self.submit(make)
            .recv()
            .unwrap_or(Err(RuntimeError::ShutDown))
    }

    fn submit(
        &self,
        make: impl FnOnce(Reply) -> Command,
    ) -> Receiver<Result<RunResult, RuntimeError>> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        if let Some(commands) = &self.commands {
            let _ = commands.send(make(reply));
        }
        rx
    }

    /// Starts a run and waits until it finishes or suspends.
    ///
    /// # Errors
    /// Invalid input (no run is created), an existing run id, store failures.
    pub fn start(
        &self,
        workflow: Arc<Registered>,
        run: RunId,
        input: Value,
    ) -> Result<RunResult, RuntimeError> {
        self.call(|reply| Command::Start {
            workflow,
            run,
            input,
            reply,
        })
    }

    /// Starts a run without waiting; the receiver gets the result once the
    /// run finishes or suspends.
    pub fn start_detached(
        &self,
        workflow: Arc<Registered>,
        run: RunId,
        input: Value,
    ) -> Receiver<Result<RunResult, RuntimeError>> {
        self.submit(|reply| Command::Start {
            workflow,
            run,
            input,
            reply,
        })
    }

    /// Resumes a suspended run stored in the store (by any process) and
    /// waits until it finishes or suspends again.
    ///
    /// # Errors
    /// [`RuntimeError::Resume`] (not suspended, no such step or label, payload
    /// fails the resume schema; nothing is written),
    /// [`RuntimeError::Conflict`] when another process resumed it first.
    pub fn resume(
        &self,
        workflow: Arc<Registered>,
        run: RunId,
        target: ResumeTarget,
        payload: Value,
    ) -> Result<RunResult, RuntimeError> {
        self.call(|reply| Command::Resume {
            workflow,
            run,
            target,
            payload,
            reply,
        })
    }

    /// Cancels a running or suspended run (stored by any process). Attempts
    /// in flight here finish, but their results are dropped.
    ///
    /// # Errors
    /// [`RuntimeError::Resume`] when the run has finished (nothing is written);
    /// [`RuntimeError::Conflict`] when another process changed it first.
    pub fn cancel(
        &self,
        workflow: Arc<Registered>,
        run: RunId,
        reason: Option<String>,
    ) -> Result<RunResult, RuntimeError> {
        self.call(|reply| Command::Cancel {
            workflow,
            run,
            reason,
            reply,
        })
    }

    /// Picks up a run left `running` (e.g. by a crashed process): attempts in
    /// flight run again, committed ones never; then drives it until it
    /// finishes or suspends.
    ///
    /// # Errors
    /// Store failures; a run that does not replay onto `workflow`.
    pub fn recover(
        &self,
        workflow: Arc<Registered>,
        run: RunId,
    ) -> Result<RunResult, RuntimeError> {
        self.call(|reply| Command::Recover {
            workflow,
            run,
            reply,
        })
    }
}

impl Drop for EventedRuntime {
    fn drop(&mut self) {
        // Closing the command channel stops the orchestrator once its runs
        // are done or dropped; it then closes the bus, which stops the workers.
        self.commands = None;
        if let Some(orchestrator) = self.orchestrator.take() {
            let _ = orchestrator.join();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn work(bus: &dyn Bus, clock: &dyn Clock) {
    while let Some(item) = bus.next_work() {
        let executed = execute_step(
            &item.workflow.workflow,
            &*item.workflow.runner,
            clock,
            &item.task,
            &item.view,
        );
        bus.report(Done {
            run: item.task.run.clone(),
            path: item.task.path.clone(),
            executed,
        });
    }
}

/// A run this process drives.
struct Active {
    workflow: Arc<Registered>,
    state: RunState,
    /// Sequence number of the last committed event.
    committed: u64,
    /// Events applied to `state` but not committed yet.
    pending: Vec<Event>,
    /// Attempts to dispatch once `pending` commits.
    to_dispatch: Vec<weft_core::StepTask>,
    /// Executions dispatched (or waiting for their retry time).
    in_flight: HashSet<StepPath>,
    /// Callers waiting for the run to finish or suspend.
    waiters: Vec<Reply>,
}

struct Orchestrator {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    bus: Arc<dyn Bus>,
    runs: HashMap<RunId, Active>,
    /// Attempts waiting for their retry time.
    delayed: Delayed,
    workers: usize,
}

impl Orchestrator {
    fn run(&mut self, commands: &Receiver<Command>, done: &Receiver<Done>) {
        let mut open = true;
        while open || !self.runs.is_empty() {
            let timeout = self.next_timeout();
            let never = crossbeam_channel::never();
            let command_rx = if open { commands } else { &never };
            // Wait for the first message, then take everything already waiting.
            select! {
                recv(command_rx) -> msg => match msg {
                    Ok(cmd) => self.command(cmd),
                    Err(_) => open = false,
                },
                recv(done) -> msg => if let Ok(d) = msg { self.finished(d) },
                default(timeout) => {
                    // The wait was computed for the earliest retry; a manual
                    // clock (tests) jumps to it, the system clock is there.
                    if let Some(Reverse((due, _, _))) = self.delayed.peek() {
                        self.clock.sleep_until(*due);
                    }
                },
            }
            for _ in 0..1024 {
                if let Ok(d) = done.try_recv() {
                    self.finished(d);
                } else if let Ok(cmd) = commands.try_recv() {
                    self.command(cmd);
                } else {
                    break;
                }
            }
            self.release_due();
            self.advance_and_commit();
            if !open
                && self
                    .runs
                    .values()
                    .all(|r| r.in_flight.is_empty() && r.waiters.is_empty())
            {
                break;
            }
        }
        self.bus.close(self.workers);
    }

    fn next_timeout(&self) -> Duration {
        match self.delayed.peek() {
            Some(Reverse((due, _, _))) => {
                Duration::from_micros(due.micros_since(self.clock.now()).min(1_000_000))
            }
            None => Duration::from_secs(1),
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start {
                workflow,
                run,
                input,
                reply,
            } => self.start(workflow, run, input, reply),
            Command::Resume {
                workflow,
                run,
                target,
                payload,
                reply,
            } => self.request(workflow, run, reply, |state, at| {
                state.resume(&target, payload, at)
            }),
            Command::Cancel {
                workflow,
                run,
                reason,
                reply,
            } => self.request(workflow, run, reply, |state, at| state.cancel(reason, at)),
            Command::Recover {
                workflow,
                run,
                reply,
            } => {
                if let Some(active) = self.runs.get_mut(&run) {
                    // Already driven here: just wait for it.
                    active.waiters.push(reply);
                    return;
                }
                match self.load(workflow, &run) {
                    Ok(mut active) => {
                        // Executions in flight when the previous process stopped
                        // run again, same attempt (at-least-once).
                        for task in active.state.in_flight() {
                            let event = Event::StepStarted {
                                path: task.path.clone(),
                                step: task.step.clone(),
                                attempt: task.attempt,
                                input: task.input.clone(),
                                at: self.clock.now(),
                            };
                            apply(&mut active, event);
                            active.in_flight.insert(task.path.clone());
                            active.to_dispatch.push(task);
                        }
                        active.waiters.push(reply);
                        self.runs.insert(run, active);
                    }
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
        }
    }

    /// A request that turns into one event decided by the state machine
    /// (resume, cancel) on a run driven here or loaded from the store. The
    /// caller is answered once the event and what follows are committed.
    fn request(
        &mut self,
        workflow: Arc<Registered>,
        run: RunId,
        reply: Reply,
        decide: impl FnOnce(&RunState, Timestamp) -> Result<Event, weft_core::ResumeError>,
    ) {
        if !self.runs.contains_key(&run) {
            match self.load(workflow, &run) {
                Ok(active) => {
                    self.runs.insert(run.clone(), active);
                }
                Err(e) => return drop(reply.send(Err(e))),
            }
        }
        let Some(active) = self.runs.get_mut(&run) else {
            return;
        };
        match decide(&active.state, self.clock.now()) {
            Ok(event) => {
                apply(active, event);
                active.waiters.push(reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                self.forget_if_idle(&run);
            }
        }
    }

    fn start(&mut self, workflow: Arc<Registered>, run: RunId, input: Value, reply: Reply) {
        let wf = &workflow.workflow;
        if let Some(Err(source)) = wf.input_schema().map(|schema| schema.validate(&input)) {
            let _ = reply.send(Err(RuntimeError::InvalidInput {
                workflow: wf.id().to_string(),
                source,
            }));
            return;
        }
        if self.runs.contains_key(&run) {
            let _ = reply.send(Err(RuntimeError::Exists {
                run: run.to_string(),
            }));
            return;
        }
        let started = Event::RunStarted {
            run: run.clone(),
            workflow: wf.id().clone(),
            input,
            state: wf.initial_state().clone(),
            at: self.clock.now(),
        };
        let meta = RunMeta {
            run_id: run.clone(),
            workflow_id: wf.id().clone(),
            manifest: workflow.manifest.clone(),
            manifest_sha256: workflow.manifest_sha256.clone(),
        };
        let mut state = RunState::new(Arc::clone(wf));
        if let Err(e) = state.apply(&started) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let mut active = Active {
            workflow,
            state,
            committed: 0,
            pending: vec![started],
            to_dispatch: Vec::new(),
            in_flight: HashSet::new(),
            waiters: vec![reply],
        };
        // The run's first steps are decided now, so that they are created in
        // the same transaction as the run (one commit, not two).
        advance(&run, &mut active, self.clock.now(), &mut self.delayed);
        if let Err(e) = self.store.create_run(&meta, &active.pending) {
            let error = match e {
                StoreError::Exists { run } => RuntimeError::Exists { run },
                source => RuntimeError::Store {
                    run: run.to_string(),
                    source,
                },
            };
            // Nothing was written: the only waiter is the caller.
            if let Some(waiter) = active.waiters.into_iter().next() {
                let _ = waiter.send(Err(error));
            }
            return;
        }
        self.runs.insert(run.clone(), active);
        self.take_effect(&run);
    }

    fn load(&self, workflow: Arc<Registered>, run: &RunId) -> Result<Active, RuntimeError> {
        let store_error = |source| RuntimeError::Store {
            run: run.to_string(),
            source,
        };
        let (meta, events) = self.store.load(run).map_err(store_error)?;
        if meta.workflow_id != *workflow.workflow.id() {
            return Err(RuntimeError::WrongWorkflow {
                run: run.to_string(),
                saved: meta.workflow_id.to_string(),
                given: workflow.workflow.id().to_string(),
            });
        }
        let state =
            RunState::replay(Arc::clone(&workflow.workflow), &events).map_err(|source| {
                RuntimeError::Replay {
                    run: run.to_string(),
                    workflow: meta.workflow_id.to_string(),
                    source,
                }
            })?;
        Ok(Active {
            workflow,
            state,
            committed: events.len() as u64,
            pending: Vec::new(),
            to_dispatch: Vec::new(),
            in_flight: HashSet::new(),
            waiters: Vec::new(),
        })
    }

    fn finished(&mut self, done: Done) {
        let Some(active) = self.runs.get_mut(&done.run) else {
            return;
        };
        active.in_flight.remove(&done.path);
        for line in &done.executed.logs {
            tracing::info!(run = %done.run, step = %done.path, level = ?line.level, "{}", line.message);
        }
        if active.state.status() == RunStatus::Canceled {
            // The run was canceled while the attempt ran: its result is moot.
            tracing::debug!(run = %done.run, step = %done.path, "dropping the result of a canceled run's step");
            return;
        }
        for event in done.executed.events {
            apply(active, event);
        }
    }

    fn release_due(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((due, _, _))) = self.delayed.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, run, path))) = self.delayed.pop() else {
                break;
            };
            if let Some(active) = self.runs.get_mut(&run) {
                active.in_flight.remove(&path);
            }
        }
    }

    /// Computes every run's ready work, commits all new events in one
    /// transaction, then lets them take effect.
    fn advance_and_commit(&mut self) {
        let now = self.clock.now();
        for (run, active) in &mut self.runs {
            advance(run, active, now, &mut self.delayed);
        }
        let dirty: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, a)| !a.pending.is_empty())
            .map(|(r, _)| r.clone())
            .collect();
        self.commit(&dirty);
        // Runs with nothing left to do here (e.g. recovered already finished,
        // or a refused resume) answer their waiters too.
        let settled: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, a)| a.pending.is_empty() && a.state.status() != RunStatus::Running)
            .map(|(r, _)| r.clone())
            .collect();
        for run in settled {
            self.take_effect(&run);
        }
    }

    fn commit(&mut self, dirty: &[RunId]) {
        if dirty.is_empty() {
            return;
        }
        let appends: Vec<Append<'_>> = dirty
            .iter()
            .map(|run| {
                let active = &self.runs[run];
                Append {
                    run,
                    expected: active.committed,
                    events: &active.pending,
                }
            })
            .collect();
        match self.store.append_batch(&appends) {
            Ok(()) => {
                drop(appends);
                for run in dirty {
                    self.take_effect(run);
                }
            }
            Err(_) if dirty.len() > 1 => {
                // Find the culprit(s): commit run by run.
                drop(appends);
                for run in dirty {
                    let active = &self.runs[run];
                    let one = [Append {
                        run,
                        expected: active.committed,
                        events: &active.pending,
                    }];
                    match self.store.append_batch(&one) {
                        Ok(()) => self.take_effect(run),
                        Err(e) => self.abandon(run, e),
                    }
                }
            }
            Err(e) => {
                drop(appends);
                self.abandon(&dirty[0], e);
            }
        }
    }

    /// The run's pending events are committed: dispatch, answer waiters.
    fn take_effect(&mut self, run: &RunId) {
        let Some(active) = self.runs.get_mut(run) else {
            return;
        };
        active.committed += active.pending.len() as u64;
        active.pending.clear();
        for task in active.to_dispatch.drain(..) {
            let view = active.state.view();
            self.bus.dispatch(WorkItem {
                workflow: Arc::clone(&active.workflow),
                task,
                view,
            });
        }
        let status = active.state.status();
        if matches!(
            status,
            RunStatus::Success | RunStatus::Failed | RunStatus::Suspended | RunStatus::Canceled
        ) {
            let result = active.state.result();
            for waiter in active.waiters.drain(..) {
                let _ = waiter.send(Ok(result.clone()));
            }
            self.forget_if_idle(run);
        }
    }

    /// A commit failed: the run's uncommitted events are dropped with its
    /// in-memory state; the store still holds its committed events.
    fn abandon(&mut self, run: &RunId, error: StoreError) {
        let Some(active) = self.runs.remove(run) else {
            return;
        };
        tracing::warn!(run = %run, "cannot commit the run's events: {error}");
        for waiter in active.waiters {
            let error = match &error {
                StoreError::Conflict { .. } => RuntimeError::Conflict {
                    run: run.to_string(),
                },
                other => RuntimeError::Store {
                    run: run.to_string(),
                    source: StoreError::Backend(other.to_string()),
                },
            };
            let _ = waiter.send(Err(error));
        }
    }

    fn forget_if_idle(&mut self, run: &RunId) {
        if self
            .runs
            .get(run)
            .is_some_and(|a| a.in_flight.is_empty() && a.pending.is_empty() && a.waiters.is_empty())
        {
            self.runs.remove(run);
        }
    }
}

/// Applies the run's ready work to its working state: finishing events, and
/// `step-started` for each attempt due now (queued for dispatch after the
/// commit); attempts due later wait in `delayed`.
fn advance(run: &RunId, active: &mut Active, now: Timestamp, delayed: &mut Delayed) {
    loop {
        let mut progressed = false;
        for item in active.state.ready() {
            match item {
                Work::Finish(finish) => {
                    apply(active, finish.into_event(now));
                    progressed = true;
                }
                Work::Execute(task) => {
                    if active.in_flight.contains(&task.path) {
                        continue;
                    }
                    active.in_flight.insert(task.path.clone());
                    if let Some(due) = task.not_before.filter(|due| *due > now) {
                        delayed.push(Reverse((due, run.clone(), task.path.clone())));
                        continue;
                    }
                    let started = Event::StepStarted {
                        path: task.path.clone(),
                        step: task.step.clone(),
                        attempt: task.attempt,
                        input: Arc::clone(&task.input),
                        at: now,
                    };
                    apply(active, started);
                    active.to_dispatch.push(task);
                    progressed = true;
                }
            }
        }
        if !progressed {
            return;
        }
    }
}

/// Applies an event to the run's working state and queues it for the next
/// commit. An event the state machine rejects (e.g. a late report for a run
/// that was canceled) is logged and dropped.
fn apply(active: &mut Active, event: Event) {
    match active.state.apply(&event) {
        Ok(()) => active.pending.push(event),
        Err(e) => tracing::warn!("dropping an event that does not apply: {e}"),
    }
}
