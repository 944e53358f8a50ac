//! The default runtime: the state machine driven in memory, recorded in the
//! same store as the evented runtime.
//!
//! A run is driven on the caller's thread and calls the step runner directly;
//! nothing is written while it runs. The store sees the run only where it
//! enters or leaves this process:
//!
//! - **entering** — `start` creates the run with its `run-started` event
//!   and its lease, `resume` takes the lease and appends `run-resumed`,
//!   `cancel` takes the lease (from any holder: the holder is fenced out)
//!   and appends `run-canceled`, each an optimistic append fenced by epoch
//!   and sequence number. Only after that claim commits does a step run, so
//!   a run id is created once and a suspended step is resumed once, however
//!   many processes try at the same moment;
//! - **leaving** — when the run finishes, fails or suspends, every event it
//!   produced is appended in one transaction, fenced by the lease's epoch,
//!   which releases the lease.
//!
//! Between the two the run lives only in memory, and the lease says this
//! process drives it (renewed by the runtime's keeper thread): `weft
//! recover` leaves it alone. If the process dies, the store holds the run
//! as `running` at its claim; once the lease expires (at once when the
//! process is provably gone), `weft recover` drives it again from there
//! (its steps run again, with the same idempotency keys). If another
//! process takes the run over meanwhile (this one was stopped past the
//! lease's time to live), this one stops at the next step boundary and
//! commits nothing: [`RuntimeError::LeaseLost`].

use std::sync::Arc;

use crossbeam_channel::Sender;
use serde_json::Value;
use weft_core::{
    Advance, Append, Clock, Effect, Event, EventStore, Interrupt, Lease, ResumeTarget, RunId,
    RunResult, RunState, RunStatus, StoreError, Takeover,
};

use crate::error::RuntimeError;
use crate::lease::{Keeper, LeaseOptions};
use crate::runtime::Registered;
use crate::runtime::{Answer, Request, RunObserver, Runtime, RuntimeKind};
use crate::stored;
use crate::worker::execute_step;

/// A run held in memory: its state and every event that built it.
#[derive(Debug, Clone)]
pub struct Run {
    state: RunState,
    events: Vec<Event>,
    /// How many of `events` the store holds.
    committed: u64,
    /// This process's lease on the run while it drives it; `None` once
    /// returned to the caller.
    held: Option<Held>,
}

/// A lease this runtime holds, and the keeper's flag saying it was lost.
#[derive(Debug, Clone)]
struct Held {
    lease: Lease,
    lost: Interrupt,
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

    /// Whether this process's lease on the run was taken over.
    fn lost(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.lost.is_fired())
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
///
/// Cloning it is cheap: the clones share the store, the clock, the lease
/// keeper and the pool.
#[derive(Clone)]
pub struct DefaultRuntime {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    keeper: Arc<Keeper>,
    pool: Arc<Pool>,
}

/// The threads that drive the runs submitted without waiting
/// ([`Runtime::submit`]), started at the first such run. Dropping the last
/// handle on the pool lets its threads end once the queue is empty.
struct Pool {
    threads: usize,
    jobs: std::sync::OnceLock<Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Pool {
    fn run(&self, job: Job) {
        let jobs = self.jobs.get_or_init(|| {
            let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
            for i in 0..self.threads.max(1) {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("weft-run-{i}"))
                    .spawn(move || {
                        for job in queue {
                            // A panic (a bug) drops that run's answer
                            // channel, so its caller is told; the thread
                            // goes on with the next run.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })
                    .expect("spawn a run thread");
            }
            jobs
        });
        let _ = jobs.send(job);
    }
}

impl DefaultRuntime {
    /// A runtime recording runs in `store`, reading time from `clock`, with
    /// the default lease options.
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self::with_leases(store, clock, LeaseOptions::default())
    }

    /// A runtime recording runs in `store`, reading time from `clock`,
    /// leasing the runs it drives as `leases` says.
    pub fn with_leases(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        leases: LeaseOptions,
    ) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        Self::configured(store, clock, threads, leases)
    }

    /// A runtime recording runs in `store`, reading time from `clock`,
    /// leasing the runs it drives as `leases` says, driving runs submitted
    /// without waiting ([`Runtime::submit`]) on `threads` threads.
    pub fn configured(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        threads: usize,
        leases: LeaseOptions,
    ) -> Self {
        let keeper = Arc::new(Keeper::start(Arc::clone(&store), leases));
        Self {
            store,
            clock,
            keeper,
            pool: Arc::new(Pool {
                threads,
                jobs: std::sync::OnceLock::new(),
            }),
        }
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
            held: None,
        };
        for event in first {
            run.apply(event, observer)?;
        }
        let lease = self
            .store
            .create_run(
                &workflow.meta(run_id),
                &run.events,
                self.keeper.owner(),
                None,
            )
            .map_err(|e| stored::error(run_id, e))?;
        run.committed = run.events.len() as u64;
        run.held = Some(self.hold(lease));
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
        let run = self.claim(workflow, run_id, observer, Takeover::IfFree, |state, at| {
            state.resume_stored(target, payload.clone(), at)
        })?;
        self.drive(workflow, run, observer, false)
    }

