//! The orchestrator: the in-memory state of the runs this process drives.
//! A round (on the orchestrator thread, or on a step worker that finished an
//! attempt) advances them with the core driver, commits their events (group
//! commit) and only then lets them take effect.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};
use serde_json::Value;
use weft_core::{
    Advance, Append, Clock, Effect, Event, EventStore, ResumeError, ResumeTarget, RunId, RunResult,
    RunState, RunStatus, StepPath, StoreError, Takeover, Timestamp, TransitionError,
};

use super::bus::{Bus, Done, Registered, WorkItem};
use crate::error::RuntimeError;
use crate::lease::Keeper;
use crate::stored;

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
    },
}

/// A request the state machine turns into events (one, or one per
/// suspended address for a resume of all of them). Kept until they
/// commits: when another process appended first, it is decided again on the
/// run as stored now.
#[derive(Clone)]
pub(super) enum Request {
    Resume {
        target: ResumeTarget,
        payload: Value,
    },
    Cancel {
        reason: Option<String>,
    },
}

impl Request {
    /// `driving`: the run is running here, so an address suspended while
    /// others run may be resumed; a run loaded from the store must be
    /// suspended (if it is running, another process drives it).
    pub(super) fn decide(
        &self,
        state: &RunState,
        at: Timestamp,
        driving: bool,
    ) -> Result<Vec<Event>, ResumeError> {
        match self {
            Self::Resume { target, payload } if driving => {
                state.resume(target, payload.clone(), at)
            }
            Self::Resume { target, payload } => state.resume_stored(target, payload.clone(), at),
            Self::Cancel { reason } => state.cancel(reason.clone(), at).map(|e| vec![e]),
        }
    }

    /// How the request may take the lease of a run another process holds:
    /// a resume only a free run's; a cancel anyone's (the holder is fenced
    /// out and finds the run canceled).
    fn takeover(&self) -> Takeover<'static> {
        match self {
            Self::Resume { .. } => Takeover::IfFree,
            Self::Cancel { .. } => Takeover::Force,
        }
    }
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

/// The reports of a run's finished attempts, held back by the reordering
/// mode, and the generator that picks which one applies next. Held reports
/// stay in the run's `in_flight` until they apply, so every check that
/// waits for a run to go idle waits for them too.
struct Held {
    reports: Vec<Done>,
    rng: SplitMix64,
}

impl Held {
    /// One generator per run, from the seed and the run id: a run's order
    /// does not depend on the other runs the orchestrator drives.
    fn new(seed: u64, run: &RunId) -> Self {
        // FNV-1a of the run id.
        let hash = run
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        Self {
            reports: Vec::new(),
            rng: SplitMix64(seed ^ hash),
        }
    }

    /// Takes the next report to apply, drawn by the generator among the
    /// held ones sorted by address (so the draw does not depend on the
    /// order the workers happened to report in).
    fn draw(&mut self) -> Option<Done> {
        if self.reports.is_empty() {
            return None;
        }
        self.reports
            .sort_by(|a, b| (&a.path, a.attempt).cmp(&(&b.path, b.attempt)));
        let len = self.reports.len() as u64;
        let pick = usize::try_from(self.rng.next() % len).unwrap_or(0);
        Some(self.reports.remove(pick))
    }
}

/// splitmix64 (Steele, Lea, Flood 2014; the seeding generator of
/// `java.util.SplittableRandom` and of xoshiro): tiny, and good enough to
/// pick orders.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What woke the orchestrator thread.
enum Message {
    Command(Command),
    Done(Done),
    /// The command channel closed.
    Closed,
    /// A worker's round changed what the thread waits for, or time passed.
    Nothing,
}

