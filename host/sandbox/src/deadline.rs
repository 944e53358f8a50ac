//! Step deadlines: the [`EpochTicker`] thread and an attempt's [`Deadline`].
//!
//! wasmtime interrupts guest code when the engine's epoch reaches the store's
//! epoch deadline. Here the epoch is only a wake-up call: whether an attempt is
//! past its deadline is decided from the monotonic clock, so the deadline
//! drifts neither with load nor with its length.
//!
//! - The ticker issues tick `n` at `start + n × EPOCH_TICK` ([`TickSchedule`]),
//!   computed from its monotonic start rather than one sleep after the other,
//!   and a late wake-up issues every tick that came due meanwhile: the epoch
//!   never falls behind the clock by more than the ticker's scheduling delay.
//! - An attempt's [`Deadline`] is an instant. When the store's epoch deadline
//!   is reached, [`Deadline::on_epoch`] interrupts the guest if that instant
//!   has passed, and otherwise waits for the ticks left (at least one).
//!
//! So a step stops at the first tick at or after its deadline: never early,
//! and late by at most one tick plus the ticker thread's scheduling delay.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, UpdateDeadline};

use crate::error::SandboxError;

/// How often the epoch advances: the granularity of step deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The most ticks a store waits for at once. wasmtime adds the wait to the
/// current epoch, so it must leave room for the epoch to grow; at 5 ms a tick
/// this is still millions of years.
const MAX_WAIT_TICKS: u64 = u64::MAX / 4;

/// When ticks are due: tick `n` (from 1) at `n × period` after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TickSchedule {
    period_nanos: u64,
}

impl TickSchedule {
    /// Ticks every `period` (at least a nanosecond).
    pub(crate) fn every(period: Duration) -> Self {
        Self {
            period_nanos: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// How many ticks are due `elapsed` after the start.
    pub(crate) fn due(self, elapsed: Duration) -> u64 {
        u64::try_from(elapsed.as_nanos() / u128::from(self.period_nanos)).unwrap_or(u64::MAX)
    }

    /// How long, `elapsed` after the start with `issued` ticks issued, until
    /// the next tick is due (zero when it already is).
    pub(crate) fn wait(self, elapsed: Duration, issued: u64) -> Duration {
        let next = u128::from(issued.saturating_add(1)) * u128::from(self.period_nanos);
        let wait = next.saturating_sub(elapsed.as_nanos());
        Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }

    /// The ticks to wait for `remaining` time to pass: rounded up, at least one.
    pub(crate) fn ticks_for(self, remaining: Duration) -> u64 {
        let ticks = remaining.as_nanos().div_ceil(u128::from(self.period_nanos));
        u64::try_from(ticks)
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_WAIT_TICKS)
    }
}

/// An attempt's deadline on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    /// `None` when the deadline is beyond what the clock can represent.
    at: Option<Instant>,
    schedule: TickSchedule,
}

impl Deadline {
    /// The deadline `deadline_ms` after `start`, woken by ticks of `schedule`.
    pub(crate) fn after(start: Instant, deadline_ms: u64, schedule: TickSchedule) -> Self {
        Self {
            at: start.checked_add(Duration::from_millis(deadline_ms)),
            schedule,
        }
    }

    /// The instant, `None` when beyond what the clock can represent.
    pub(crate) fn at(&self) -> Option<Instant> {
        self.at
    }

    /// The epoch ticks to wait for first, at `now`.
    pub(crate) fn first_wait(&self, now: Instant) -> u64 {
        match self.at {
            Some(at) => self.schedule.ticks_for(at.saturating_duration_since(now)),
            None => MAX_WAIT_TICKS,
        }
    }

    /// What the store does when its epoch deadline is reached at `now`:
    /// interrupt the guest once the deadline has passed, else wait for the
    /// ticks left (the epoch deadline may come early, as the attempt started
    /// part-way through a tick).
    pub(crate) fn on_epoch(&self, now: Instant) -> UpdateDeadline {
        match self.at {
            Some(at) if now >= at => UpdateDeadline::Interrupt,
            Some(at) => UpdateDeadline::Continue(self.schedule.ticks_for(at - now)),
            None => UpdateDeadline::Continue(MAX_WAIT_TICKS),
        }
    }
}

