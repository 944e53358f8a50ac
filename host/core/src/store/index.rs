//! [`RunIndex`]: listing runs with filters and cursor paging.

use serde::{Deserialize, Serialize};

use crate::id::{RunId, StepId, Timestamp};
use crate::state::RunStatus;

use super::{RunSummary, StoreError};

/// Which runs to list; every field that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<StepId>,
    /// Only runs created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only runs created before this time.
    pub created_before: Option<Timestamp>,
}

/// Where a page of runs ends: the next page starts after it. Runs are
/// listed newest first (creation time, then run id, both descending), so a
/// cursor stays valid while runs are added (keyset paging).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCursor {
    /// The creation time of the page's last run.
    pub created_at: Timestamp,
    /// The page's last run.
    pub run: RunId,
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<RunCursor>,
}

/// The run index: what is listed about runs without replaying them.
pub trait RunIndex: Send + Sync {
    /// Up to `limit` runs that pass `filter`, newest first, after `after`
    /// (from the newest when `None`).
    ///
    /// # Errors
    /// Backend errors.
    fn runs(
        &self,
        filter: &RunFilter,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<RunPage, StoreError>;

    /// The owner whose live lease holds `run` now (the process driving it),
    /// if any: [`RunSummary::held_by`] for one run.
    ///
    /// # Errors
    /// Backend errors.
    fn holder(&self, run: &RunId) -> Result<Option<String>, StoreError>;

    /// Records the W3C `traceparent` a run's trace continues (a server's
    /// `POST /v1/runs` got one), so that whichever process settles the run
    /// exports its spans into that trace. The first record for a run wins;
    /// a later one changes nothing.
    ///
    /// # Errors
    /// Backend errors.
    fn put_trace(&self, run: &RunId, traceparent: &str) -> Result<(), StoreError>;

    /// The `traceparent` recorded for `run`, if any.
    ///
    /// # Errors
    /// Backend errors.
    fn trace(&self, run: &RunId) -> Result<Option<String>, StoreError>;

    /// How many runs have each status (statuses without runs left out),
    /// in [`RunStatus`] order: what a server's metrics report. The default
    /// pages through [`RunIndex::runs`]; a store with an index counts.
    ///
    /// # Errors
    /// Backend errors.
    fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let mut counts = std::collections::BTreeMap::<RunStatus, u64>::new();
        for run in self.list_runs(None)? {
            *counts.entry(run.status).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    /// Every run, newest first, optionally only those with `status` (page
    /// after page of [`RunIndex::runs`]).
    ///
    /// # Errors
    /// Backend errors.
    fn list_runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        let filter = RunFilter {
            status,
            ..RunFilter::default()
        };
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.runs(&filter, after.as_ref(), 1_000)?;
            all.extend(page.runs);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }
}

impl RunCursor {
    /// Whether `run` (a run summary) comes after this cursor in listing
    /// order (older, or as old with a smaller run id).
    pub fn precedes(&self, run: &RunSummary) -> bool {
        (run.created_at, &run.meta.run_id) < (self.created_at, &self.run)
    }
}
