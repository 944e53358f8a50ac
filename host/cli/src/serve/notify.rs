//! Telling live readers (`GET /v1/runs/{id}/events` as SSE) that a run has
//! new events: the runtime's store is wrapped so that every write that adds
//! events to a run announces the run on a broadcast channel.
//!
//! The same wrapper feeds the server's metrics ([`Meter`]): events
//! committed, commit latency, lease grants.
//!
//! The announcement is a hint, never the data: a reader reads the events
//! from the store, and also looks again every second, which covers runs
//! another process writes (a `weft run` beside the server) and announcements
//! it missed (a lagging receiver).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use super::metrics::Meter;
use super::traces::{Tracer, settles};
use weft_core::{
    Append, Claimable, Event, EventStore, Lease, Owner, RunId, RunMeta, StoreError, Takeover,
    Timestamp,
};

/// How many announcements a slow reader may fall behind before it only
/// learns that it lagged (and reads its run again).
const CAPACITY: usize = 4_096;

/// The channel runs with new events are announced on.
pub type Changes = broadcast::Sender<RunId>;

/// A new announcement channel.
pub fn changes() -> Changes {
    broadcast::channel(CAPACITY).0
}

/// An [`EventStore`] that announces each run it adds events to, and
/// meters what it commits.
pub struct Announcing {
    inner: Arc<dyn EventStore>,
    changes: Changes,
    meter: Arc<Meter>,
    /// Exports a run's spans when it settles (`--otlp-endpoint`).
    tracer: Option<Tracer>,
}

impl Announcing {
    /// `inner`, announcing on `changes`, metered by `meter`, traced by
    /// `tracer` if given.
    pub fn new(
        inner: Arc<dyn EventStore>,
        changes: Changes,
        meter: Arc<Meter>,
        tracer: Option<Tracer>,
    ) -> Self {
        Self {
            inner,
            changes,
            meter,
            tracer,
        }
    }

    /// `events` of `run` were committed.
    fn committed(&self, run: &RunId, events: &[Event]) {
        self.meter.committed(run, events);
        if let Some(tracer) = &self.tracer
            && settles(events)
        {
            tracer.settled(run);
        }
        self.announce(run);
    }

    fn announce(&self, run: &RunId) {
        // No receiver is not an error: nobody is watching.
        let _ = self.changes.send(run.clone());
    }
}

impl EventStore for Announcing {
    fn create_run(
        &self,
        meta: &RunMeta,
        events: &[Event],
        owner: &Owner,
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        let started = Instant::now();
        let lease = self.inner.create_run(meta, events, owner, wake)?;
        self.meter.commit(started.elapsed());
        self.committed(&meta.run_id, events);
        Ok(lease)
    }

    fn acquire(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
    ) -> Result<Lease, StoreError> {
        let lease = self.inner.acquire(run, owner, takeover)?;
        self.meter.lease(takeover);
        Ok(lease)
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
        let started = Instant::now();
        let lease = self
            .inner
            .acquire_and_append(run, owner, takeover, expected, events, wake)?;
        self.meter.commit(started.elapsed());
        self.meter.lease(takeover);
        self.committed(run, events);
        Ok(lease)
    }

    fn renew(&self, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError> {
        self.inner.renew(owner)
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release(lease)
    }

    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError> {
        let started = Instant::now();
        self.inner.append_batch(appends)?;
        self.meter.commit(started.elapsed());
        for append in appends {
            self.committed(append.run, append.events);
        }
        Ok(())
    }

    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError> {
        self.inner.load(run)
    }

    fn load_page(
        &self,
        run: &RunId,
        after: u64,
        limit: usize,
    ) -> Result<(RunMeta, Vec<Event>), StoreError> {
        self.inner.load_page(run, after, limit)
    }

    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError> {
        self.inner.events_after(run, after)
    }

    fn changed_since(&self, runs: &[(RunId, u64)]) -> Result<Vec<RunId>, StoreError> {
        self.inner.changed_since(runs)
    }

    fn claimable(&self, horizon: Timestamp) -> Result<Vec<Claimable>, StoreError> {
        self.inner.claimable(horizon)
    }
}