/// The thread that advances the engine's epoch on the [`TickSchedule`] of
/// [`EPOCH_TICK`]. Every loaded component holds it, so deadlines keep working
/// as long as any component of the sandbox exists; it stops when the last one
/// is dropped.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the thread.
    ///
    /// # Errors
    /// [`SandboxError::Engine`] when the thread cannot be spawned.
    pub(crate) fn start(engine: Engine) -> Result<Self, SandboxError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let schedule = TickSchedule::every(EPOCH_TICK);
        let thread = std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                let start = Instant::now();
                let mut issued = 0_u64;
                // Ends when the sender is dropped (or sends).
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(schedule.wait(start.elapsed(), issued))
                {
                    let due = schedule.due(start.elapsed());
                    while issued < due {
                        engine.increment_epoch();
                        issued += 1;
                    }
                }
            })
            .map_err(|error| SandboxError::Engine {
                reason: format!("cannot start the epoch thread: {error}"),
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The thread only sleeps and increments a counter: it cannot panic.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn schedule() -> TickSchedule {
        TickSchedule::every(5 * MS)
    }

    #[test]
    fn ticks_are_due_from_the_start_not_from_the_last_wake_up() {
        let s = schedule();
        assert_eq!(s.due(Duration::ZERO), 0);
        assert_eq!(s.due(4 * MS), 0);
        assert_eq!(s.due(5 * MS), 1);
        assert_eq!(s.due(1000 * MS), 200);
        // A wake-up 1.3 ms late does not push the next tick back.
        assert_eq!(
            s.wait(Duration::from_micros(6_300), 1),
            Duration::from_micros(3_700)
        );
        // Nor do 200 of them: tick 201 is still due at 1005 ms.
        assert_eq!(
            s.wait(Duration::from_micros(1_001_300), 200),
            Duration::from_micros(3_700)
        );
        // Behind schedule, the next tick is due at once.
        assert_eq!(s.wait(50 * MS, 3), Duration::ZERO);
        assert_eq!(s.wait(Duration::MAX, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn waits_round_up_to_whole_ticks_of_at_least_one() {
        let s = schedule();
        assert_eq!(s.ticks_for(Duration::ZERO), 1);
        assert_eq!(s.ticks_for(MS), 1);
        assert_eq!(s.ticks_for(5 * MS), 1);
        assert_eq!(s.ticks_for(6 * MS), 2);
        assert_eq!(s.ticks_for(200 * MS), 40);
        assert_eq!(s.ticks_for(Duration::MAX), MAX_WAIT_TICKS);
    }

    #[test]
    fn a_deadline_interrupts_only_once_it_has_passed() {
        let start = Instant::now();
        let deadline = Deadline::after(start, 200, schedule());
        assert_eq!(deadline.first_wait(start), 40);
        assert!(matches!(
            deadline.on_epoch(start + 198 * MS),
            UpdateDeadline::Continue(1)
        ));
        assert!(matches!(
            deadline.on_epoch(start + 180 * MS),
            UpdateDeadline::Continue(4)
        ));
        assert!(matches!(
            deadline.on_epoch(start + 200 * MS),
            UpdateDeadline::Interrupt
        ));
        assert!(matches!(
            deadline.on_epoch(start + 1000 * MS),
            UpdateDeadline::Interrupt
        ));

        // Deadlines too far for the clock (or for the epoch) wait as long as they can.
        let far = Deadline::after(start, u64::MAX, schedule());
        assert!((1 << 60..=MAX_WAIT_TICKS).contains(&far.first_wait(start)));
        assert!(matches!(
            far.on_epoch(start + 1000 * MS),
            UpdateDeadline::Continue(ticks) if ticks > 1 << 60
        ));
        let never = Deadline {
            at: None,
            schedule: schedule(),
        };
        assert_eq!(never.first_wait(start), MAX_WAIT_TICKS);
        assert!(matches!(
            never.on_epoch(start + 1000 * MS),
            UpdateDeadline::Continue(MAX_WAIT_TICKS)
        ));
    }

    /// Simulates the ticker (woken late by `lateness(k)` at its k-th wake-up)
    /// and a store running a guest loop from `begin` under a deadline of
    /// `deadline_ms`, with wasmtime's rule: when the epoch reaches the store's
    /// epoch deadline, the callback decides. Returns when the guest stopped,
    /// as time since the ticker started.
    fn stops_at(begin: Duration, deadline_ms: u64, lateness: impl Fn(u64) -> Duration) -> Duration {
        let s = schedule();
        let origin = Instant::now();
        let mut issued = 0_u64;
        let mut now = Duration::ZERO;
        let advance = |now: &mut Duration, issued: &mut u64, k: u64| {
            *now += s.wait(*now, *issued) + lateness(k);
            *issued = (*issued).max(s.due(*now));
        };
        // The ticker runs until the attempt begins.
        let mut k = 0;
        loop {
            let mut next = now;
            let mut next_issued = issued;
            advance(&mut next, &mut next_issued, k);
            if next > begin {
                break;
            }
            (now, issued, k) = (next, next_issued, k + 1);
        }
        let deadline = Deadline::after(origin + begin, deadline_ms, s);
        let mut epoch_deadline = issued + deadline.first_wait(origin + begin);
        loop {
            advance(&mut now, &mut issued, k);
            k += 1;
            if issued >= epoch_deadline {
                match deadline.on_epoch(origin + now) {
                    UpdateDeadline::Interrupt => return now,
                    UpdateDeadline::Continue(ticks) => epoch_deadline = issued + ticks,
                    _ => unreachable!("the callback only interrupts or continues"),
                }
            }
        }
    }

    /// How late the ticker wakes up the k-th time.
    type Lateness = fn(u64) -> Duration;

    #[test]
    fn deadlines_stop_at_the_first_tick_after_them_whatever_the_load() {
        let lateness_patterns: [(&str, Lateness); 4] = [
            ("punctual", |_| Duration::ZERO),
            // The drift the issue measured: every wake-up 1.3 ms late.
            ("steadily late", |_| Duration::from_micros(1_300)),
            ("jittery", |k| Duration::from_micros((k * 7_919) % 4_000)),
            // One 50 ms stall of the ticker thread.
            (
                "stalled",
                |k| if k == 20 { 50 * MS } else { Duration::ZERO },
            ),
        ];
        for (name, lateness) in lateness_patterns {
            let worst_lateness = (0..10_000).map(lateness).max().unwrap();
            for deadline_ms in [1, 5, 7, 200, 1000] {
                for begin_us in [0, 1, 2_500, 4_999, 5_000, 123_456] {
                    let begin = Duration::from_micros(begin_us);
                    let stop = stops_at(begin, deadline_ms, lateness);
                    let due = begin + Duration::from_millis(deadline_ms);
                    assert!(
                        stop >= due,
                        "{name}, {deadline_ms} ms from {begin:?}: early at {stop:?}"
                    );
                    // At most one tick, plus how late the ticker woke up.
                    assert!(
                        stop <= due + 5 * MS + worst_lateness,
                        "{name}, {deadline_ms} ms from {begin:?}: late at {stop:?}"
                    );
                }
            }
        }
    }
}
