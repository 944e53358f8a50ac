//! The evented runtime: the same state machine, driven through persisted
//! events, a bus and step workers.
//!
//! The orchestrator state holds the in-memory state of the runs this process
//! drives, behind one lock: a round takes every message waiting (commands,
//! finished attempts), applies their events to the runs' states, computes the
//! ready work with [`weft_core::RunState::ready`], and appends ALL the new
//! events of all runs in ONE store transaction (group commit). Only after that
//! commit does anything take effect: attempts are dispatched to workers and
//! callers learn results. If the commit fails, the affected runs are dropped
//! from memory and stay in the store as their last committed events say;
//! `recover` picks them up.
//!
//! Two kinds of thread run rounds. A step worker that finishes an attempt
//! runs the round itself when the lock is free: it applies its report,
//! commits, and keeps one of the attempts that became ready to run next, so
//! a sequential run goes from step to step without a thread hand-off. When
//! another round holds the lock (many runs active), the report goes to the
//! orchestrator thread instead, which commits everything that arrived while
//! the lock was held in one transaction: commits are immediate when one run
//! is active and batch themselves as load grows. The orchestrator thread also
//! serves commands, timers and the polling of runs that wait.
//!
//! Delivery is at-least-once: an attempt in flight when its process died runs
//! again on recovery, with the same attempt number and idempotency key. An
//! attempt whose completion was committed never runs again.
//!
//! A verification mode, [`EventedOptions::reorder_seed`], makes the
//! orchestrator apply each run's finished attempts in an order drawn from a
//! seed instead of the order they happen to finish in, so a test can explore
//! many interleavings of a run's concurrent steps, reproducibly.

mod bus;
mod orchestrator;

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use weft_core::{Clock, Event, EventStore, ResumeTarget, RunId, RunResult};

pub use bus::{Bus, Done, InProcessBus, WorkItem};

use orchestrator::{Command, First, Orchestrator, Reply};

use crate::error::RuntimeError;
use crate::runtime::{Answer, Registered, Request, RunObserver, Runtime, RuntimeKind};
use crate::worker::{execute_step, panic_message};

/// How an [`EventedRuntime`] behaves beyond its store, clock and workers.
/// `EventedOptions::default()` is what [`EventedRuntime::new`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventedOptions {
    /// **Seeded reordering, a test and verification mode** (`None`, the
    /// default: off, and the orchestrator pays nothing for it).
    ///
    /// With `Some(seed)`, the orchestrator holds back the reports of a run's
    /// finished attempts until none of that run's dispatched attempts is
    /// still in flight. Then it applies the held reports one at a time, in
    /// an order drawn from a generator seeded by `seed` and the run id
    /// (splitmix64, drawing among the held reports sorted by address), and
    /// advances and commits the run after each, so new work may be
    /// dispatched between them; that work's reports join the next draw.
    /// Different seeds thus explore different completion orders of
    /// concurrent steps (foreach items with `concurrency > 1`), which must
    /// all lead to the same per-address results. With a given seed the order
    /// is reproducible as long as the run's steps are (retry delays and
    /// suspensions are real time, and may change what is held together).
    ///
    /// It costs a commit per report and serialises a run's progress on its
    /// slowest in-flight attempt: never use it in production. The parity
    /// harness (`tests/all/parity.rs`) runs concurrent scenarios under many
    /// seeds.
    pub reorder_seed: Option<u64>,
    /// How the runtime leases the runs it drives.
    pub leases: crate::LeaseOptions,
}

/// Drives runs through an [`EventStore`] and step workers.
pub struct EventedRuntime {
    commands: Option<Sender<Command>>,
    orchestrator: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// Why the orchestrator thread stopped, once it has.
    panicked: Arc<Stop>,
}

