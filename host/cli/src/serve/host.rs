//! The server's state and what it does besides answering requests: deployed
//! workflows (loaded once per version), the runtime every request goes to,
//! and the recovery loop that takes over runs nobody drives.
//!
//! Everything here blocks (the store, the runtime, compiling components);
//! the HTTP handlers call it on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use crossbeam_channel::{Receiver, TryRecvError, TrySendError};
use sha2::{Digest as _, Sha256};
use weft_core::{
    Clock as _, Deployment, RunId, RunMeta, RunResult, RunStatus, StepId, Store, Timestamp,
};
use weft_manifest::WorkflowLock;
use weft_runtime::{Answer, Registered, Request, Runtime, RuntimeError, SystemClock};

use super::notify::Changes;
use crate::exit::Failure;
use crate::home::Home;
use crate::load::{Loaded, load, load_lock, load_run_workflow};
use crate::{bundle, engine};

/// How a request submitted to the runtime went, as far as the caller waited.
pub enum Accepted {
    /// The run settled (finished, failed, suspended, was canceled) in time.
    Settled(Box<RunResult>),
    /// The request took effect (its first event is recorded); the run goes
    /// on.
    Going,
}

/// A deploy's outcome.
pub struct Deployed {
    /// The version.
    pub deployment: Deployment,
    /// Whether it is new (not deployed before).
    pub new: bool,
}

/// The server's state.
pub struct Host {
    home: Home,
    store: Arc<dyn Store>,
    runtime: Box<dyn Runtime>,
    changes: Changes,
    /// Workflows loaded so far, by lock digest and origin: each version's
    /// components are prepared once.
    workflows: Mutex<HashMap<(String, String), Arc<Registered>>>,
    /// Recovery is done: `/readyz` says so.
    ready: AtomicBool,
    /// Where deployed bundles are unpacked, each in a directory named by
    /// the SHA-256 of its bytes.
    bundles: PathBuf,
    /// Dropped at shutdown ([`Host::close`]): requests waiting for a run
    /// to settle stop waiting.
    closing: Mutex<Option<crossbeam_channel::Sender<()>>>,
    closed: Receiver<()>,
}

