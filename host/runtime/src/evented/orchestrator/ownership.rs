//! Leases, and runs changed by other processes: the requests (resume,
//! cancel) that lease and load a run, giving a lease up, reloading a run
//! after a conflict or a takeover, and the polling and parking of runs that
//! only wait for a timer.

use std::collections::HashSet;
use std::sync::Arc;

use crossbeam_channel::Sender;
use serde_json::Value;
use weft_core::{
    Event, Interrupt, ResumeError, ResumeTarget, RunId, RunState, RunStatus, StepPath, StoreError,
    Takeover, Timestamp,
};

use super::reorder::Held;
use super::{Active, Orchestrator, PARK_AFTER_MICROS, Parked, Reply, apply};
use crate::error::RuntimeError;
use crate::runtime::Registered;
use crate::stored;

/// A request the state machine turns into events (one, or one per
/// suspended address for a resume of all of them). Kept until they
/// commits: when another process appended first, it is decided again on the
/// run as stored now.
#[derive(Clone)]
pub(in crate::evented) enum Request {
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
    fn decide(
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
}

impl Orchestrator {
    /// A request that turns into one event decided by the state machine
    /// (resume, cancel) on a run driven here or loaded from the store. The
    /// caller is answered once the event and what follows are committed;
    /// `watch`, if given, watches the run from the request's event on
    /// (unless the run already has a watcher here).
    pub(super) fn request(
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
        if let (false, Request::Cancel { reason }) = (driving, &request) {
            // Taken from whichever process drives it, in one transaction.
            let canceled = stored::cancel(
                &*self.store,
                &workflow,
                &run,
                self.keeper.owner(),
                reason.as_deref(),
                &*self.clock,
            );
            let answer = canceled.map(|(state, events, before)| {
                if let Some(watch) = watch {
                    for event in &events[before..] {
                        let _ = watch.send(event.clone());
                    }
                }
                state.result()
            });
            return drop(reply.send(answer));
        }
        if !driving {
            match self.lease_and_load(Arc::clone(&workflow), &run, Takeover::IfFree, false) {
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
                    // a moment (see `Runtime::call` for the evented runtime).
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

    /// At shutdown: lets go of every run that only waits for a timer
    /// (parked, or waiting in memory), releasing its lease; its callers'
    /// replies are dropped (they learn the runtime shut down).
    pub(super) fn let_go_of_waiting(&mut self) {
        let waiting: Vec<RunId> = self
            .parked
            .keys()
            .chain(
                self.runs
                    .iter()
                    .filter(|(_, a)| a.only_waits())
                    .map(|(r, _)| r),
            )
            .cloned()
            .collect();
        self.let_go(waiting);
    }

    /// Draining, with no attempt in flight: lets go of every run held here,
    /// as [`Self::let_go_of_waiting`] does of the waiting ones. What a
    /// run's reports recorded is committed; what it would do next, the
    /// next process decides.
    pub(super) fn let_go_of_all(&mut self) {
        let all: Vec<RunId> = self
            .parked
            .keys()
            .chain(self.runs.keys())
            .cloned()
            .collect();
        self.let_go(all);
    }

    fn let_go(&mut self, waiting: Vec<RunId>) {
        // One commit for all of them (a server may hold thousands).
        let leases: Vec<weft_core::Lease> = waiting
            .iter()
            .filter_map(|run| self.held_lease(run))
            .collect();
        self.keeper.release_all(&leases);
        for run in waiting {
            self.parked.remove(&run);
            self.runs.remove(&run);
        }
    }

    /// Gives up this process's lease on a run it holds in memory (parked
    /// or active), e.g. one it leaves to `weft recover`.
    pub(super) fn release(&self, run: &RunId) {
        if let Some(lease) = self.held_lease(run) {
            self.keeper.release(&lease);
        }
    }

    /// This process's lease on a run it holds in memory (parked or active).
    fn held_lease(&self, run: &RunId) -> Option<weft_core::Lease> {
        let epoch = self
            .runs
            .get(run)
            .map(|a| a.epoch)
            .or_else(|| self.parked.get(run).map(|p| p.epoch))?;
        Some(weft_core::Lease {
            run: run.clone(),
            owner: self.keeper.owner().id.clone(),
            epoch,
        })
    }

    /// Takes the run's lease (see [`stored::acquire`]), then loads it as
    /// stored: after the grant, nothing another owner decided can still
    /// commit, so what is loaded is the whole story.
    pub(super) fn lease_and_load(
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
            interrupt: Interrupt::new(),
        })
    }

    /// A commit failed: the run's uncommitted events are dropped with its
    /// in-memory state; the store still holds its committed events (or,
    /// after a commit whose outcome is unknown, perhaps these too). The
    /// run's lease is released (best effort), so that the run is claimable
    /// and a recovering host carries it on from the log as stored: this
    /// process's keeper would otherwise renew it for as long as it lives.
    pub(super) fn abandon(&mut self, run: &RunId, error: StoreError) {
        if matches!(error, StoreError::Conflict { .. }) {
            return self.reload(run);
        }
        if matches!(error, StoreError::Fenced { .. }) {
            return self.lost(run);
        }
        self.release(run);
        let Some(active) = self.runs.remove(run) else {
            return;
        };
        active.interrupt.fire();
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
        old.interrupt.fire();
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
            Err(e) => {
                old.interrupt.fire();
                return fail(run, old.waiters, e);
            }
        };
        // Attempts in flight keep their signal: it fires if the reloaded run
        // is not driven here any more (below) or is canceled later.
        fresh.interrupt = old.interrupt;
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
                Err(e) => {
                    fresh.interrupt.fire();
                    fail(run, fresh.waiters, e.into());
                }
            }
            return;
        }
        // Not driven here any more: what its attempts would report is void.
        fresh.interrupt.fire();
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

    /// Runs that only wait for a timer may have been changed by another
    /// process meanwhile (`weft cancel`): such a run is reloaded, so that a
    /// cancel interrupts a sleep within [`POLL_WAITING`](super::POLL_WAITING)
    /// instead of at its wake-up time.
    pub(super) fn poll_waiting(&mut self) {
        let waiting: Vec<(RunId, u64)> = self
            .runs
            .iter()
            // Waiting for a timer, or for attempts in flight with nothing to
            // commit (a step blocked for long): a cancel from another
            // process must reach both.
            .filter(|(_, a)| a.only_waits() || (a.pending.is_empty() && !a.in_flight.is_empty()))
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
                        // Another process wrote to it, which only a process
                        // that took the lease can: a cancel, or a takeover.
                        self.lost(&run);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot check waiting runs for changes: {e}"),
        }
    }

    /// Parks the run if nothing happens to it before a timer at least
    /// [`PARK_AFTER_MICROS`] away: its state leaves memory. Returns whether
    /// it did.
    pub(super) fn park_if_waiting(&mut self, run: &RunId) -> bool {
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
    pub(super) fn unpark(&mut self, run: &RunId) {
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