impl EventedRuntime {
    /// Starts an orchestrator and `workers` step-worker threads (at least 1),
    /// with the default options.
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>, workers: usize) -> Self {
        Self::with_options(store, clock, workers, EventedOptions::default())
    }

    /// Starts an orchestrator and `workers` step-worker threads (at least 1)
    /// that behave as `options` say (see [`EventedOptions`]).
    pub fn with_options(
        store: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        workers: usize,
        options: EventedOptions,
    ) -> Self {
        let (bus, done) = InProcessBus::new();
        let bus: Arc<dyn Bus> = Arc::new(bus);
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (nudge, nudged) = crossbeam_channel::bounded(1);
        let keeper = Arc::new(crate::lease::Keeper::start(
            Arc::clone(&store),
            options.leases,
        ));
        let shared = Arc::new(Mutex::new(Orchestrator::new(
            store,
            keeper,
            Arc::clone(&clock),
            Arc::clone(&bus),
            options.reorder_seed,
        )));
        let panicked = Arc::new(Stop::default());
        let workers = (0..workers.max(1))
            .map(|i| {
                let worker = Worker {
                    bus: Arc::clone(&bus),
                    clock: Arc::clone(&clock),
                    shared: Arc::clone(&shared),
                    nudge: nudge.clone(),
                    panicked: Arc::clone(&panicked),
                };
                std::thread::Builder::new()
                    .name(format!("weft-worker-{i}"))
                    .spawn(move || worker.work())
                    .expect("spawn a worker thread")
            })
            .collect::<Vec<_>>();
        drop(nudge);
        let worker_count = workers.len();
        let why = Arc::clone(&panicked);
        let orchestrator = std::thread::Builder::new()
            .name("weft-orchestrator".into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    orchestrator::serve(&shared, &command_rx, &done, &nudged);
                }));
                if let Err(panic) = outcome {
                    record_panic(&why, &*panic);
                }
                // Dropping the orchestrator state (the workers drop their
                // handles to it as they stop) drops every waiting caller's
                // reply channel: they get an error, not a hang. Closing the
                // bus stops the workers, so `Drop` can join them.
                drop(shared);
                drop(command_rx);
                bus.close(worker_count);
                why.finish();
            })
            .expect("spawn the orchestrator thread");
        Self {
            commands: Some(commands),
            orchestrator: Some(orchestrator),
            workers,
            panicked,
        }
    }

    fn post(
        &self,
        make: impl FnOnce(Reply) -> Command,
    ) -> Receiver<Result<RunResult, RuntimeError>> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        if let Some(commands) = &self.commands {
            let _ = commands.send(make(reply));
        }
        rx
    }

    /// The command that starts `run` (see [`Command::Start`]), given its reply.
    fn starting(
        workflow: Arc<Registered>,
        run: RunId,
        first: First,
        detach: bool,
        watch: Option<Sender<Event>>,
    ) -> impl FnOnce(Reply) -> Command {
        move |reply| Command::Start {
            workflow,
            run,
            first,
            reply,
            detach,
            watch,
        }
    }

    fn submit_resume(
        &self,
        workflow: Arc<Registered>,
        run: RunId,
        target: ResumeTarget,
        payload: Value,
        watch: Option<Sender<Event>>,
    ) -> Receiver<Result<RunResult, RuntimeError>> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let Some(commands) = self.commands.clone() else {
            let _ = answer.send(Err(RuntimeError::ShutDown));
            return answered;
        };
        let panicked = Arc::clone(&self.panicked);
        // While another process holds the suspended run (resuming it too),
        // look again in a moment: the request is then decided on what that
        // process did, or taken once its lease is free. The waiting is on
        // this thread, never the orchestrator's.
        std::thread::spawn(move || {
            loop {
                let (reply, replied) = crossbeam_channel::bounded(1);
                let _ = commands.send(Command::Request {
                    workflow: Arc::clone(&workflow),
                    run: run.clone(),
                    request: orchestrator::Request::Resume {
                        target: target.clone(),
                        payload: payload.clone(),
                    },
                    reply,
                    watch: watch.clone(),
                });
                match replied.recv() {
                    Ok(Err(RuntimeError::Leased { remaining_ms, .. })) => {
                        crate::stored::look_again(remaining_ms);
                    }
                    Ok(other) => return drop(answer.send(other)),
                    Err(_) => return drop(answer.send(Err(stopped(&panicked)))),
                }
            }
        });
        answered
    }
}

