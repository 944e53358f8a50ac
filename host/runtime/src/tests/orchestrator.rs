//! The evented runtime's orchestrator: it never blocks on the clock, and a
//! bug that panics it fails requests instead of hanging them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::{
    Append, Clock, Event, EventStore, RetryPolicy, RunId, RunMeta, RunStatus, RunSummary,
    StepOutcome, StepReport, StoreError, SystemClock, Timer, Timestamp,
};

use super::{Driver, Fixture, Kind, guest_error, ok};
use crate::{EventedRuntime, MemoryStore, Registered, RuntimeError};

/// The system clock, recording the longest wait anyone asked it to sleep.
#[derive(Default)]
struct WatchedClock {
    longest_sleep_micros: AtomicU64,
}

impl Clock for WatchedClock {
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }

    fn sleep_until(&self, deadline: Timestamp) {
        let wait = deadline.micros_since(self.now());
        self.longest_sleep_micros.fetch_max(wait, Ordering::SeqCst);
        SystemClock.sleep_until(deadline);
    }
}

#[test]
fn a_long_retry_delay_does_not_stall_other_runs() {
    let clock = Arc::new(WatchedClock::default());
    let mut fixture = Fixture::new()
        .step("flaky", |task, _| {
            if *task.input == json!("slow") && task.attempt == 1 {
                StepReport::failed(guest_error("later", true))
            } else {
                ok(StepOutcome::Completed(json!(task.attempt)))
            }
        })
        .with(|d| {
            d.retry = RetryPolicy {
                max_retries: 1,
                delay_ms: 1_500,
                backoff: 1,
            }
        });
    fixture.clock = Some(clock.clone());
    let (driver, _) = fixture.build(Kind::Evented);
    let Driver::Evented(rt, reg, _) = &driver else {
        unreachable!("built for the evented runtime")
    };
    let begun = Instant::now();
    let slow = rt.submit_start(reg.clone(), RunId::new("slow").unwrap(), json!("slow"));
    // Other runs start and finish while the slow one waits for its retry.
    let mut n = 0;
    let result = loop {
        if let Ok(result) = slow.try_recv() {
            break result.unwrap();
        }
        n += 1;
        let asked = Instant::now();
        let fast = rt
            .start(
                reg.clone(),
                RunId::new(&format!("fast-{n}")).unwrap(),
                json!("fast"),
            )
            .unwrap();
        assert_eq!(fast.status, RunStatus::Success);
        let took = asked.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "run fast-{n} took {took:?} while another run waited for its retry"
        );
    };
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!(2)));
    assert!(begun.elapsed() >= Duration::from_millis(1_500));
    // The orchestrator waits for the retry on its message queue, with a
    // timeout, never by sleeping on the clock.
    let longest = clock.longest_sleep_micros.load(Ordering::SeqCst);
    assert!(
        longest < 20_000,
        "the orchestrator slept {longest} µs on the clock"
    );
}

/// A store whose writes panic: a bug in a store must not hang its callers.
struct PanickingStore(MemoryStore);

impl EventStore for PanickingStore {
    fn create_run(&self, _: &RunMeta, _: &[Event]) -> Result<(), StoreError> {
        panic!("store bug")
    }
    fn append_batch(&self, _: &[Append<'_>]) -> Result<(), StoreError> {
        panic!("store bug")
    }
    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError> {
        self.0.load(run)
    }
    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError> {
        self.0.events_after(run, after)
    }
    fn list_runs(&self, status: Option<RunStatus>) -> Result<Vec<RunSummary>, StoreError> {
        self.0.list_runs(status)
    }
    fn set_timer(&self, run: &RunId, key: &str, due: Timestamp) -> Result<(), StoreError> {
        self.0.set_timer(run, key, due)
    }
    fn clear_timer(&self, run: &RunId, key: &str) -> Result<(), StoreError> {
        self.0.clear_timer(run, key)
    }
    fn due_timers(&self, now: Timestamp) -> Result<Vec<Timer>, StoreError> {
        self.0.due_timers(now)
    }
}

#[test]
fn a_panicking_orchestrator_fails_requests_and_shuts_down() {
    let (driver, _) = Fixture::new()
        .step("a", |_, _| ok(StepOutcome::Completed(json!(1))))
        .build(Kind::Evented);
    let Driver::Evented(_, reg, _) = &driver else {
        unreachable!("built for the evented runtime")
    };
    let reg: Arc<Registered> = reg.clone();
    let rt = EventedRuntime::new(
        Arc::new(PanickingStore(MemoryStore::new())),
        Arc::new(SystemClock),
        2,
    );
    let err = rt
        .start(reg.clone(), RunId::new("r1").unwrap(), json!(1))
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Panicked(why) if why.contains("store bug")),
        "{err}"
    );
    // Later requests fail the same way instead of waiting forever.
    let err = rt
        .start(reg, RunId::new("r2").unwrap(), json!(1))
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Panicked(_)), "{err}");
    // Dropping the runtime joins its threads: this returns.
    drop(rt);
}