    /// Cancels a stored running or suspended run: nothing more runs. A run
    /// another process drives is taken from it (its lease is taken over, so
    /// it commits nothing more and reports the run canceled).
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
        let (state, events, before) = stored::cancel(
            &*self.store,
            workflow,
            run_id,
            self.keeper.owner(),
            reason.as_deref(),
            &*self.clock,
        )?;
        for event in &events[before..] {
            observer.event(run_id, event);
        }
        // The cancel settled the run, which released its lease.
        Ok(Run {
            state,
            committed: events.len() as u64,
            events,
            held: None,
        })
    }

    /// Takes over a `running` run that no live process holds (no lease, an
    /// expired one, or one whose process is provably gone from this host)
    /// and drives it until it finishes or suspends: attempts that were in
    /// flight run again (same attempt number, same idempotency key),
    /// committed ones never. A run that is no longer running is returned
    /// as stored.
    ///
    /// # Errors
    /// [`RuntimeError::Leased`] when a live process drives the run; as
    /// [`DefaultRuntime::resume`] otherwise.
    pub fn recover(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        observer: &mut dyn RunObserver,
    ) -> Result<Run, RuntimeError> {
        let owner = self.keeper.owner();
        let lease = stored::acquire(&*self.store, run_id, owner, Takeover::IfFree, true)?;
        let mut run = self.load_held(workflow, run_id, lease)?;
        if run.state.status() != RunStatus::Running {
            self.let_go(&mut run);
            return Ok(run);
        }
        let redelivered = match run.state.redeliver(self.clock.now()) {
            Ok(advance) => advance,
            Err(e) => {
                self.let_go(&mut run);
                return Err(e.into());
            }
        };
        self.drive_from(workflow, run, Some(redelivered), observer, false)
    }

    /// The run as stored, held under `lease` (watched from now on); the
    /// lease is given back if the run cannot be loaded.
    fn load_held(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        lease: Lease,
    ) -> Result<Run, RuntimeError> {
        let held = self.hold(lease);
        match stored::load(&*self.store, workflow, run_id) {
            Ok((state, events)) => Ok(Run {
                state,
                committed: events.len() as u64,
                events,
                held: Some(held),
            }),
            Err(e) => {
                self.keeper.release(&held.lease);
                Err(e)
            }
        }
    }

    /// Watches a lease this runtime was granted.
    fn hold(&self, lease: Lease) -> Held {
        let lost = self.keeper.watch(&lease);
        Held { lease, lost }
    }

