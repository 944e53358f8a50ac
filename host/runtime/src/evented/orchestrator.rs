//! The orchestrator: the in-memory state of the runs this process drives.
//! A round (on the orchestrator thread, or on a step worker that finished an
//! attempt) advances them with the core driver, commits their events (group
//! commit) and only then lets them take effect.
//!
//! This file holds [`Orchestrator`] and its round; the rest is split by
//! concern:
//! - `serve`: the orchestrator thread's loop;
//! - `ownership`: leases, and runs changed by other processes (requests,
//!   reloads after a conflict or a takeover, the polling and parking of runs
//!   that wait);
//! - `reorder`: the seeded reordering mode, for verification.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::Value;
use weft_core::{
    Advance, Append, Clock, Effect, Event, EventStore, Interrupt, RunId, RunResult, RunState,
    RunStatus, StepPath, Takeover, Timestamp, TransitionError,
};

use super::bus::{Bus, Done, WorkItem};
use crate::error::RuntimeError;
use crate::lease::Keeper;
use crate::runtime::Registered;
use crate::stored;

mod ownership;
mod reorder;
mod serve;

pub(super) use ownership::Request;
pub(super) use serve::serve;

use reorder::Held;

pub(super) type Reply = Sender<Result<RunResult, RuntimeError>>;

/// Runs waiting for a retry time: (due, run), earliest first.
type Delayed = BinaryHeap<Reverse<(Timestamp, RunId)>>;

/// How a run starts: with an input, or with the first events of a rerun.
pub(super) enum First {
    Input(Value),
    Events(Vec<Event>),
}

pub(super) enum Command {
    Start {
        workflow: Arc<Registered>,
        run: RunId,
        first: First,
        reply: Reply,
        /// Answer (and stop driving the run) once it has nothing to do but
        /// wait for a timer, instead of when it finishes or suspends.
        detach: bool,
        /// Gets the run's events as they commit, in commit order.
        watch: Option<Sender<Event>>,
    },
    Request {
        workflow: Arc<Registered>,
        run: RunId,
        request: Request,
        reply: Reply,
        /// Gets the run's events from the request's on, as they commit
        /// (`weft resume --watch`).
        watch: Option<Sender<Event>>,
    },
    Recover {
        workflow: Arc<Registered>,
        run: RunId,
        reply: Reply,
        watch: Option<Sender<Event>>,
    },
    /// Start no more attempts ([`crate::Runtime::drain`]); answered once
    /// every later round knows.
    Drain(Sender<()>),
}

/// A run this process drives.
struct Active {
    workflow: Arc<Registered>,
    /// The epoch of this process's lease on the run: every commit names it.
    epoch: u64,
    state: RunState,
    /// Sequence number of the last committed event.
    committed: u64,
    /// Events applied to `state` but not committed yet.
    pending: Vec<Event>,
    /// Attempts to dispatch once `pending` commits.
    to_dispatch: Vec<weft_core::StepTask>,
    /// Attempts dispatched (or queued for dispatch) whose report has not arrived.
    in_flight: HashSet<StepPath>,
    /// When the run asked to be woken (a retry), if it did.
    wake: Option<Timestamp>,
    /// Callers waiting for the run to finish or suspend.
    waiters: Vec<Reply>,
    /// The request whose event is pending, until it commits.
    request: Option<Request>,
    /// Reordering mode only ([`super::EventedOptions::reorder_seed`]):
    /// reports held back until none of the run's attempts is in flight.
    held: Option<Held>,
    /// A watcher of the run (`weft run --watch`): gets each event once it
    /// has committed, in commit order. `None` costs nothing.
    watch: Option<Sender<Event>>,
    /// Started detached: answered and dropped once it only waits for a timer.
    detach: bool,
    /// Stops the run's attempts in flight once their reports cannot matter
    /// (the run was canceled, or this process no longer drives it).
    interrupt: Interrupt,
}

