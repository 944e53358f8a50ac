//! A store for tests of what a runtime does when its store misbehaves: a
//! [`MemoryStore`] whose writes first ask a hook, which may fail them
//! (or panic, count, pause). Reads go straight through.

use std::sync::Arc;

use weft_core::{
    Append, Claimable, Event, EventStore, Lease, Owner, RunId, RunMeta, StoreError, Takeover,
    Timestamp,
};

use crate::MemoryStore;

/// A write the hook is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call<'a> {
    CreateRun,
    Acquire(Takeover<'a>),
    AcquireAndAppend,
    AppendBatch,
    /// After a renewal has read the leases, before it returns them.
    Renewed,
}

type Hook = dyn Fn(Call<'_>) -> Result<(), StoreError> + Send + Sync;

/// A [`MemoryStore`] whose writes go through `hook` first.
pub(crate) struct Hooked {
    inner: Arc<MemoryStore>,
    hook: Box<Hook>,
}

impl Hooked {
    pub(crate) fn new(
        inner: Arc<MemoryStore>,
        hook: impl Fn(Call<'_>) -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            hook: Box::new(hook),
        }
    }
}

impl EventStore for Hooked {
    fn create_run(
        &self,
        meta: &RunMeta,
        events: &[Event],
        owner: &Owner,
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        (self.hook)(Call::CreateRun)?;
        self.inner.create_run(meta, events, owner, wake)
    }
    fn acquire(&self, run: &RunId, owner: &Owner, t: Takeover<'_>) -> Result<Lease, StoreError> {
        (self.hook)(Call::Acquire(t))?;
        self.inner.acquire(run, owner, t)
    }
    fn acquire_and_append(
        &self,
        run: &RunId,
        owner: &Owner,
        t: Takeover<'_>,
        expected: u64,
        events: &[Event],
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        (self.hook)(Call::AcquireAndAppend)?;
        self.inner
            .acquire_and_append(run, owner, t, expected, events, wake)
    }
    fn renew(&self, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError> {
        let held = self.inner.renew(owner)?;
        (self.hook)(Call::Renewed)?;
        Ok(held)
    }
    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release(lease)
    }
    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError> {
        (self.hook)(Call::AppendBatch)?;
        self.inner.append_batch(appends)
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
    fn claimable(&self, horizon: Timestamp) -> Result<Vec<Claimable>, StoreError> {
        self.inner.claimable(horizon)
    }
}