/// The orchestrator thread: serves commands, the reports workers could not
/// apply themselves (another round held the state), timers and the polling
/// of waiting runs, until the command channel closes and every run it drives
/// has answered its callers. Each round holds the state's lock; so does a
/// worker's round ([`Orchestrator::continue_with`]), so rounds never overlap.
///
/// # Panics
/// When a worker panicked inside its round (the state may be torn): the
/// caller records why and shuts the runtime down.
pub(super) fn serve(
    shared: &Mutex<Orchestrator>,
    commands: &Receiver<Command>,
    done: &Receiver<Done>,
    nudged: &Receiver<()>,
) {
    let lock = || {
        shared.lock().unwrap_or_else(|_| {
            panic!("a step worker panicked while it held the orchestrator state")
        })
    };
    let mut open = true;
    let mut polled = std::time::Instant::now();
    loop {
        let (mut timeout, mut due, clock) = {
            let this = lock();
            if !open
                && this.parked.is_empty()
                && this
                    .runs
                    .values()
                    .all(|r| r.in_flight.is_empty() && r.waiters.is_empty())
            {
                break;
            }
            (
                this.next_timeout(),
                this.delayed.peek().map(|Reverse((due, _))| *due),
                Arc::clone(&this.clock),
            )
        };
        if timeout > POLL_WAITING {
            // Wake up in time to poll the waiting runs; not for the timer.
            timeout = POLL_WAITING;
            due = None;
        }
        let never = crossbeam_channel::never();
        let command_rx = if open { commands } else { &never };
        // Wait for the first message, then take everything already waiting.
        let first = select! {
            recv(command_rx) -> msg => msg.map_or(Message::Closed, Message::Command),
            recv(done) -> msg => msg.map_or(Message::Nothing, Message::Done),
            recv(nudged) -> _ => Message::Nothing,
            default(timeout) => {
                // The wait was computed for the earliest retry: the
                // system clock is there now (within microseconds); a
                // manual clock (tests) jumps to it.
                if let Some(due) = due {
                    clock.sleep_until(due);
                }
                Message::Nothing
            },
        };
        let mut this = lock();
        match first {
            Message::Command(cmd) => this.command(cmd),
            Message::Done(d) => this.finished(d),
            Message::Closed => {
                open = false;
                this.closing = true;
            }
            Message::Nothing => {}
        }
        for _ in 0..1024 {
            if let Ok(d) = done.try_recv() {
                this.finished(d);
            } else if let Ok(cmd) = commands.try_recv() {
                this.command(cmd);
            } else {
                break;
            }
        }
        this.round();
        if polled.elapsed() >= POLL_WAITING {
            this.poll_waiting();
            polled = std::time::Instant::now();
        }
    }
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
    /// or it waits for the runs to end to shut down).
    pub(super) fn continue_with(&mut self, done: Done) -> (Option<WorkItem>, bool) {
        let earliest = self.delayed.peek().map(|Reverse((due, _))| *due);
        self.keep = Some(None);
        self.finished(done);
        self.round();
        let kept = self.keep.take().flatten();
        let next = self.delayed.peek().map(|Reverse((due, _))| *due);
        (kept, self.closing || next != earliest)
    }

    /// How long to wait for messages: until the earliest retry is due (the
    /// clock says how long that is in real time), else a long idle tick.
    /// Never longer: the orchestrator must not sleep past a message.
    fn next_timeout(&self) -> Duration {
        match self.delayed.peek() {
            Some(Reverse((due, _))) => self.clock.wait_bound(*due),
            None => Duration::from_secs(1),
        }
    }

    /// Runs that only wait for a timer may have been changed by another
    /// process meanwhile (`weft cancel`): such a run is reloaded, so that a
    /// cancel interrupts a sleep within [`POLL_WAITING`] instead of at its
    /// wake-up time.
    fn poll_waiting(&mut self) {
        let waiting: Vec<(RunId, u64)> = self
            .runs
            .iter()
            .filter(|(_, a)| a.only_waits())
            .map(|(run, a)| (run.clone(), a.committed))
            .chain(
                self.parked
                    .iter()
                    .map(|(run, p)| (run.clone(), p.committed)),
            )
            .collect();
        if waiting.is_empty() {
            return;
        }
        match self.store.changed_since(&waiting) {
            Ok(changed) => {
                for run in changed {
                    if self.parked.contains_key(&run) {
                        // Reloaded as stored: a cancel then settles it.
                        self.unpark(&run);
                    } else {
                        self.reload(&run);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot check waiting runs for changes: {e}"),
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
                        self.runs.insert(run.clone(), active);
                        self.take(&run, decided);
                        self.touched.insert(run);
                    }
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
        }
    }

    /// A request that turns into one event decided by the state machine
    /// (resume, cancel) on a run driven here or loaded from the store. The
    /// caller is answered once the event and what follows are committed;
    /// `watch`, if given, watches the run from the request's event on
    /// (unless the run already has a watcher here).
    fn request(
        &mut self,
        workflow: Arc<Registered>,
        run: RunId,
        reply: Reply,
        request: Request,
        watch: Option<Sender<Event>>,
    ) {
        // A parked run is driven here: back into memory first.
        self.unpark(&run);
        let driving = self.runs.contains_key(&run);
        if !driving {
            match self.lease_and_load(Arc::clone(&workflow), &run, request.takeover(), false) {
                Ok(active) => {
                    self.runs.insert(run.clone(), active);
                }
                Err(leased @ RuntimeError::Leased { .. })
                    if matches!(request, Request::Resume { .. }) =>
                {
                    // Another process holds the run: if the resume does
                    // not fit the run as stored (it runs there), that is
                    // the answer; otherwise the holder is most likely
                    // resuming it right now, and the caller looks again in
                    // a moment (see `EventedRuntime::resume`).
                    let refused =
                        stored::load(&*self.store, &workflow, &run).and_then(|(state, _)| {
                            Ok(request.decide(&state, self.clock.now(), false)?)
                        });
                    return drop(reply.send(Err(refused.err().unwrap_or(leased))));
                }
                Err(e) => return drop(reply.send(Err(e))),
            }
        }
        let Some(active) = self.runs.get_mut(&run) else {
            return;
        };
        match request.decide(&active.state, self.clock.now(), driving) {
            Ok(events) => {
                active.waiters.push(reply);
                active.request = Some(request);
                if active.watch.is_none() {
                    active.watch = watch;
                }
                let applied = events.into_iter().try_for_each(|e| apply(active, e));
                match applied {
                    Ok(()) => drop(self.touched.insert(run)),
                    Err(e) => self.broken(&run, e),
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                if !driving {
                    // Loaded for this request only: let go of it.
                    self.release(&run);
                }
                self.forget_if_idle(&run);
            }
        }
    }

    /// Gives up this process's lease on a run it holds in memory (parked
    /// or active), e.g. one it leaves to `weft recover`.
    fn release(&self, run: &RunId) {
        let epoch = self
            .runs
            .get(run)
            .map(|a| a.epoch)
            .or_else(|| self.parked.get(run).map(|p| p.epoch));
        if let Some(epoch) = epoch {
            self.keeper.release(&weft_core::Lease {
                run: run.clone(),
                owner: self.keeper.owner().id.clone(),
                epoch,
            });
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

    /// Takes the run's lease (see [`stored::acquire`]), then loads it as
    /// stored: after the grant, nothing another owner decided can still
    /// commit, so what is loaded is the whole story.
    fn lease_and_load(
        &self,
        workflow: Arc<Registered>,
        run: &RunId,
        takeover: Takeover<'_>,
        recovering: bool,
    ) -> Result<Active, RuntimeError> {
        let owner = self.keeper.owner();
        let lease = stored::acquire(&*self.store, run, owner, takeover, recovering)?;
        let loaded = self.load(workflow, run, lease.epoch);
        if loaded.is_err() {
            self.keeper.release(&lease);
        }
        loaded
    }

    /// The run as stored, driven under the lease of `epoch`.
    fn load(
        &self,
        workflow: Arc<Registered>,
        run: &RunId,
        epoch: u64,
    ) -> Result<Active, RuntimeError> {
        let (state, events) = stored::load(&*self.store, &workflow, run)?;
        Ok(Active {
            workflow,
            epoch,
            state,
            committed: events.len() as u64,
            pending: Vec::new(),
            to_dispatch: Vec::new(),
            in_flight: HashSet::new(),
            wake: None,
            waiters: Vec::new(),
            request: None,
            held: self.reorder_seed.map(|seed| Held::new(seed, run)),
            detach: false,
            watch: None,
        })
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

    /// Reordering mode: for each run holding reports, once none of its
    /// attempts is still in flight (every one has reported), applies one
    /// held report drawn by the run's generator, advances the run and
    /// commits, so the run may dispatch new work; repeats while the run
    /// stays quiescent. New work dispatched in between is waited for, and
    /// its reports join the draw.
    fn release_held(&mut self) {
        let holding: Vec<RunId> = self.holding.drain().collect();
        for run in holding {
            while let Some(active) = self.runs.get_mut(&run) {
                let Some(held) = &mut active.held else {
                    break;
                };
                if held.reports.len() < active.in_flight.len() {
                    // Attempts still run: wait for their reports.
                    self.holding.insert(run);
                    break;
                }
                let Some(done) = held.draw() else {
                    break;
                };
                self.report(done);
                self.advance_and_commit();
            }
        }
    }

    /// Applies a finished attempt's report to its run.
    fn report(&mut self, done: Done) {
        let Some(active) = self.runs.get_mut(&done.run) else {
            return;
        };
        active.in_flight.remove(&done.path);
        // Even a moot report changes something: the run may now be idle.
        self.touched.insert(done.run.clone());
        for line in &done.executed.logs {
            tracing::info!(run = %done.run, step = %done.path, level = ?line.level, "{}", line.message);
        }
        if !active.state.expects_report(&done.path, done.attempt) {
            // The run was canceled while the attempt ran, or it was reloaded
            // after another process changed it and no longer waits for this
            // attempt: its result is moot.
            tracing::debug!(run = %done.run, step = %done.path, "dropping the result of an attempt the run no longer expects");
            return;
        }
        let mut applied = Ok(());
        for event in done.executed.events {
            applied = applied.and_then(|()| apply(active, event));
        }
        if let Err(e) = applied {
            self.broken(&done.run, e);
        }
    }

    /// Runs whose retry time has come get advanced in this round.
    fn release_due(&mut self) {
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

    /// A commit failed: the run's uncommitted events are dropped with its
    /// in-memory state; the store still holds its committed events.
    fn abandon(&mut self, run: &RunId, error: StoreError) {
        if matches!(error, StoreError::Conflict { .. }) {
            return self.reload(run);
        }
        if matches!(error, StoreError::Fenced { .. }) {
            return self.lost(run);
        }
        let Some(active) = self.runs.remove(run) else {
            return;
        };
        tracing::warn!(run = %run, "cannot commit the run's events: {error}");
        fail(run, active.waiters, stored::error(run, error));
    }

    /// This process's lease on the run was taken over (by a cancel, or by a
    /// host that presumed this one dead): what it decided is void, and it
    /// drives the run no more. Its callers learn the run as stored when it
    /// was canceled, else that this process lost the run.
    fn lost(&mut self, run: &RunId) {
        let Some(old) = self.runs.remove(run) else {
            return;
        };
        tracing::warn!(run = %run, "this process's lease on the run was taken over; it stops driving the run");
        if old.request.is_some() {
            // A resume whose claim lost to another process (a cancel): it
            // was not applied, whatever the run's state now.
            return fail(
                run,
                old.waiters,
                RuntimeError::Conflict {
                    run: run.to_string(),
                },
            );
        }
        // Only a cancel takes a run from a live owner; any other takeover
        // presumed this process dead, and what the run became is the other
        // process's to report.
        match stored::load(&*self.store, &old.workflow, run) {
            Ok((state, _)) if state.status() == RunStatus::Canceled => {
                let result = state.result();
                for waiter in old.waiters {
                    let _ = waiter.send(Ok(result.clone()));
                }
            }
            Ok(_) => fail(
                run,
                old.waiters,
                RuntimeError::LeaseLost {
                    run: run.to_string(),
                },
            ),
            Err(e) => fail(run, old.waiters, e),
        }
    }

    /// Another process appended to the run first: what this process decided
    /// is void. The run is reloaded as stored; a pending request (resume,
    /// cancel) is decided again on it; otherwise the caller learns what the
    /// other process did — the run finished, suspended or was canceled there,
    /// or is still being driven there.
    fn reload(&mut self, run: &RunId) {
        let Some(old) = self.runs.remove(run) else {
            return;
        };
        tracing::debug!(run = %run, "the run changed in the store; reloading it");
        let mut fresh = match self.load(Arc::clone(&old.workflow), run, old.epoch) {
            Ok(fresh) => fresh,
            Err(e) => return fail(run, old.waiters, e),
        };
        fresh.waiters = old.waiters;
        // What another process committed meanwhile is not replayed to the
        // watcher; it goes on seeing what this process commits.
        fresh.watch = old.watch;
        // Held reports are of dispatched attempts: they apply (or not) to
        // the reloaded run like reports still to come.
        if let Some(held) = old.held {
            if !held.reports.is_empty() {
                self.holding.insert(run.clone());
            }
            fresh.held = Some(held);
        }
        // Attempts this process dispatched still report here; what they
        // report applies only if the stored run still expects it. Attempts
        // queued for dispatch after the failed commit never left.
        let queued: HashSet<&StepPath> = old.to_dispatch.iter().map(|t| &t.path).collect();
        fresh.in_flight = old
            .in_flight
            .iter()
            .filter(|path| !queued.contains(path))
            .cloned()
            .collect();
        if let Some(request) = old.request {
            match request.decide(&fresh.state, self.clock.now(), false) {
                Ok(events) => {
                    fresh.request = Some(request);
                    let applied = events.into_iter().try_for_each(|e| apply(&mut fresh, e));
                    let decided = applied.and_then(|()| fresh.state.advance(self.clock.now()));
                    self.runs.insert(run.clone(), fresh);
                    self.take(run, decided);
                    if self.runs.contains_key(run) {
                        self.commit(std::slice::from_ref(run));
                    }
                }
                Err(e) => fail(run, fresh.waiters, e.into()),
            }
            return;
        }
        match stored::settled(&fresh.state, run) {
            Ok(()) => {
                let result = fresh.state.result();
                for waiter in fresh.waiters {
                    let _ = waiter.send(Ok(result.clone()));
                }
            }
            Err(e) => fail(run, fresh.waiters, e),
        }
    }

    /// Parks the run if nothing happens to it before a timer at least
    /// [`PARK_AFTER_MICROS`] away: its state leaves memory. Returns whether
    /// it did.
    fn park_if_waiting(&mut self, run: &RunId) -> bool {
        let Some(active) = self.runs.get(run) else {
            return false;
        };
        let Some(wake) = active.wake else {
            return false;
        };
        if !active.only_waits()
            || active.held.is_some()
            || wake.micros_since(self.clock.now()) < PARK_AFTER_MICROS
        {
            return false;
        }
        if let Some(active) = self.runs.remove(run) {
            self.parked.insert(
                run.clone(),
                Parked {
                    workflow: active.workflow,
                    epoch: active.epoch,
                    committed: active.committed,
                    wake,
                    waiters: active.waiters,
                    watch: active.watch,
                },
            );
        }
        true
    }

    /// Brings a parked run back into memory, as stored now, to be advanced
    /// this round (a no-op for a run that is not parked). If another process
    /// has taken it over meanwhile (it appended, and the run still runs),
    /// its callers learn that it is driven elsewhere.
    fn unpark(&mut self, run: &RunId) {
        let Some(parked) = self.parked.remove(run) else {
            return;
        };
        match self.load(parked.workflow, run, parked.epoch) {
            Ok(active)
                if active.committed != parked.committed
                    && active.state.status() == RunStatus::Running =>
            {
                fail(
                    run,
                    parked.waiters,
                    RuntimeError::DrivenElsewhere {
                        run: run.to_string(),
                    },
                );
            }
            Ok(mut active) => {
                active.waiters = parked.waiters;
                active.watch = parked.watch;
                self.runs.insert(run.clone(), active);
                self.touched.insert(run.clone());
            }
            Err(e) => fail(run, parked.waiters, e),
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

/// Answers every caller waiting on `run` with an error: the first gets
/// `error`, any other (several callers waiting on one run) a conflict.
fn fail(run: &RunId, waiters: Vec<Reply>, error: RuntimeError) {
    let mut error = Some(error);
    for waiter in waiters {
        let error = error.take().unwrap_or_else(|| RuntimeError::Conflict {
            run: run.to_string(),
        });
        let _ = waiter.send(Err(error));
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