impl EventedRuntime {
    /// Carries out `request`, sending the run's events to `watch` (if
    /// given) as they commit, from the request's own first event on; the
    /// receiver gets the answer once every event before it was sent. A
    /// resume of a run another process holds is asked again (on a thread
    /// of its own) until that process lets go of it.
    fn send(&self, request: Request, watch: Option<Sender<Event>>) -> Answer {
        match request {
            Request::Resume {
                workflow,
                run,
                target,
                payload,
            } => self.submit_resume(workflow, run, target, payload, watch),
            other => self.send_once(other, watch),
        }
    }

    /// [`EventedRuntime::send`], but a resume is asked once: its answer may
    /// be [`RuntimeError::Leased`].
    fn send_once(&self, request: Request, watch: Option<Sender<Event>>) -> Answer {
        match request {
            Request::Start {
                workflow,
                run,
                input,
                detach,
            } => self.post(Self::starting(
                workflow,
                run,
                First::Input(input),
                detach,
                watch,
            )),
            Request::StartWith {
                workflow,
                run,
                events,
            } => self.post(Self::starting(
                workflow,
                run,
                First::Events(events),
                false,
                watch,
            )),
            Request::Resume {
                workflow,
                run,
                target,
                payload,
            } => self.post(|reply| Command::Request {
                workflow,
                run,
                request: orchestrator::Request::Resume { target, payload },
                reply,
                watch,
            }),
            Request::Cancel {
                workflow,
                run,
                reason,
            } => self.post(|reply| Command::Request {
                workflow,
                run,
                request: orchestrator::Request::Cancel { reason },
                reply,
                watch,
            }),
            Request::Recover { workflow, run } => self.post(|reply| Command::Recover {
                workflow,
                run,
                reply,
                watch,
            }),
        }
    }
}

impl EventedRuntime {
    /// Carries out `request` once and waits for its answer, handing the
    /// run's events to `observer` as they commit.
    fn follow(
        &self,
        request: Request,
        observer: &mut dyn RunObserver,
    ) -> Result<RunResult, RuntimeError> {
        if !observer.wants_events() {
            return self
                .send_once(request, None)
                .recv()
                .unwrap_or_else(|_| Err(stopped(&self.panicked)));
        }
        let run = request.run().clone();
        let (watch, events) = crossbeam_channel::unbounded();
        let answer = self.send_once(request, Some(watch));
        let outcome = loop {
            crossbeam_channel::select! {
                recv(events) -> event => match event {
                    Ok(event) => observer.event(&run, &event),
                    // The run is done here; its answer is on its way.
                    Err(_) => break answer.recv(),
                },
                recv(answer) -> outcome => break outcome,
            }
        };
        // Every event committed before the answer was sent is queued.
        for event in events.try_iter() {
            observer.event(&run, &event);
        }
        outcome.unwrap_or_else(|_| Err(stopped(&self.panicked)))
    }
}

impl Runtime for EventedRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Evented
    }

    fn call(
        &self,
        request: Request,
        observer: &mut dyn RunObserver,
    ) -> Result<RunResult, RuntimeError> {
        if !matches!(request, Request::Resume { .. }) {
            return self.follow(request, observer);
        }
        // A resume of a run another process holds is asked again, from this
        // thread, until that process lets go of it.
        loop {
            match self.follow(request.clone(), observer) {
                Err(RuntimeError::Leased { remaining_ms, .. }) => {
                    crate::stored::look_again(remaining_ms);
                }
                other => return other,
            }
        }
    }

    fn submit(&self, request: Request, watch: Option<Sender<Event>>) -> Answer {
        self.send(request, watch)
    }

    fn drain(&self) {
        // Answered under the orchestrator's lock: once it is, no round
        // (the orchestrator's or a worker's) starts an attempt. A stopped
        // orchestrator drops the sender: nothing starts then either.
        let (done, drained) = crossbeam_channel::bounded(1);
        if let Some(commands) = &self.commands
            && commands.send(Command::Drain(done)).is_ok()
        {
            let _ = drained.recv();
        }
    }
}

