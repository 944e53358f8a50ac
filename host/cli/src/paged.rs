//! Reading a stored run a page of events at a time, so that `weft status`,
//! `weft events` and the summary a command prints after a run take bounded
//! memory whatever the run's size: one page, plus what is folded from it
//! (a [`RunState`], which the run's budgets bound).

use std::fmt;
use std::sync::Arc;

use anyhow::anyhow;
use weft_core::{Event, EventStore, RunId, RunMeta, RunState, StoreError, Workflow};

use crate::exit::Failure;

/// Events read per page: at most a few MiB (a custom event is at most
/// 64 KiB by default, an output 1 MiB).
pub const PAGE: usize = 128;

/// A stored run's events, page after page, from a sequence number on.
pub struct Pages<'a> {
    store: &'a dyn EventStore,
    run: &'a RunId,
    /// The sequence number of the last event read.
    seen: u64,
    /// A short page was read: the log ended there.
    ended: bool,
}

impl<'a> Pages<'a> {
    /// The events of `run` after sequence number `after`.
    pub fn new(store: &'a dyn EventStore, run: &'a RunId, after: u64) -> Self {
        Self {
            store,
            run,
            seen: after,
            ended: false,
        }
    }

    /// The next page (the run's metadata and up to [`PAGE`] events), or
    /// `None` once the log has ended. The first page of a run exists even
    /// when it has no events after `after`.
    ///
    /// # Errors
    /// A missing run is invalid input (exit 2); other store failures.
    pub fn next_page(&mut self) -> Result<Option<(RunMeta, Vec<Event>)>, Failure> {
        if self.ended {
            return Ok(None);
        }
        let (meta, events) = self
            .store
            .load_page(self.run, self.seen, PAGE)
            .map_err(|e| missing_or(self.run, e))?;
        self.ended = events.len() < PAGE;
        self.seen += events.len() as u64;
        Ok(Some((meta, events)))
    }
}

/// The failure a store error about `run` is: a missing run is invalid input.
pub fn missing_or(run: &RunId, error: StoreError) -> Failure {
    match error {
        StoreError::NotFound { .. } => Failure::missing(run),
        other => Failure::other(other),
    }
}

/// A stored run replayed page by page on the workflow `workflow_of` gives
/// for its metadata: its metadata and state. Only one page of events is
/// held at a time.
///
/// # Errors
/// A missing run, store failures, `workflow_of`'s failures, and events that
/// do not replay.
pub fn replay(
    store: &dyn EventStore,
    run: &RunId,
    workflow_of: impl FnOnce(&RunMeta) -> Result<Arc<Workflow>, Failure>,
) -> Result<(RunMeta, RunState), Failure> {
    let mut pages = Pages::new(store, run, 0);
    let Some((meta, first)) = pages.next_page()? else {
        return Err(Failure::missing(run));
    };
    let mut state = RunState::new(workflow_of(&meta)?);
    let mut page = first;
    loop {
        for event in &page {
            state.apply(event).map_err(|e| {
                Failure::other(anyhow!("run {run}: the stored events do not replay: {e}"))
            })?;
        }
        match pages.next_page()? {
            Some((_, next)) => page = next,
            None => return Ok((meta, state)),
        }
    }
}

/// Reading a run's events failed while printing them: reported as that,
/// not as a failure to write to stdout (see [`crate::output::print`]).
#[derive(Debug)]
pub struct ReadFailed(pub String);

impl fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadFailed {}

/// Visits every stored event of `run` in order, a page at a time, for a
/// printer (whose errors are I/O errors; a store failure becomes a
/// [`ReadFailed`]).
///
/// # Errors
/// `visit`'s errors, and store failures as [`ReadFailed`].
pub fn each_stored(
    store: &dyn EventStore,
    run: &RunId,
    visit: &mut dyn FnMut(&Event) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut pages = Pages::new(store, run, 0);
    loop {
        match pages.next_page() {
            Ok(Some((_, events))) => events.iter().try_for_each(&mut *visit)?,
            Ok(None) => return Ok(()),
            Err(failure) => {
                return Err(std::io::Error::other(ReadFailed(format!(
                    "cannot read the events of run {run}: {failure}"
                ))));
            }
        }
    }
}