impl Active {
    /// Nothing to do here but wait for its wake-up time (a sleep or a retry
    /// delay): no attempt in flight, nothing to commit or dispatch.
    /// The wake time to store with the pending events: the run's timer if,
    /// once they commit, it has nothing to do but wait for it.
    fn stored_wake(&self) -> Option<Timestamp> {
        let waits = self.in_flight.is_empty()
            && self.to_dispatch.is_empty()
            && self.state.status() == RunStatus::Running;
        self.wake.filter(|_| waits)
    }

    fn only_waits(&self) -> bool {
        self.wake.is_some()
            && self.in_flight.is_empty()
            && self.pending.is_empty()
            && self.to_dispatch.is_empty()
            && self.state.status() == RunStatus::Running
    }
}

/// How often runs that only wait for a timer are checked for changes made
/// by other processes (a `weft cancel` interrupting a sleep).
const POLL_WAITING: Duration = Duration::from_secs(1);

/// A run waiting this long (or longer) for a timer and for nothing else is
/// parked: its state leaves memory until the timer fires, then it is
/// reloaded from the store. Shorter waits (a quick retry) keep it in memory.
const PARK_AFTER_MICROS: u64 = 1_000_000;

/// A run driven here that only waits for a timer, out of memory: what it
/// takes to reload it when the timer fires.
struct Parked {
    workflow: Arc<Registered>,
    /// The epoch of this process's lease on the run.
    epoch: u64,
    /// Sequence number of its last committed event.
    committed: u64,
    /// When it wakes.
    wake: Timestamp,
    /// Callers waiting for it to finish or suspend.
    waiters: Vec<Reply>,
    /// Its watcher, if any.
    watch: Option<Sender<Event>>,
}

pub(super) struct Orchestrator {
    store: Arc<dyn EventStore>,
    /// This runtime's leases: its owner id, renewal, release.
    keeper: Arc<Keeper>,
    clock: Arc<dyn Clock>,
    bus: Arc<dyn Bus>,
    runs: HashMap<RunId, Active>,
    /// Attempts waiting for their retry time.
    delayed: Delayed,
    /// Runs that changed this round (a command, a report, a wake-up): only
    /// they are advanced and checked, so a round costs what changed, not
    /// the number of runs in memory.
    touched: HashSet<RunId>,
    /// The reordering mode's seed ([`super::EventedOptions::reorder_seed`]).
    reorder_seed: Option<u64>,
    /// Reordering mode: runs holding reports back.
    holding: HashSet<RunId>,
    /// Runs waiting for a timer, out of memory until it fires.
    parked: HashMap<RunId, Parked>,
    /// During a worker's round ([`Self::continue_with`]): the first attempt
    /// made ready, kept for that worker instead of dispatched.
    keep: Option<Option<WorkItem>>,
    /// The command channel has closed: the orchestrator thread stops once
    /// the runs are done, so a worker's round that ends runs wakes it.
    closing: bool,
    /// Starting no more attempts ([`crate::Runtime::drain`]): rounds record
    /// reports but decide nothing, timers are not released, and the thread
    /// stops once no attempt is in flight, letting go of every run.
    pub(super) draining: bool,
}

impl Orchestrator {
    pub(super) fn new(
        store: Arc<dyn EventStore>,
        keeper: Arc<Keeper>,
        clock: Arc<dyn Clock>,
        bus: Arc<dyn Bus>,
        reorder_seed: Option<u64>,
    ) -> Self {
        Self {
            store,
            keeper,
            clock,
            bus,
            runs: HashMap::new(),
            delayed: BinaryHeap::new(),
            touched: HashSet::new(),
            reorder_seed,
            holding: HashSet::new(),
            parked: HashMap::new(),
            keep: None,
            closing: false,
            draining: false,
        }
    }

    /// Finishes a round begun by a message (or a wake-up): runs whose
    /// timer is due, then every changed run advanced and committed at once.
    fn round(&mut self) {
        self.release_due();
        self.advance_and_commit();
        if self.reorder_seed.is_some() {
            self.release_held();
        }
    }

