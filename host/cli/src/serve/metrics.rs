//! `GET /metrics`: Prometheus (OpenMetrics) text.
//!
//! What the server's own store traffic shows — events by type, commit
//! latency, step attempt latency and attempts in flight, lease grants by
//! kind — is counted as it passes (the [`Meter`] the announcing store calls);
//! runs by status and the runs waiting to be claimed are read from the store
//! at each scrape (one indexed query each).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weft_core::{Event, RunId, StepPath, Takeover, Timestamp};

type Labels = Vec<(&'static str, String)>;

/// At most this many attempts are timed at once; past it the oldest timings
/// are dropped (attempts of runs another process took over never end here).
const MAX_TIMED: usize = 100_000;

/// The server's counters, fed by its store traffic.
pub struct Meter {
    events: Family<Labels, Counter>,
    commits: Histogram,
    steps: Family<Labels, Histogram>,
    in_flight: Gauge,
    leases: Family<Labels, Counter>,
    started: Mutex<HashMap<(RunId, StepPath), Timestamp>>,
    registry: Registry,
    runs: Family<Labels, Gauge>,
    claimable: Gauge,
}

fn step_histogram() -> Histogram {
    // 100 µs to ~100 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
}

impl Meter {
    /// Counters at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "events",
            "Events this server committed, by type",
            events.clone(),
        );
        // 20 µs to ~20 s.
        let commits = Histogram::new(exponential_buckets(0.000_02, 2.0, 20));
        registry.register(
            "commit_seconds",
            "Time of one commit of events to the store (a group of runs' appends)",
            commits.clone(),
        );
        let steps = Family::<Labels, Histogram>::new_with_constructor(step_histogram as fn() -> _);
        registry.register(
            "step_seconds",
            "Step attempt latency, from step-started to its end, by outcome",
            steps.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "attempts_in_flight",
            "Step attempts started and not yet ended on this server",
            in_flight.clone(),
        );
        let leases = Family::<Labels, Counter>::default();
        registry.register(
            "lease_grants",
            "Leases on existing runs granted to this server: free (none, released or expired), from a process gone from this host, or forced (a cancel)",
            leases.clone(),
        );
        let runs = Family::<Labels, Gauge>::default();
        registry.register("runs", "Runs in the store, by status", runs.clone());
        let claimable = Gauge::default();
        registry.register(
            "runs_claimable",
            "Running runs no live process holds that are due now (the queue of work to take over)",
            claimable.clone(),
        );
        Self {
            events,
            commits,
            steps,
            in_flight,
            leases,
            started: Mutex::new(HashMap::new()),
            registry,
            runs,
            claimable,
        }
    }

    /// Events of `run` were committed.
    pub fn committed(&self, run: &RunId, events: &[Event]) {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in events {
            self.events
                .get_or_create(&vec![("type", event.name().to_owned())])
                .inc();
            let ended = match event {
                Event::StepStarted { path, at, .. } => {
                    if started.len() >= MAX_TIMED {
                        started.clear();
                    }
                    started.insert((run.clone(), path.clone()), *at);
                    None
                }
                Event::StepCompleted { path, at, .. } => Some((path, at, "success")),
                Event::StepFailed { path, at, .. } => Some((path, at, "failed")),
                Event::StepSuspended { path, at, .. } => Some((path, at, "suspended")),
                Event::StepBailed { path, at, .. } => Some((path, at, "bailed")),
                _ => None,
            };
            if let Some((path, at, outcome)) = ended
                && let Some(from) = started.remove(&(run.clone(), path.clone()))
            {
                let seconds = at.micros_since(from) as f64 / 1e6;
                self.steps
                    .get_or_create(&vec![("outcome", outcome.to_owned())])
                    .observe(seconds);
            }
        }
        self.in_flight
            .set(i64::try_from(started.len()).unwrap_or(i64::MAX));
    }

    /// One commit took `took`.
    pub fn commit(&self, took: Duration) {
        self.commits.observe(took.as_secs_f64());
    }

    /// A lease on an existing run was granted.
    pub fn lease(&self, takeover: Takeover<'_>) {
        let how = match takeover {
            Takeover::IfFree => "free",
            Takeover::From(_) => "from-gone-owner",
            Takeover::Force => "forced",
        };
        self.leases
            .get_or_create(&vec![("how", how.to_owned())])
            .inc();
    }

    /// The metrics as OpenMetrics text, with the store's figures read now.
    pub fn render(&self, store: &dyn weft_core::Store, now: Timestamp) -> String {
        match store.count_by_status() {
            Ok(counts) => {
                self.runs.clear();
                for (status, count) in counts {
                    self.runs
                        .get_or_create(&vec![("status", status.as_str().to_owned())])
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
            Err(e) => tracing::warn!("metrics: cannot count runs: {e}"),
        }
        match store.claimable(now) {
            Ok(claimable) => {
                self.claimable
                    .set(i64::try_from(claimable.len()).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!("metrics: cannot list claimable runs: {e}"),
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
