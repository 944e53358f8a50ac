//! An [`EventStore`] in memory: for tests, benchmarks and embedding without
//! durability. Same semantics as the SQLite store (optimistic concurrency,
//! all-or-nothing batches), no persistence.

use std::collections::BTreeMap;
use std::sync::Mutex;

use weft_core::{
    Append, Event, EventStore, RunId, RunMeta, RunStatus, RunSummary, StoreError, Timer, Timestamp,
};

#[derive(Default)]
struct Inner {
    runs: BTreeMap<RunId, (RunSummary, Vec<Event>)>,
    timers: BTreeMap<(RunId, String), Timestamp>,
}

/// A non-durable event store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation below is complete or not started), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn absorb(summary: &mut RunSummary, events: &[Event]) {
    for event in events {
        if let Some(status) = RunStatus::after(event) {
            summary.status = status;
        }
        summary.updated_at = event.at();
    }
    summary.events += events.len() as u64;
}

impl EventStore for MemoryStore {
    fn create_run(&self, meta: &RunMeta, events: &[Event]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.runs.contains_key(&meta.run_id) {
            return Err(StoreError::Exists {
                run: meta.run_id.to_string(),
            });
        }
        let at = events.first().map(Event::at).unwrap_or_default();
        let mut summary = RunSummary {
            meta: meta.clone(),
            status: RunStatus::Pending,
            events: 0,
            created_at: at,
            updated_at: at,
        };
        absorb(&mut summary, events);
        inner
            .runs
            .insert(meta.run_id.clone(), (summary, events.to_vec()));
        Ok(())
    }

    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for append in appends {
            let Some((summary, _)) = inner.runs.get(append.run) else {
                return Err(StoreError::NotFound {
                    run: append.run.to_string(),
                });
            };
            if summary.events != append.expected {
                return Err(StoreError::Conflict {
                    run: append.run.to_string(),
                    expected: append.expected,
                    actual: summary.events,
                });
            }
        }
        for append in appends {
            if let Some((summary, events)) = inner.runs.get_mut(append.run) {
                absorb(summary, append.events);
                events.extend_from_slice(append.events);
            }
        }
        Ok(())
    }

    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let inner = self.lock();
        let (summary, events) = inner.runs.get(run).ok_or_else(|| StoreError::NotFound {
            run: run.to_string(),
        })?;
        Ok((summary.meta.clone(), events.clone()))
    }

    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock();
        let (_, events) = inner.runs.get(run).ok_or_else(|| StoreError::NotFound {
            run: run.to_string(),
        })?;
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(events.iter().skip(skip).cloned().collect())
    }

    fn list_runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        let inner = self.lock();
        let mut runs: Vec<RunSummary> = inner
            .runs
            .values()
            .map(|(s, _)| s.clone())
            .filter(|s| status.is_none_or(|wanted| s.status == wanted))
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(runs)
    }

    fn set_timer(&self, run: &RunId, key: &str, due: Timestamp) -> Result<(), StoreError> {
        self.lock()
            .timers
            .insert((run.clone(), key.to_owned()), due);
        Ok(())
    }

    fn clear_timer(&self, run: &RunId, key: &str) -> Result<(), StoreError> {
        self.lock().timers.remove(&(run.clone(), key.to_owned()));
        Ok(())
    }

    fn due_timers(&self, now: Timestamp) -> Result<Vec<Timer>, StoreError> {
        let mut due: Vec<Timer> = self
            .lock()
            .timers
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|((run, key), due)| Timer {
                run: run.clone(),
                key: key.clone(),
                due: *due,
            })
            .collect();
        due.sort_by_key(|t| t.due);
        Ok(due)
    }
}
