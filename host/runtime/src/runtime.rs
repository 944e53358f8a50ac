//! One interface over both runtimes: what a caller (the CLI, the tests,
//! the benches, later a server) asks of a runtime about a run, whichever
//! configuration drives it.
//!
//! The default and evented runtimes are two configurations of one
//! lifecycle (one state machine, one driver, one lease per run, fenced
//! appends): they differ in when they commit (where a run enters and
//! leaves the process, or every round) and where attempts execute (inline
//! on the driving thread, or on a worker pool). A caller picks one with
//! [`RuntimeKind`] and from then on sees only [`Runtime`].

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use weft_core::{Event, ResumeTarget, RunId, RunMeta, RunResult, StepRunner, Workflow};

use crate::error::RuntimeError;

/// A workflow the runtime can run: its graph, the runner of its steps, and
/// where it came from (recorded with each run so any process can load it).
pub struct Registered {
    /// The workflow.
    pub workflow: Arc<Workflow>,
    /// Runs its steps.
    pub runner: Arc<dyn StepRunner>,
    /// The manifest's absolute path.
    pub manifest: String,
    /// SHA-256 of the manifest text.
    pub manifest_sha256: String,
    /// The digest of the workflow lock a new run is pinned to (the caller
    /// stores the lock first); `None` records no pin.
    pub workflow_digest: Option<String>,
}

impl Registered {
    /// What the store records about a run of this workflow.
    pub fn meta(&self, run: &RunId) -> RunMeta {
        RunMeta {
            run_id: run.clone(),
            workflow_id: self.workflow.id().clone(),
            manifest: self.manifest.clone(),
            manifest_sha256: self.manifest_sha256.clone(),
            workflow_digest: self.workflow_digest.clone(),
        }
    }
}

/// What a caller asks of a runtime about one run.
#[derive(Clone)]
pub enum Request {
    /// Start a run of `workflow` with `input`. With `detach`, the answer
    /// comes (the run `running`) as soon as the run has nothing to do but
    /// wait for a timer (a sleep, a retry delay), and this runtime drives it
    /// no more: its wake time is stored, and `weft recover` (any process)
    /// continues it.
    Start {
        /// The workflow.
        workflow: Arc<Registered>,
        /// The new run's id (taken once in the store).
        run: RunId,
        /// The workflow's input.
        input: Value,
        /// Return once the run only waits for a timer.
        detach: bool,
    },
    /// Start a run whose first events are `events` (a rerun's, see
    /// [`weft_core::rerun`]: `run-started` and what it takes over).
    StartWith {
        /// The workflow.
        workflow: Arc<Registered>,
        /// The new run's id.
        run: RunId,
        /// Its first events.
        events: Vec<Event>,
    },
    /// Resume suspended steps of a stored run (started by any process).
    Resume {
        /// The run's workflow.
        workflow: Arc<Registered>,
        /// The run.
        run: RunId,
        /// Which suspended steps.
        target: ResumeTarget,
        /// The resume data (checked against the step's resume schema).
        payload: Value,
    },
    /// Cancel a running or suspended run, from whichever process drives it.
    Cancel {
        /// The run's workflow.
        workflow: Arc<Registered>,
        /// The run.
        run: RunId,
        /// Why, if said.
        reason: Option<String>,
    },
    /// Take over a `running` run that no live process holds (no lease, an
    /// expired one, or one whose process is provably gone) and drive it:
    /// attempts in flight run again, committed ones never.
    Recover {
        /// The run's workflow.
        workflow: Arc<Registered>,
        /// The run.
        run: RunId,
    },
}

impl Request {
    /// The run the request is about.
    #[must_use]
    pub fn run(&self) -> &RunId {
        match self {
            Self::Start { run, .. }
            | Self::StartWith { run, .. }
            | Self::Resume { run, .. }
            | Self::Cancel { run, .. }
            | Self::Recover { run, .. } => run,
        }
    }

    /// The workflow of the run the request is about.
    #[must_use]
    pub fn workflow(&self) -> &Arc<Registered> {
        match self {
            Self::Start { workflow, .. }
            | Self::StartWith { workflow, .. }
            | Self::Resume { workflow, .. }
            | Self::Cancel { workflow, .. }
            | Self::Recover { workflow, .. } => workflow,
        }
    }
}

/// Where a submitted request's answer arrives: the run's result once it
/// finishes, fails, suspends (or, detached, only waits), or why not.
pub type Answer = Receiver<Result<RunResult, RuntimeError>>;