    /// Takes the run's lease (as `takeover` allows), loads the run, lets
    /// `decide` turn the request into events and appends them. When another
    /// process appended first, the request is decided again on the run as
    /// it is now. A refused request releases the lease.
    fn claim(
        &self,
        workflow: &Arc<Registered>,
        run_id: &RunId,
        observer: &mut dyn RunObserver,
        takeover: Takeover<'_>,
        decide: impl Fn(&RunState, weft_core::Timestamp) -> Result<Vec<Event>, weft_core::ResumeError>,
    ) -> Result<Run, RuntimeError> {
        loop {
            let acquired =
                stored::acquire(&*self.store, run_id, self.keeper.owner(), takeover, false);
            let lease = match acquired {
                Ok(lease) => lease,
                Err(RuntimeError::Leased { remaining_ms, .. }) => {
                    // Another process holds the run. If the request does
                    // not fit the run as stored (a resume of a running
                    // run), that is the answer; otherwise the holder is
                    // most likely claiming it for the same request right
                    // now (concurrent resumes): look again in a moment,
                    // and the request is decided on what it did.
                    let (state, _) = stored::load(&*self.store, workflow, run_id)?;
                    decide(&state, self.clock.now())?;
                    stored::look_again(remaining_ms);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut run = self.load_held(workflow, run_id, lease)?;
            let decided = decide(&run.state, self.clock.now());
            let applied = decided.map_err(RuntimeError::from).and_then(|events| {
                events
                    .into_iter()
                    .try_for_each(|event| run.apply(event, observer))
            });
            if let Err(e) = applied {
                self.let_go(&mut run);
                return Err(e);
            }
            match self.persist(&mut run) {
                // Another process appended first, or took the lease (a
                // cancel): decide again on what it did.
                Err(StoreError::Conflict { .. } | StoreError::Fenced { .. }) => continue,
                Err(e) => {
                    self.let_go(&mut run);
                    return Err(stored::error(run_id, e));
                }
                Ok(()) => return Ok(run),
            }
        }
    }

    /// Gives up the run's lease, if this runtime still holds it.
    fn let_go(&self, run: &mut Run) {
        if let Some(held) = run.held.take() {
            self.keeper.release(&held.lease);
        }
    }

    /// Waits until `due` (a sleep, a retry delay), checking every second
    /// whether another process changed the stored run (`weft cancel`) or
    /// took the lease. Returns `false` when it did: the run's new events
    /// will not commit, and what is stored is the caller's answer.
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
            if run.lost() {
                return false;
            }
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

    /// Appends the run's uncommitted events in one transaction, under its
    /// lease, with its wake time.
    fn persist(&self, run: &mut Run) -> Result<(), StoreError> {
        let Some(id) = run.state.run_id() else {
            return Ok(());
        };
        let new = &run.events[run.committed as usize..];
        if new.is_empty() {
            return Ok(());
        }
        let Some(held) = &run.held else {
            return Err(StoreError::Backend(format!(
                "run {id}: appending without a lease (a bug)"
            )));
        };
        self.store.append_batch(&[Append {
            run: id,
            expected: run.committed,
            epoch: held.lease.epoch,
            events: new,
            wake: run.state.next_wake(),
        }])?;
        run.committed = run.events.len() as u64;
        Ok(())
    }

    /// Advances the run and performs what the driver decides until it
    /// settles (finishes, fails, suspends), then records the run's new
    /// events. If another process changed the run meanwhile, what is stored
    /// wins: a run canceled there is what the caller gets; a run taken over
    /// (this process was presumed dead) is [`RuntimeError::LeaseLost`].
    fn drive(
        &self,
        workflow: &Arc<Registered>,
        run: Run,
        observer: &mut dyn RunObserver,
        detach: bool,
    ) -> Result<Run, RuntimeError> {
        self.drive_from(workflow, run, None, observer, detach)
    }

    /// [`DefaultRuntime::drive`], beginning with `first` (already applied
    /// to the run's state) when given: a recovery's redelivered attempts.
    fn drive_from(
        &self,
        workflow: &Arc<Registered>,
        mut run: Run,
        mut first: Option<Advance>,
        observer: &mut dyn RunObserver,
        detach: bool,
    ) -> Result<Run, RuntimeError> {
        let mut interrupted = false;
        loop {
            let advance = match first.take() {
                Some(first) => first,
                None => run.state.advance(self.clock.now())?,
            };
            let mut executed_any = false;
            let mut waits = false;
            let mut changed = false;
            let idle = advance.effects.is_empty();
            run.record(advance.events, observer);
            for effect in advance.effects {
                if run.lost() {
                    // Taken over: stop at this step boundary.
                    changed = true;
                    break;
                }
                match effect {
                    // The run no longer waits for this attempt: an attempt
                    // before it in this batch failed the run (its budget).
                    Effect::Execute(task)
                        if !run.state.expects_report(&task.path, task.attempt) => {}
                    Effect::Execute(task) => {
                        executed_any = true;
                        let view = run.state.view(&task.path);
                        // Fires when the keeper finds the lease taken over
                        // (`weft cancel`, a takeover): the attempt stops.
                        let interrupt = run
                            .held
                            .as_ref()
                            .map_or_else(Interrupt::new, |h| h.lost.clone());
                        let executed = execute_step(
                            &workflow.workflow,
                            &*workflow.runner,
                            &*self.clock,
                            &task,
                            &view,
                            &interrupt,
                        );
                        drop(view);
                        let recorded = run.state.settled(executed.events)?;
                        run.record(recorded, observer);
                    }
                    // Only when nothing else ran: what ran may change the plan.
                    Effect::WakeAt(_) if detach && !executed_any => waits = true,
                    Effect::WakeAt(due) if !executed_any => {
                        changed = !self.wait(&run, due);
                    }
                    Effect::WakeAt(_) => {}
                }
            }
            // Settled, detached while it only waits for a timer, changed
            // elsewhere, or (never for runs this runtime drives) waiting for
            // an attempt it does not execute.
            interrupted |= changed;
            if idle || waits || changed || run.state.status() != RunStatus::Running {
                break;
            }
        }
        let run_id = run.result().run_id;
        // Another process wrote to the run (every writer takes the lease
        // first, so this process's append would be fenced): its new events
        // are void; what is stored is the answer.
        let persisted = (!interrupted).then(|| self.persist(&mut run));
        match persisted {
            Some(Ok(())) => {
                if run.state.status() == RunStatus::Running {
                    // Detached: `weft recover` (or any host) continues it.
                    self.let_go(&mut run);
                } else if let Some(held) = run.held.take() {
                    // Settled: the append released the lease.
                    self.keeper.unwatch(&held.lease.run);
                }
                Ok(run)
            }
            None | Some(Err(StoreError::Conflict { .. } | StoreError::Fenced { .. })) => {
                if let Some(held) = run.held.take() {
                    self.keeper.unwatch(&held.lease.run);
                }
                let (state, events) = stored::load(&*self.store, workflow, &run_id)?;
                // Only a cancel takes a run from a live owner; any other
                // takeover presumed this process dead, and what the run
                // became is the other process's to report.
                if state.status() != RunStatus::Canceled {
                    return Err(RuntimeError::LeaseLost {
                        run: run_id.to_string(),
                    });
                }
                Ok(Run {
                    state,
                    committed: events.len() as u64,
                    events,
                    held: None,
                })
            }
            Some(Err(e)) => {
                self.let_go(&mut run);
                Err(stored::error(&run_id, e))
            }
        }
    }
}

impl Runtime for DefaultRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Default
    }

    fn call(
        &self,
        request: Request,
        observer: &mut dyn RunObserver,
    ) -> Result<RunResult, RuntimeError> {
        let run = match request {
            Request::Start {
                workflow,
                run,
                input,
                detach,
            } => self.begin(&workflow, run, input, observer, detach),
            Request::StartWith {
                workflow,
                run,
                events,
            } => self.start_with(&workflow, run, events, observer),
            Request::Resume {
                workflow,
                run,
                target,
                payload,
            } => self.resume(&workflow, &run, &target, payload, observer),
            Request::Cancel {
                workflow,
                run,
                reason,
            } => self.cancel(&workflow, &run, reason, observer),
            Request::Recover { workflow, run } => self.recover(&workflow, &run, observer),
        };
        run.map(|run| run.result())
    }

    fn submit(&self, request: Request, watch: Option<Sender<Event>>) -> Answer {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let runtime = self.clone();
        self.pool.run(Box::new(move || {
            let result = match watch {
                Some(mut watch) => runtime.call(request, &mut watch),
                None => runtime.call(request, &mut crate::NoObserver),
            };
            let _ = answer.send(result);
        }));
        answered
    }
}