    /// A worker's report, applied by the worker that finished the attempt
    /// (the orchestrator thread was not needed: no hand-off). Commits the
    /// round like the orchestrator thread would, and returns one of the
    /// attempts it made ready, for the same worker to run next instead of
    /// dispatching it; the others are dispatched. Returns whether the
    /// orchestrator thread must look at its state again (an earlier timer,
    /// or it waits for the runs to end, or for the attempts in flight while
    /// draining, to shut down).
    pub(super) fn continue_with(&mut self, done: Done) -> (Option<WorkItem>, bool) {
        let earliest = self.delayed.peek().map(|Reverse((due, _))| *due);
        self.keep = Some(None);
        self.finished(done);
        self.round();
        let kept = self.keep.take().flatten();
        let next = self.delayed.peek().map(|Reverse((due, _))| *due);
        (kept, self.closing || self.draining || next != earliest)
    }

    /// How long to wait for messages: until the earliest retry is due (the
    /// clock says how long that is in real time), else a long idle tick.
    /// Never longer: the orchestrator must not sleep past a message.
    fn next_timeout(&self) -> Duration {
        if self.draining {
            // Timers are not released while draining: only reports matter.
            return Duration::from_secs(1);
        }
        match self.delayed.peek() {
            Some(Reverse((due, _))) => self.clock.wait_bound(*due),
            None => Duration::from_secs(1),
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start {
                workflow,
                run,
                first,
                reply,
                detach,
                watch,
            } => self.start(workflow, run, first, reply, detach, watch),
            Command::Drain(done) => {
                self.draining = true;
                let _ = done.send(());
            }
            Command::Request {
                workflow,
                run,
                request,
                reply,
                watch,
            } => self.request(workflow, run, reply, request, watch),
            Command::Recover {
                workflow,
                run,
                reply,
                watch,
            } => {
                if let Some(parked) = self.parked.get_mut(&run) {
                    parked.waiters.push(reply);
                    return;
                }
                if let Some(active) = self.runs.get_mut(&run) {
                    // Already driven here: just wait for it.
                    active.waiters.push(reply);
                    return;
                }
                match self.lease_and_load(workflow, &run, Takeover::IfFree, true) {
                    Ok(mut active) => {
                        // Executions in flight when the previous process stopped
                        // run again, same attempt (at-least-once).
                        let decided = active.state.redeliver(self.clock.now());
                        active.waiters.push(reply);
                        active.watch = watch;
                        self.runs.insert(run.clone(), active);
                        self.take(&run, decided);
                        self.touched.insert(run);
                    }
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
        }
    }

    fn start(
        &mut self,
        workflow: Arc<Registered>,
        run: RunId,
        first: First,
        reply: Reply,
        detach: bool,
        watch: Option<Sender<Event>>,
    ) {
        let wf = &workflow.workflow;
        if self.runs.contains_key(&run) {
            let _ = reply.send(Err(RuntimeError::Exists {
                run: run.to_string(),
            }));
            return;
        }
        let first = match first {
            First::Input(input) => {
                if let Err(reason) = wf.check_input(&input) {
                    let _ = reply.send(Err(RuntimeError::InvalidInput {
                        workflow: wf.id().to_string(),
                        reason,
                    }));
                    return;
                }
                vec![Event::RunStarted {
                    run: run.clone(),
                    workflow: wf.id().clone(),
                    input,
                    state: wf.initial_state().clone(),
                    at: self.clock.now(),
                    origin: None,
                }]
            }
            First::Events(events) => events,
        };
        let meta = workflow.meta(&run);
        let mut state = RunState::new(Arc::clone(wf));
        if let Err(e) = first.iter().try_for_each(|e| state.apply(e)) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let mut active = Active {
            workflow,
            epoch: 0,
            state,
            committed: 0,
            pending: first,
            to_dispatch: Vec::new(),
            in_flight: HashSet::new(),
            wake: None,
            waiters: vec![reply],
            request: None,
            held: self.reorder_seed.map(|seed| Held::new(seed, &run)),
            detach,
            watch,
            interrupt: Interrupt::new(),
        };
        // The run's first steps are decided now, so that they are created in
        // the same transaction as the run (one commit, not two).
        let decided = active.state.advance(self.clock.now());
        if let Err(e) = decided.map(|d| absorb(&run, &mut active, d, &mut self.delayed)) {
            let _ = active.waiters.remove(0).send(Err(e.into()));
            return;
        }
        match self.store.create_run(
            &meta,
            &active.pending,
            self.keeper.owner(),
            active.stored_wake(),
        ) {
            Ok(lease) => active.epoch = lease.epoch,
            Err(e) => {
                let error = stored::error(&run, e);
                // Nothing was written: the only waiter is the caller.
                if let Some(waiter) = active.waiters.into_iter().next() {
                    let _ = waiter.send(Err(error));
                }
                return;
            }
        }
        self.runs.insert(run.clone(), active);
        self.take_effect(&run);
    }

    /// A worker reported a finished attempt: it applies now, or in the
    /// reordering mode it is held until [`Self::release_held`] draws it.
    fn finished(&mut self, done: Done) {
        if self.reorder_seed.is_none() {
            return self.report(done);
        }
        let Some(held) = self.runs.get_mut(&done.run).and_then(|a| a.held.as_mut()) else {
            // Not a run driven here: `report` drops it.
            return self.report(done);
        };
        self.holding.insert(done.run.clone());
        held.reports.push(done);
    }

    /// Applies a finished attempt's report to its run.
    fn report(&mut self, done: Done) {
        let Some(active) = self.runs.get_mut(&done.run) else {
            return;
        };
        active.in_flight.remove(&done.path);
        // Even a moot report changes something: the run may now be idle.
        self.touched.insert(done.run.clone());
        if !active.state.expects_report(&done.path, done.attempt) {
            // The run was canceled while the attempt ran, or it was reloaded
            // after another process changed it and no longer waits for this
            // attempt: its result is moot.
            tracing::debug!(run = %done.run, step = %done.path, "dropping the result of an attempt the run no longer expects");
            return;
        }
        match active.state.settled(done.executed.events) {
            Ok(recorded) => active.pending.extend(recorded),
            Err(e) => self.broken(&done.run, e),
        }
    }

    /// Runs whose retry time has come get advanced in this round.
    fn release_due(&mut self) {
        if self.draining {
            return;
        }
        let now = self.clock.now();
        while let Some(Reverse((due, _))) = self.delayed.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, run))) = self.delayed.pop() else {
                break;
            };
            if self.parked.get(&run).is_some_and(|p| p.wake == due) {
                self.unpark(&run);
            } else if let Some(active) = self.runs.get_mut(&run)
                && active.wake == Some(due)
            {
                active.wake = None;
                self.touched.insert(run);
            }
        }
    }

    /// Takes what the driver decided for a run into its working state, or
    /// drops the run if the state machine refused its own decision (a bug).
    fn take(&mut self, run: &RunId, decided: Result<Advance, TransitionError>) {
        let Some(active) = self.runs.get_mut(run) else {
            return;
        };
        if let Err(e) = decided.map(|d| absorb(run, active, d, &mut self.delayed)) {
            self.broken(run, e);
        }
    }

    /// The state machine refused an event this process produced: a bug. The
    /// run is dropped from memory (the store keeps what was committed) and
    /// its callers get the error, never a silently different run.
    fn broken(&mut self, run: &RunId, error: TransitionError) {
        tracing::error!(run = %run, "{error}");
        if let Some(active) = self.runs.remove(run) {
            active.interrupt.fire();
            for waiter in active.waiters {
                let _ = waiter.send(Err(RuntimeError::Transition(error.clone())));
            }
        }
    }

    /// Advances every run that changed this round, commits all their new
    /// events in one transaction, then lets them take effect.
    fn advance_and_commit(&mut self) {
        let now = self.clock.now();
        let touched: Vec<RunId> = self.touched.drain().collect();
        for run in &touched {
            let Some(active) = self.runs.get_mut(run) else {
                continue;
            };
            if self.draining {
                // Reports are recorded (below); nothing new starts.
                continue;
            }
            let decided = active.state.advance(now);
            self.take(run, decided);
        }
        let pending = |runs: &HashMap<RunId, Active>, run: &RunId| {
            runs.get(run).map(|a| !a.pending.is_empty())
        };
        let dirty: Vec<RunId> = touched
            .iter()
            .filter(|run| pending(&self.runs, run) == Some(true))
            .cloned()
            .collect();
        self.commit(&dirty);
        // Runs with nothing left to do here (e.g. recovered already finished,
        // a canceled run whose last attempt reported) answer their waiters
        // and are forgotten when idle.
        for run in &touched {
            let settled = self
                .runs
                .get(run)
                .is_some_and(|a| a.pending.is_empty() && a.state.status() != RunStatus::Running);
            if settled {
                self.take_effect(run);
            } else {
                // E.g. recovered asleep: nothing to commit, only a timer.
                self.park_if_waiting(run);
            }
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
                    epoch: active.epoch,
                    events: &active.pending,
                    wake: active.stored_wake(),
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
                        epoch: active.epoch,
                        events: &active.pending,
                        wake: active.stored_wake(),
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
        if let Some(watch) = &active.watch {
            for event in &active.pending {
                // A watcher that went away just stops watching.
                let _ = watch.send(event.clone());
            }
        }
        active.pending.clear();
        active.request = None;
        for task in active.to_dispatch.drain(..) {
            let view = active.state.view(&task.path);
            let item = WorkItem {
                workflow: Arc::clone(&active.workflow),
                task,
                view,
                interrupt: active.interrupt.clone(),
            };
            match &mut self.keep {
                Some(slot @ None) => *slot = Some(item),
                _ => self.bus.dispatch(item),
            }
        }
        if active.detach && active.only_waits() {
            // Detached: the caller learns it is running; `weft recover`
            // continues it. This process drives it no more.
            let result = active.state.result();
            for waiter in active.waiters.drain(..) {
                let _ = waiter.send(Ok(result.clone()));
            }
            self.release(run);
            self.runs.remove(run);
            return;
        }
        let status = active.state.status();
        if status == RunStatus::Canceled {
            // Attempts still in flight (a blocked step) stop now.
            active.interrupt.fire();
        }
        if matches!(
            status,
            RunStatus::Success | RunStatus::Failed | RunStatus::Suspended | RunStatus::Canceled
        ) {
            let result = active.state.result();
            for waiter in active.waiters.drain(..) {
                let _ = waiter.send(Ok(result.clone()));
            }
            self.forget_if_idle(run);
        } else {
            self.park_if_waiting(run);
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

/// Takes the driver's decisions into the run's working state: its events
/// are pending the next commit, its attempts queued for dispatch after that
/// commit, and a wake-up time is kept in `delayed` (once per time).
fn absorb(run: &RunId, active: &mut Active, decided: Advance, delayed: &mut Delayed) {
    active.pending.extend(decided.events);
    for effect in decided.effects {
        match effect {
            Effect::Execute(task) => {
                active.in_flight.insert(task.path.clone());
                active.to_dispatch.push(task);
            }
            Effect::WakeAt(due) => {
                if active.wake.is_none_or(|wake| due < wake) {
                    active.wake = Some(due);
                    delayed.push(Reverse((due, run.clone())));
                }
            }
        }
    }
}

/// Applies an event to the run's working state and queues it for the next
/// commit.
///
/// # Errors
/// When the state machine refuses it; nothing changes then.
fn apply(active: &mut Active, event: Event) -> Result<(), TransitionError> {
    active.state.apply(&event)?;
    active.pending.push(event);
    Ok(())
}
