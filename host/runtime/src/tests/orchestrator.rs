//! The evented runtime's orchestrator: it never blocks on the clock, and a
//! bug that panics it fails requests instead of hanging them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use weft_core::{
    Clock, Event, EventStore, RetryPolicy, RunId, RunStatus, StepOutcome, StepReport, Timestamp,
};

use super::hooked::{Call, Hooked};
use super::{Fixture, Kind, guest_error, ok, start_request};
use crate::{EventedRuntime, MemoryStore, Registered, RuntimeError, SystemClock};
use crate::{NoObserver, Runtime as _};

/// The system clock moved forward by `ahead_micros` (a test's jump over a
/// long wait, instead of waiting it out), recording the longest wait anyone
/// asked it to sleep.
#[derive(Default)]
struct WatchedClock {
    longest_sleep_micros: AtomicU64,
    ahead_micros: AtomicU64,
}

impl Clock for WatchedClock {
    fn now(&self) -> Timestamp {
        let ahead = self.ahead_micros.load(Ordering::SeqCst);
        Timestamp(SystemClock.now().0.saturating_add(ahead))
    }

    fn sleep_until(&self, deadline: Timestamp) {
        let wait = deadline.micros_since(self.now());
        self.longest_sleep_micros.fetch_max(wait, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(wait));
    }
}

#[test]
fn a_long_retry_delay_does_not_stall_other_runs() {
    // Ten minutes: an orchestrator that held other runs until the retry
    // would hold them far longer than `BOUND`. The test does not wait for
    // it: it moves the clock past it.
    const RETRY_DELAY_MS: u64 = 600_000;
    // How long a fast run may take (about a millisecond unloaded): generous
    // for a loaded 2-core machine, and still a tenth of the stall it rules
    // out. Every wait is bounded by it, so a stall fails instead of hanging.
    const BOUND: Duration = Duration::from_secs(60);
    let clock = Arc::new(WatchedClock::default());
    // How far the clock was moved when the slow run's retry ran.
    let retried_ahead = Arc::new(AtomicU64::new(u64::MAX));
    let (step_clock, retried) = (clock.clone(), retried_ahead.clone());
    let mut fixture = Fixture::new()
        .step("flaky", move |task, _| {
            if *task.input == json!("slow") && task.attempt == 1 {
                return StepReport::failed(guest_error("later", true));
            }
            if *task.input == json!("slow") {
                let ahead = step_clock.ahead_micros.load(Ordering::SeqCst);
                retried.store(ahead, Ordering::SeqCst);
            }
            ok(StepOutcome::Completed(json!(task.attempt)))
        })
        .with(|d| {
            d.retry = RetryPolicy {
                max_retries: 1,
                delay_ms: RETRY_DELAY_MS,
                backoff: 1,
            }
        });
    fixture.clock = Some(clock.clone());
    let (driver, _) = fixture.build(Kind::Evented);
    let (rt, reg) = (&*driver.runtime, &driver.registered);
    let (watch, committed) = crossbeam_channel::unbounded();
    let slow = rt.submit(start_request(reg, "slow", json!("slow")), Some(watch));
    // From its committed failure on, the slow run waits for its retry.
    loop {
        match committed.recv_timeout(BOUND) {
            Ok(Event::StepFailed { .. }) => break,
            Ok(_) => {}
            Err(e) => panic!("the slow run's first attempt did not fail: {e}"),
        }
    }
    // Other runs start and finish while it waits, and it keeps waiting.
    for n in 1..=5 {
        let fast = rt
            .submit(
                start_request(reg, &format!("fast-{n}"), json!("fast")),
                None,
            )
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| {
                panic!("run fast-{n} did not finish in {BOUND:?} while another run waited for its retry")
            })
            .unwrap();
        assert_eq!(fast.status, RunStatus::Success);
        assert!(slow.try_recv().is_err(), "the retry did not wait");
    }
    // Past the retry's due time, it runs.
    let jump = (RETRY_DELAY_MS + 1) * 1_000;
    clock.ahead_micros.store(jump, Ordering::SeqCst);
    let result = slow
        .recv_timeout(BOUND)
        .expect("the slow run finishes once its retry is due")
        .unwrap();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!(2)));
    assert_eq!(
        retried_ahead.load(Ordering::SeqCst),
        jump,
        "the retry ran before the clock reached its due time"
    );
    // The orchestrator waits for the retry on its message queue, with a
    // timeout, never by sleeping on the clock. (What is recorded is the
    // wait asked for, computed from the clock, not a measured duration: a
    // loaded machine only makes it shorter.)
    let longest = clock.longest_sleep_micros.load(Ordering::SeqCst);
    assert!(
        longest < 20_000,
        "the orchestrator slept {longest} µs on the clock"
    );
}