impl Host {
    /// The state of a server over `store`, driving runs with `runtime`
    /// (built over the store wrapped to announce on `changes`).
    pub fn new(
        home: Home,
        store: Arc<dyn Store>,
        runtime: Box<dyn Runtime>,
        changes: Changes,
    ) -> Self {
        let bundles = home.bundles_dir();
        let (closing, closed) = crossbeam_channel::bounded(0);
        Self {
            closing: Mutex::new(Some(closing)),
            closed,
            home,
            store,
            runtime,
            changes,
            workflows: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            bundles,
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Where runs with new events are announced.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Whether start-up recovery is done.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The server shuts down: requests waiting for runs to settle answer
    /// with what the run is now.
    pub fn close(&self) {
        self.closing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Gives the runtime up (the caller drops it when it may block).
    pub fn into_runtime(self) -> Box<dyn Runtime> {
        self.runtime
    }

    fn cached(&self, key: &(String, String)) -> Option<Arc<Registered>> {
        self.workflows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn cache(&self, key: (String, String), loaded: &Loaded) -> Arc<Registered> {
        let registered = engine::registered(loaded, Some(key.0.clone()));
        self.workflows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key)
            .or_insert(registered)
            .clone()
    }

    /// The workflow a stored run runs, loaded once per version.
    ///
    /// # Errors
    /// A workflow that does not load; store failures.
    pub fn registered_run(&self, meta: &RunMeta) -> Result<Arc<Registered>, Failure> {
        let Some(digest) = &meta.workflow_digest else {
            // A run recorded before runs were pinned: loaded from disk each
            // time (rare, and its manifest may change).
            let loaded = load_run_workflow(&self.home, &*self.store, meta)?;
            return Ok(engine::registered(&loaded, None));
        };
        let key = (digest.clone(), meta.manifest.clone());
        if let Some(registered) = self.cached(&key) {
            return Ok(registered);
        }
        let loaded = load_run_workflow(&self.home, &*self.store, meta)?;
        Ok(self.cache(key, &loaded))
    }

    /// The deployed version of `workflow` a start names (`version`: a digest
    /// or a prefix of one, at least 8 characters), else its newest.
    ///
    /// # Errors
    /// [`Lookup::NotFound`] when no such workflow or version is deployed;
    /// [`Lookup::Failed`] for load and store failures.
    pub fn deployed(
        &self,
        workflow: &StepId,
        version: Option<&str>,
    ) -> Result<Arc<Registered>, Lookup> {
        let versions = self
            .store
            .deployments(Some(workflow))
            .map_err(|e| Lookup::Failed(Failure::other(e)))?;
        let chosen = match version {
            None => versions.first(),
            Some(v) if v.len() >= 8 => versions.iter().find(|d| d.digest.starts_with(v)),
            Some(_) => {
                return Err(Lookup::Failed(Failure::invalid(anyhow!(
                    "version: give a workflow digest or at least its first 8 characters"
                ))));
            }
        };
        let Some(chosen) = chosen else {
            return Err(Lookup::NotFound(match version {
                None => format!("no workflow `{workflow}` is deployed"),
                Some(v) => format!("workflow `{workflow}` has no deployed version `{v}`"),
            }));
        };
        let text = self
            .store
            .workflow(&chosen.digest)
            .map_err(|e| Lookup::Failed(Failure::other(e)))?;
        let lock = WorkflowLock::from_json(&text)
            .map_err(|e| Lookup::Failed(Failure::other(anyhow!("a deployed lock: {e}"))))?;
        let origin = lock.manifest.clone();
        let key = (chosen.digest.clone(), origin.clone());
        if let Some(registered) = self.cached(&key) {
            return Ok(registered);
        }
        let loaded = load_lock(&self.home, lock, origin).map_err(Lookup::Failed)?;
        Ok(self.cache(key, &loaded))
    }

    /// Deploys a bundle (see [`bundle`]): unpacks it once per content,
    /// loads and compiles its workflow, stores the lock and records the
    /// version. The same bytes again change nothing.
    ///
    /// # Errors
    /// An invalid bundle or workflow (invalid input, located in the
    /// manifest); I/O and store failures.
    pub fn deploy(&self, bytes: &[u8]) -> Result<Deployed, Failure> {
        let dir = self.bundles.join(hex::encode(Sha256::digest(bytes)));
        let fresh = !dir.is_dir();
        if fresh {
            std::fs::create_dir_all(&self.bundles)
                .with_context(|| format!("cannot create `{}`", self.bundles.display()))
                .map_err(Failure::other)?;
            let unpacking = tempfile::Builder::new()
                .prefix(".unpacking-")
                .tempdir_in(&self.bundles)
                .context("cannot make a directory to unpack the bundle in")
                .map_err(Failure::other)?;
            bundle::unpack(bytes, unpacking.path()).map_err(Failure::invalid)?;
            // Two deploys of the same bytes at once: the second rename fails
            // and the first one's directory (the same files) is used.
            if let Err(e) = std::fs::rename(unpacking.path(), &dir)
                && !dir.is_dir()
            {
                return Err(Failure::other(
                    anyhow::Error::new(e).context("cannot move the unpacked bundle in place"),
                ));
            }
        }
        let manifest = bundle::manifest_of(&dir).map_err(Failure::invalid)?;
        let loaded = match load(&self.home, &manifest) {
            Ok(loaded) => loaded,
            Err(failure) => {
                // A bundle that does not load is not kept (the same bytes
                // would fail the same way).
                if fresh {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(failure);
            }
        };
        let digest = loaded.store_lock(&*self.store)?;
        let workflow = loaded.workflow().id().clone();
        let new = self
            .store
            .deploy(&workflow, &digest, SystemClock.now())
            .map_err(Failure::other)?;
        self.cache((digest.clone(), loaded.origin.clone()), &loaded);
        let deployment = self
            .store
            .deployments(Some(&workflow))
            .map_err(Failure::other)?
            .into_iter()
            .find(|d| d.digest == digest)
            .ok_or_else(|| Failure::other(anyhow!("the deployment was not recorded")))?;
        if new {
            tracing::info!(workflow = %workflow, digest = %digest, "deployed");
        }
        Ok(Deployed { deployment, new })
    }

    /// Hands `request` to the runtime and waits until it took effect (its
    /// first event is recorded) or was refused, then up to `wait` for the
    /// run to settle.
    ///
    /// # Errors
    /// The request's refusal.
    pub fn submit(&self, request: Request, wait: Duration) -> Result<Accepted, RuntimeError> {
        let (watch, events) = crossbeam_channel::unbounded();
        let answer = self.runtime.submit(request, Some(watch));
        crossbeam_channel::select! {
            recv(answer) -> reply => return settled(reply.ok()),
            recv(events) -> _ => {}
        }
        // Taking effect is all this waited for; later events are the
        // store's to tell.
        drop(events);
        crossbeam_channel::select! {
            recv(answer) -> reply => settled(reply.ok()),
            recv(self.closed) -> _ => Ok(Accepted::Going),
            default(wait) => Ok(Accepted::Going),
        }
    }

    /// Carries out `request` and waits for its answer (a cancel: quick).
    ///
    /// # Errors
    /// The request's refusal.
    pub fn call(&self, request: Request) -> Result<RunResult, RuntimeError> {
        self.runtime.call(request, &mut weft_runtime::NoObserver)
    }

    /// Start-up recovery, then the recovery loop until `stop` says so: every
    /// `running` run no live process holds is taken over at start, and
    /// later each one that becomes claimable (its driver died, or it was
    /// left to wait for a timer by `weft run --detach`) when it is due.
    ///
    /// The loop looks for claimable runs every `tick`, at the earliest wake
    /// time due within the tick, and whenever the store hints that a run
    /// became claimable ([`weft_core::EventStore::wait_for_hint`]: on
    /// PostgreSQL, a lease released by any host), whichever comes first. A
    /// lost hint costs at most a tick.
    pub fn recover(&self, tick: Duration, stop: &Receiver<()>) {
        let mut recovering = Recovering::default();
        match self.store.list_runs(Some(RunStatus::Running)) {
            Ok(running) => {
                if !running.is_empty() {
                    tracing::info!(runs = running.len(), "recovering running runs");
                }
                // Runs a live process holds answer `Leased` and are taken
                // later if their lease expires; the runtime takes those of
                // a process gone from this host at once.
                for summary in running {
                    self.take_over(&summary.meta, &mut recovering);
                }
            }
            Err(e) => tracing::error!("cannot list the running runs to recover: {e}"),
        }
        self.ready.store(true, Ordering::Release);
        tracing::info!("ready");
        let mut hints = Hints::start(&self.store, tick);
        let mut wait = tick;
        loop {
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(hints.hinted) -> hint => {
                    if hint.is_err() {
                        // The thread forwarding hints is gone: poll.
                        hints.hinted = crossbeam_channel::never();
                    }
                }
                default(wait) => {}
            }
            recovering.reap();
            let now = SystemClock.now();
            let tick_us = u64::try_from(tick.as_micros()).unwrap_or(u64::MAX);
            wait = tick;
            match self
                .store
                .claimable(Timestamp(now.0.saturating_add(tick_us)))
            {
                Ok(claimable) => {
                    for claim in claimable {
                        if recovering.driving.contains(&claim.run) {
                            continue;
                        }
                        if let Some(wake) = claim.wake.filter(|wake| *wake > now) {
                            // Due within the tick: look again then.
                            wait = wait.min(Duration::from_micros(wake.micros_since(now)));
                            continue;
                        }
                        match self.store.load_page(&claim.run, 0, 0) {
                            Ok((meta, _)) => self.take_over(&meta, &mut recovering),
                            Err(e) => tracing::warn!(run = %claim.run, "cannot read the run: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot look for runs to take over: {e}"),
            }
        }
    }

    fn take_over(&self, meta: &RunMeta, recovering: &mut Recovering) {
        let run = meta.run_id.clone();
        let workflow = match self.registered_run(meta) {
            Ok(workflow) => workflow,
            Err(failure) => {
                tracing::error!(run = %run, "cannot recover the run: {failure}");
                return;
            }
        };
        tracing::info!(run = %run, "taking over the run");
        let answer = self.runtime.submit(
            Request::Recover {
                workflow,
                run: run.clone(),
            },
            None,
        );
        recovering.driving.insert(run.clone());
        recovering.pending.push((run, answer));
    }
}

/// The store's wake-up hints, forwarded to the recovery loop by a thread
/// of their own (the store's wait blocks; the loop also waits for its stop
/// and its tick). The thread ends after its current wait once this is
/// dropped. A store without hints sleeps in that thread instead.
struct Hints {
    hinted: Receiver<()>,
    done: Arc<AtomicBool>,
}

impl Hints {
    /// Starts forwarding the hints of `store`, waiting at most `tick` at a
    /// time.
    fn start(store: &Arc<dyn Store>, tick: Duration) -> Self {
        let (hint, hinted) = crossbeam_channel::bounded(1);
        let done = Arc::new(AtomicBool::new(false));
        let forward = {
            let store = Arc::clone(store);
            let done = Arc::clone(&done);
            move || {
                while !done.load(Ordering::Acquire) {
                    // A hint already waiting stands for this one too.
                    if store.wait_for_hint(tick)
                        && let Err(TrySendError::Disconnected(())) = hint.try_send(())
                    {
                        return;
                    }
                }
            }
        };
        let hinted = match std::thread::Builder::new()
            .name("weft-hints".into())
            .spawn(forward)
        {
            Ok(_) => hinted,
            Err(e) => {
                tracing::warn!("cannot start the thread waiting for wake-up hints: {e}");
                crossbeam_channel::never()
            }
        };
        Self { hinted, done }
    }
}

impl Drop for Hints {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

/// Runs handed to the runtime by recovery, until they answer.
#[derive(Default)]
struct Recovering {
    pending: Vec<(RunId, Answer)>,
    driving: HashSet<RunId>,
}

impl Recovering {
    /// Forgets the runs that answered, saying how each went.
    fn reap(&mut self) {
        let driving = &mut self.driving;
        self.pending.retain(|(run, answer)| {
            let reply = match answer.try_recv() {
                Err(TryRecvError::Empty) => return true,
                Ok(reply) => reply,
                Err(TryRecvError::Disconnected) => Err(RuntimeError::ShutDown),
            };
            match reply {
                Ok(result) => {
                    tracing::info!(run = %run, status = result.status.as_str(), "recovered run settled");
                }
                // Another process got there first: it drives the run.
                Err(
                    RuntimeError::Leased { .. }
                    | RuntimeError::DrivenElsewhere { .. }
                    | RuntimeError::LeaseLost { .. },
                ) => {
                    tracing::debug!(run = %run, "the run is driven by another process");
                }
                Err(e) => tracing::warn!(run = %run, "recovery: {e}"),
            }
            driving.remove(run);
            false
        });
    }
}

/// A lookup of a deployed workflow that found nothing, or failed.
pub enum Lookup {
    /// Nothing deployed under that id (or version).
    NotFound(String),
    /// Loading or reading failed.
    Failed(Failure),
}

fn settled(reply: Option<Result<RunResult, RuntimeError>>) -> Result<Accepted, RuntimeError> {
    reply
        .unwrap_or(Err(RuntimeError::ShutDown))
        .map(|result| Accepted::Settled(Box::new(result)))
}

/// A run's current result, for an answer that did not wait for it to settle.
///
/// # Errors
/// As [`crate::status::stored_result`].
pub fn current(store: &dyn Store, run: &RunId) -> Result<RunResult, Failure> {
    crate::status::stored_result(store, run)
}