/// Sees a run's new events as the runtime records them, in the order of
/// the run's stored log (`weft run --watch`, the per-step lines). Step log
/// lines go to `tracing` in both runtimes (target `weft_runtime::worker`, fields
/// `run` and `step`).
pub trait RunObserver {
    /// An event was recorded: the default runtime calls this as it applies
    /// the event, the evented runtime once the event has committed.
    fn event(&mut self, _run: &RunId, _event: &Event) {}

    /// Whether [`RunObserver::event`] does anything: a runtime need not
    /// collect events for an observer that ignores them.
    fn wants_events(&self) -> bool {
        true
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl RunObserver for NoObserver {
    fn wants_events(&self) -> bool {
        false
    }
}

/// Sends each event to a channel (a watcher of a submitted run); a
/// watcher that went away just stops watching.
impl RunObserver for Sender<Event> {
    fn event(&mut self, _run: &RunId, event: &Event) {
        let _ = self.send(event.clone());
    }
}

/// A runtime: drives runs through one lifecycle, recording them in its
/// store. Both configurations implement it ([`crate::DefaultRuntime`],
/// [`crate::EventedRuntime`]); [`RuntimeKind::build`] makes either.
pub trait Runtime: Send + Sync {
    /// Which configuration this is.
    fn kind(&self) -> RuntimeKind;

    /// Carries out `request` and waits for its answer; `observer` sees the
    /// run's new events as they are recorded (from the request's own first
    /// event on). Every event recorded before the answer has been seen
    /// when this returns.
    ///
    /// # Errors
    /// The request's refusal ([`RuntimeError::InvalidInput`],
    /// [`RuntimeError::Exists`], [`RuntimeError::Resume`],
    /// [`RuntimeError::Leased`], …), or the run taken from this process
    /// ([`RuntimeError::LeaseLost`], [`RuntimeError::DrivenElsewhere`]);
    /// store failures. A step's failure is not an error: it is in the
    /// run's result.
    fn call(
        &self,
        request: Request,
        observer: &mut dyn RunObserver,
    ) -> Result<RunResult, RuntimeError>;

    /// Carries out `request` without waiting: many runs go on at once this
    /// way (on the evented runtime's workers; the default runtime drives
    /// each on a thread of its own pool, one per core). `watch`, if given,
    /// gets the run's new events as [`Runtime::call`]'s observer would,
    /// each before the answer.
    fn submit(&self, request: Request, watch: Option<Sender<Event>>) -> Answer;

    /// Starts no attempt from now on — once this returns, none starts — (a
    /// host shutting down): the attempts
    /// in flight finish and their reports are recorded, then every run this
    /// runtime drives is let go — left in the store as it is, `running`
    /// with no lease, for whichever process takes it next — and its waiting
    /// callers learn the runtime stopped. Dropping the runtime afterwards
    /// waits for that, not for the runs to end. Requests after it are not
    /// refused, but their runs are let go in the same way.
    ///
    /// The default runtime drives each run on its caller's thread, to its
    /// end: it has nothing to stop, and ignores this.
    fn drain(&self) {}
}

/// The two configurations of the run lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// Records a run where it enters and leaves the process and calls
    /// components directly on the driving thread: fastest, not
    /// crash-durable between.
    Default,
    /// Persists every event before it takes effect and runs attempts on a
    /// worker pool: survives crashes.
    Evented,
}

impl RuntimeKind {
    /// Both, default first.
    pub const ALL: [RuntimeKind; 2] = [RuntimeKind::Default, RuntimeKind::Evented];

    /// The configuration's name (`default`, `evented`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Evented => "evented",
        }
    }

    /// A runtime of this kind over `store`, reading time from `clock`,
    /// with `workers` threads (at least 1) for attempts (evented) or runs
    /// submitted without waiting (default), leasing runs as `leases` says.
    #[must_use]
    pub fn build(
        self,
        store: Arc<dyn weft_core::EventStore>,
        clock: Arc<dyn weft_core::Clock>,
        workers: usize,
        leases: crate::LeaseOptions,
    ) -> Box<dyn Runtime> {
        match self {
            Self::Default => Box::new(crate::DefaultRuntime::configured(
                store, clock, workers, leases,
            )),
            Self::Evented => Box::new(crate::EventedRuntime::with_options(
                store,
                clock,
                workers,
                crate::EventedOptions {
                    leases,
                    ..crate::EventedOptions::default()
                },
            )),
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