#[test]
fn a_panicking_orchestrator_fails_requests_and_shuts_down() {
    let (driver, _) = Fixture::new()
        .step("a", |_, _| ok(StepOutcome::Completed(json!(1))))
        .build(Kind::Evented);
    let reg = &driver.registered;
    let reg: Arc<Registered> = reg.clone();
    let rt = EventedRuntime::new(
        // Its writes panic: a bug in a store must not hang its callers.
        Arc::new(Hooked::new(
            Arc::new(MemoryStore::new()),
            |call| match call {
                Call::CreateRun | Call::AppendBatch | Call::AcquireAndAppend => panic!("store bug"),
                _ => Ok(()),
            },
        )),
        Arc::new(SystemClock),
        2,
    );
    let err = rt
        .call(start_request(&reg, "r1", json!(1)), &mut NoObserver)
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Panicked(why) if why.contains("store bug")),
        "{err}"
    );
    // Later requests fail the same way instead of waiting forever.
    let err = rt
        .call(start_request(&reg, "r2", json!(1)), &mut NoObserver)
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Panicked(_)), "{err}");
    // Dropping the runtime joins its threads: this returns.
    drop(rt);
}

/// Dropping the runtime does not wait for a run asleep for ten minutes: the
/// run stays in the store, running, with its wake time and no lease, for
/// whichever process takes it next.
#[test]
fn dropping_the_runtime_lets_a_sleeping_run_go() {
    use weft_core::{Node, NodeKind};
    let mut fixture = Fixture::new().step("a", |_, _| ok(StepOutcome::Completed(json!(1))));
    fixture.flow = Some(vec![
        Node {
            id: super::id("nap"),
            kind: NodeKind::Sleep {
                duration_ms: 600_000,
            },
        },
        Node {
            id: super::id("a"),
            kind: NodeKind::Step {
                step: super::id("a"),
            },
        },
    ]);
    let (driver, _) = fixture.build(Kind::Evented);
    let reg = &driver.registered;
    let store = Arc::new(MemoryStore::new());
    let rt = EventedRuntime::new(store.clone(), Arc::new(SystemClock), 1);
    let run = RunId::new("asleep").unwrap();
    let (watch, committed) = crossbeam_channel::unbounded();
    let reply = rt.submit(start_request(reg, run.as_str(), json!(1)), Some(watch));
    // Committed asleep: the store knows when it wakes (and that it is held).
    let until = committed
        .iter()
        .find_map(|e| match e {
            Event::SleepStarted { until, .. } => Some(until),
            _ => None,
        })
        .expect("the run sleeps once it is created");
    assert!(store.claimable(Timestamp(u64::MAX)).unwrap().is_empty());
    // The drop returns long before the ten minutes (bounded generously: a
    // hang would fail here, not block the suite).
    let (dropped, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(rt);
        let _ = dropped.send(());
    });
    done.recv_timeout(Duration::from_secs(120))
        .expect("dropping the runtime waited for the sleeping run");
    assert!(matches!(
        reply.recv(),
        Ok(Err(RuntimeError::ShutDown)) | Err(_)
    ));
    let claimable = store.claimable(Timestamp(u64::MAX)).unwrap();
    assert_eq!(claimable.len(), 1);
    assert_eq!((&claimable[0].run, claimable[0].wake), (&run, Some(until)));
}

/// A draining runtime (a server shutting down) lets the attempt in flight
/// finish and records it, starts nothing more, and lets the run go where it
/// stands: `running`, unleased, for the next process.
#[test]
fn a_draining_runtime_records_attempts_in_flight_and_starts_no_more() {
    let (entered, in_a) = crossbeam_channel::bounded::<()>(1);
    let (open, gate) = crossbeam_channel::bounded::<()>(1);
    let (rt, runner) = Fixture::new()
        .step("a", move |_, _| {
            let _ = entered.send(());
            let _ = gate.recv();
            ok(StepOutcome::Completed(json!(1)))
        })
        .step("b", super::add(1))
        .build(Kind::Evented);
    let reply = rt
        .runtime
        .submit(start_request(&rt.registered, "drained", json!(0)), None);
    // Bounded generously: a hang fails here instead of blocking the suite.
    let bound = Duration::from_secs(120);
    in_a.recv_timeout(bound).expect("a started");
    rt.runtime.drain();
    open.send(()).unwrap();
    assert!(matches!(
        reply.recv_timeout(bound),
        Ok(Err(RuntimeError::ShutDown)) | Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    ));
    let run = RunId::new("drained").unwrap();
    let events = rt.store().load(&run).unwrap().1;
    assert!(
        matches!(events.last(), Some(Event::StepCompleted { path, .. }) if path.as_str() == "a"),
        "{events:?}"
    );
    assert_eq!(runner.calls.lock().unwrap().clone(), ["a#1"]);
    let claimable = rt.store().claimable(Timestamp(u64::MAX)).unwrap();
    assert_eq!(claimable.len(), 1, "the run is let go");
    assert_eq!(claimable[0].run, run);
}
