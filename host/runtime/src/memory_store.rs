//! An [`EventStore`] in memory: for tests, benchmarks and embedding without
//! durability. Same contract as the SQLite store (optimistic concurrency,
//! all-or-nothing batches, leases fenced by epoch, wake times; the store
//! conformance suite runs against both), no persistence.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::SystemClock;
use weft_core::{
    Append, Claimable, Clock, Deployment, Event, EventStore, Lease, Owner, Pin, RunCursor,
    RunFilter, RunId, RunIndex, RunMeta, RunPage, RunStatus, RunSummary, StepId, StoreError,
    Takeover, Timestamp, WorkflowRegistry,
};

/// A run as kept in memory.
struct Stored {
    summary: RunSummary,
    events: Vec<Event>,
    /// The lease holder and its expiry (by the store's clock), if any.
    holder: Option<(String, Timestamp)>,
    epoch: u64,
    wake: Option<Timestamp>,
}

/// The workflow registry: locks by digest, each run's pins, and the
/// deployments (in the order they were made).
type Registry = (
    BTreeMap<String, String>,
    BTreeMap<RunId, Vec<Pin>>,
    Vec<Deployment>,
);

/// A non-durable store: event log, workflow registry and run index.
pub struct MemoryStore {
    runs: Mutex<BTreeMap<RunId, Stored>>,
    /// Workflow locks by digest, and each run's pins.
    workflows: Mutex<Registry>,
    /// The `traceparent` of each run started under one.
    traces: Mutex<BTreeMap<RunId, String>>,
    /// The store's clock: what lease expiry is judged by.
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store judging lease expiry by the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store judging lease expiry by `clock` (a manual clock lets
    /// a test expire a lease without waiting).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            runs: Mutex::new(BTreeMap::new()),
            workflows: Mutex::default(),
            traces: Mutex::default(),
            clock,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.workflows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RunId, Stored>> {
        // A panic while holding the lock leaves consistent data (every
        // mutation below is complete or not started), so poisoning is ignored.
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Grants `owner` the lease on the run if `takeover` allows (see
/// [`EventStore::acquire`]).
fn grant(
    stored: &mut Stored,
    run: &RunId,
    clock: &dyn Clock,
    owner: &Owner,
    takeover: Takeover<'_>,
) -> Result<Lease, StoreError> {
    may_take(stored, run, clock, owner, takeover)?;
    stored.epoch += 1;
    stored.holder = Some((owner.id.clone(), expiry(clock, owner)));
    Ok(Lease {
        run: run.clone(),
        owner: owner.id.clone(),
        epoch: stored.epoch,
    })
}

/// Whether `takeover` lets `owner` take the run's lease: refused only while
/// another owner holds a live one that `takeover` does not allow taking.
fn may_take(
    stored: &Stored,
    run: &RunId,
    clock: &dyn Clock,
    owner: &Owner,
    takeover: Takeover<'_>,
) -> Result<(), StoreError> {
    let now = clock.now();
    if let Some((holder, expires)) = &stored.holder
        && *holder != owner.id
        && *expires > now
    {
        let allowed = match takeover {
            Takeover::IfFree => false,
            Takeover::From(gone) => gone == holder,
            Takeover::Force => true,
        };
        if !allowed {
            return Err(StoreError::Leased {
                run: run.to_string(),
                owner: holder.clone(),
                remaining_ms: expires.micros_since(now) / 1000,
            });
        }
    }
    Ok(())
}

fn expiry(clock: &dyn Clock, owner: &Owner) -> Timestamp {
    let ttl = u64::try_from(owner.ttl.as_micros()).unwrap_or(u64::MAX);
    Timestamp(clock.now().0.saturating_add(ttl))
}

fn not_found(run: &RunId) -> StoreError {
    StoreError::NotFound {
        run: run.to_string(),
    }
}

fn absorb(stored: &mut Stored, events: &[Event]) {
    for event in events {
        if let Some(status) = RunStatus::after(event) {
            stored.summary.status = status;
        }
        stored.summary.updated_at = event.at();
    }
    stored.summary.events += events.len() as u64;
    stored.events.extend_from_slice(events);
    if stored.summary.status != RunStatus::Running {
        stored.holder = None;
    }
}

impl EventStore for MemoryStore {
    fn create_run(
        &self,
        meta: &RunMeta,
        events: &[Event],
        owner: &Owner,
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        let mut runs = self.lock();
        if runs.contains_key(&meta.run_id) {
            return Err(StoreError::Exists {
                run: meta.run_id.to_string(),
            });
        }
        let at = events.first().map(Event::at).unwrap_or_default();
        if let Some(digest) = &meta.workflow_digest {
            // As in SQLite: the lock must be stored first; the pin is the
            // run's first (locks before runs, so lock order is runs, then
            // the registry, everywhere).
            let mut workflows = self.registry();
            if !workflows.0.contains_key(digest) {
                return Err(StoreError::Backend(format!(
                    "run {}: no workflow lock `{digest}` in the store (store it first)",
                    meta.run_id
                )));
            }
            workflows.1.insert(
                meta.run_id.clone(),
                vec![Pin {
                    seq: 0,
                    digest: digest.clone(),
                    at,
                }],
            );
        }
        let mut stored = Stored {
            summary: RunSummary {
                meta: meta.clone(),
                status: RunStatus::Pending,
                events: 0,
                created_at: at,
                updated_at: at,
                held_by: None,
            },
            events: Vec::new(),
            holder: Some((owner.id.clone(), expiry(&*self.clock, owner))),
            epoch: 1,
            wake,
        };
        absorb(&mut stored, events);
        runs.insert(meta.run_id.clone(), stored);
        Ok(Lease {
            run: meta.run_id.clone(),
            owner: owner.id.clone(),
            epoch: 1,
        })
    }

    fn acquire(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
    ) -> Result<Lease, StoreError> {
        let mut runs = self.lock();
        let stored = runs.get_mut(run).ok_or_else(|| not_found(run))?;
        grant(stored, run, &*self.clock, owner, takeover)
    }

    fn acquire_and_append(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
        expected: u64,
        events: &[Event],
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        let mut runs = self.lock();
        let stored = runs.get_mut(run).ok_or_else(|| not_found(run))?;
        // As SQLite decides: the lease first, then the log's end.
        may_take(stored, run, &*self.clock, owner, takeover)?;
        if stored.summary.events != expected {
            return Err(StoreError::Conflict {
                run: run.to_string(),
                expected,
                actual: stored.summary.events,
            });
        }
        let lease = grant(stored, run, &*self.clock, owner, takeover)?;
        if !events.is_empty() {
            absorb(stored, events);
            stored.wake = wake;
        }
        Ok(lease)
    }

    fn renew(&self, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError> {
        let expires = expiry(&*self.clock, owner);
        let mut runs = self.lock();
        let mut held = Vec::new();
        for (run, stored) in runs.iter_mut() {
            if let Some((holder, until)) = &mut stored.holder
                && *holder == owner.id
            {
                *until = expires;
                held.push((run.clone(), stored.epoch));
            }
        }
        Ok(held)
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut runs = self.lock();
        if let Some(stored) = runs.get_mut(&lease.run)
            && stored.epoch == lease.epoch
            && stored
                .holder
                .as_ref()
                .is_some_and(|(holder, _)| *holder == lease.owner)
        {
            stored.holder = None;
        }
        Ok(())
    }

    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError> {
        let mut runs = self.lock();
        // Check every append first (counting earlier appends of the same
        // run in this batch), so that the batch lands whole or not at all.
        let mut seen: BTreeMap<&RunId, u64> = BTreeMap::new();
        for append in appends {
            let stored = runs.get(append.run).ok_or_else(|| not_found(append.run))?;
            if stored.epoch != append.epoch {
                return Err(StoreError::Fenced {
                    run: append.run.to_string(),
                    epoch: append.epoch,
                    current: stored.epoch,
                });
            }
            let actual = *seen.get(append.run).unwrap_or(&stored.summary.events);
            if actual != append.expected {
                return Err(StoreError::Conflict {
                    run: append.run.to_string(),
                    expected: append.expected,
                    actual,
                });
            }
            seen.insert(append.run, actual + append.events.len() as u64);
        }
        for append in appends {
            if let Some(stored) = runs.get_mut(append.run)
                && !append.events.is_empty()
            {
                absorb(stored, append.events);
                stored.wake = append.wake;
            }
        }
        Ok(())
    }

    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let runs = self.lock();
        let stored = runs.get(run).ok_or_else(|| not_found(run))?;
        Ok((stored.summary.meta.clone(), stored.events.clone()))
    }

    fn load_page(
        &self,
        run: &RunId,
        after: u64,
        limit: usize,
    ) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let runs = self.lock();
        let stored = runs.get(run).ok_or_else(|| not_found(run))?;
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        let page = stored.events.iter().skip(skip).take(limit).cloned();
        Ok((stored.summary.meta.clone(), page.collect()))
    }

    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError> {
        let runs = self.lock();
        let stored = runs.get(run).ok_or_else(|| not_found(run))?;
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(stored.events.iter().skip(skip).cloned().collect())
    }

    fn claimable(&self, horizon: Timestamp) -> Result<Vec<Claimable>, StoreError> {
        let now = self.clock.now();
        let runs = self.lock();
        let mut claimable: Vec<Claimable> = runs
            .iter()
            .filter(|(_, s)| s.summary.status == RunStatus::Running)
            .filter(|(_, s)| s.wake.is_none_or(|w| w <= horizon))
            .filter(|(_, s)| s.holder.as_ref().is_none_or(|(_, until)| *until <= now))
            .map(|(run, s)| Claimable {
                run: run.clone(),
                wake: s.wake,
            })
            .collect();
        // As SQLite orders: no wake time (now) first, then the earliest.
        claimable.sort_by(|a, b| (a.wake, &a.run).cmp(&(b.wake, &b.run)));
        Ok(claimable)
    }
}

impl RunIndex for MemoryStore {
    fn holder(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .get(run)
            .and_then(|stored| stored.holder.as_ref())
            .filter(|(_, until)| *until > now)
            .map(|(owner, _)| owner.clone()))
    }

    fn put_trace(&self, run: &RunId, traceparent: &str) -> Result<(), StoreError> {
        self.traces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(run.clone())
            .or_insert_with(|| traceparent.to_owned());
        Ok(())
    }

    fn trace(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        Ok(self
            .traces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(run)
            .cloned())
    }

    fn runs(
        &self,
        filter: &RunFilter,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<RunPage, StoreError> {
        let runs = self.lock();
        let mut listed: Vec<RunSummary> = runs
            .values()
            .map(|s| &s.summary)
            .filter(|s| filter.status.is_none_or(|wanted| s.status == wanted))
            .filter(|s| {
                filter
                    .workflow
                    .as_ref()
                    .is_none_or(|w| s.meta.workflow_id == *w)
            })
            .filter(|s| filter.created_from.is_none_or(|t| s.created_at >= t))
            .filter(|s| filter.created_before.is_none_or(|t| s.created_at < t))
            .filter(|s| after.is_none_or(|cursor| cursor.precedes(s)))
            .cloned()
            .collect();
        let now = self.clock.now();
        for summary in &mut listed {
            summary.held_by = runs[&summary.meta.run_id]
                .holder
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(owner, _)| owner.clone());
        }
        // As SQLite orders: newest first, then by run id, descending.
        listed.sort_by(|a, b| (b.created_at, &b.meta.run_id).cmp(&(a.created_at, &a.meta.run_id)));
        let limit = limit.max(1);
        let more = listed.len() > limit;
        listed.truncate(limit);
        let next = more.then(|| listed.last()).flatten().map(|last| RunCursor {
            created_at: last.created_at,
            run: last.meta.run_id.clone(),
        });
        Ok(RunPage { runs: listed, next })
    }
}

impl WorkflowRegistry for MemoryStore {
    fn put_workflow(&self, digest: &str, lock: &str) -> Result<(), StoreError> {
        let mut workflows = self.registry();
        workflows
            .0
            .entry(digest.to_owned())
            .or_insert_with(|| lock.to_owned());
        Ok(())
    }

    fn workflow(&self, digest: &str) -> Result<String, StoreError> {
        self.registry()
            .0
            .get(digest)
            .cloned()
            .ok_or_else(|| StoreError::Backend(format!("no workflow lock `{digest}` in the store")))
    }

    fn repin(
        &self,
        run: &RunId,
        expected: u64,
        digest: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut runs = self.lock();
        let stored = runs.get_mut(run).ok_or_else(|| not_found(run))?;
        if stored.summary.events != expected {
            return Err(StoreError::Conflict {
                run: run.to_string(),
                expected,
                actual: stored.summary.events,
            });
        }
        let now = self.clock.now();
        if let Some((holder, until)) = &stored.holder
            && *until > now
        {
            return Err(StoreError::Leased {
                run: run.to_string(),
                owner: holder.clone(),
                remaining_ms: until.micros_since(now) / 1000,
            });
        }
        let mut workflows = self.registry();
        if !workflows.0.contains_key(digest) {
            return Err(StoreError::Backend(format!(
                "run {run}: no workflow lock `{digest}` in the store (store it first)"
            )));
        }
        stored.summary.meta.workflow_digest = Some(digest.to_owned());
        let pins = workflows.1.entry(run.clone()).or_default();
        // A second re-pin before any new event supersedes the first.
        pins.retain(|p| p.seq != expected);
        pins.push(Pin {
            seq: expected,
            digest: digest.to_owned(),
            at,
        });
        Ok(())
    }

    fn pins(&self, run: &RunId) -> Result<Vec<Pin>, StoreError> {
        Ok(self.registry().1.get(run).cloned().unwrap_or_default())
    }

    fn deploy(&self, workflow: &StepId, digest: &str, at: Timestamp) -> Result<bool, StoreError> {
        let mut registry = self.registry();
        if !registry.0.contains_key(digest) {
            return Err(StoreError::Backend(format!(
                "workflow {workflow}: no workflow lock `{digest}` in the store (store it first)"
            )));
        }
        if registry
            .2
            .iter()
            .any(|d| d.workflow == *workflow && d.digest == digest)
        {
            return Ok(false);
        }
        registry.2.push(Deployment {
            workflow: workflow.clone(),
            digest: digest.to_owned(),
            at,
        });
        Ok(true)
    }

    fn deployments(&self, workflow: Option<&StepId>) -> Result<Vec<Deployment>, StoreError> {
        let mut listed: Vec<Deployment> = self
            .registry()
            .2
            .iter()
            .filter(|d| workflow.is_none_or(|w| d.workflow == *w))
            .cloned()
            .collect();
        // As SQLite orders: newest first, then by digest, descending.
        listed.sort_by(|a, b| (b.at, &b.digest).cmp(&(a.at, &a.digest)));
        Ok(listed)
    }
}