impl Drop for EventedRuntime {
    fn drop(&mut self) {
        // Closing the command channel stops the orchestrator once no attempt
        // is in flight and every run has answered its callers or only waits
        // for a timer (a sleeping run is let go: it stays in the store,
        // running, with its wake time and no lease); it then closes the
        // bus, which stops the workers.
        self.commands = None;
        if let Some(orchestrator) = self.orchestrator.take() {
            let _ = orchestrator.join();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Why the orchestrator stopped, for its callers.
///
/// A panic inside a round unwinds through the code holding callers' reply
/// channels, so a caller can see its channel closed before the panic is
/// caught and recorded. [`stopped`] therefore waits until the orchestrator
/// thread has finished (it records any panic first) before it answers.
#[derive(Default)]
struct Stop {
    state: Mutex<(Option<String>, bool)>,
    finished: std::sync::Condvar,
}

impl Stop {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<String>, bool)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The orchestrator thread is done (after recording any panic).
    fn finish(&self) {
        self.lock().1 = true;
        self.finished.notify_all();
    }
}

/// The error for a caller whose request the runtime dropped: why it
/// stopped (a panic), or that it shut down. Waits (boundedly: the thread
/// stops right after dropping its callers) for the orchestrator thread to
/// have recorded why.
fn stopped(stop: &Stop) -> RuntimeError {
    let state = stop.lock();
    let (state, _) = stop
        .finished
        .wait_timeout_while(state, std::time::Duration::from_secs(10), |(why, done)| {
            why.is_none() && !*done
        })
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    state
        .0
        .clone()
        .map_or(RuntimeError::ShutDown, RuntimeError::Panicked)
}

/// Why the runtime stopped, for its callers: the first panic recorded.
fn record_panic(stop: &Stop, panic: &(dyn std::any::Any + Send)) {
    let message = panic_message(panic);
    tracing::error!("the orchestrator panicked: {message}");
    stop.lock().0.get_or_insert_with(|| message.to_owned());
    stop.finished.notify_all();
}

/// A step worker: runs attempts from the bus. When it finishes one and no
/// other round holds the orchestrator state, it applies its own report,
/// commits, and runs the next attempt of the run itself (no thread hand-off,
/// the same commit discipline); otherwise its report goes to the
/// orchestrator thread, which commits it with the others that arrived
/// meanwhile (group commit under load, commit at once when idle).
struct Worker {
    bus: Arc<dyn Bus>,
    clock: Arc<dyn Clock>,
    shared: Arc<Mutex<Orchestrator>>,
    nudge: Sender<()>,
    panicked: Arc<Stop>,
}

impl Worker {
    fn work(&self) {
        let mut kept: Option<WorkItem> = None;
        loop {
            let Some(item) = kept.take().or_else(|| self.bus.next_work()) else {
                return;
            };
            let executed = execute_step(
                &item.workflow.workflow,
                &*item.workflow.runner,
                &*self.clock,
                &item.task,
                &item.view,
                &item.interrupt,
            );
            let done = Done {
                run: item.task.run.clone(),
                path: item.task.path.clone(),
                attempt: item.task.attempt,
                executed,
            };
            drop(item);
            kept = self.continue_run(done);
        }
    }

    /// Applies `done` in this thread if the state is free (see [`Worker`]);
    /// returns the attempt to run next, if it kept one.
    fn continue_run(&self, done: Done) -> Option<WorkItem> {
        // Attempts wait for workers (many runs active): the orchestrator
        // thread commits this report with the others arriving meanwhile.
        // Otherwise, if no other round holds the state (or a worker
        // panicked in one: the orchestrator thread then stops the runtime),
        // commit it here at once.
        let state = if self.bus.backlog() {
            None
        } else {
            self.shared.try_lock().ok()
        };
        let Some(mut state) = state else {
            self.bus.report(done);
            return None;
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| state.continue_with(done))) {
            Ok((kept, wake)) => {
                drop(state);
                if wake {
                    // Full means a wake-up is pending already.
                    let _ = self.nudge.try_send(());
                }
                kept
            }
            Err(panic) => {
                // The state may be torn: say why, and unwind with its lock
                // held, which poisons it (the orchestrator thread stops on it).
                record_panic(&self.panicked, &*panic);
                let _ = self.nudge.try_send(());
                std::panic::resume_unwind(panic)
            }
        }
    }
}
