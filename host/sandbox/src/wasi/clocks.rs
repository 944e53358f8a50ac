//! The deterministic clocks of a step without the `clocks` grant, and how
//! a sleep moves them.
//!
//! The wall clock always reads the attempt's start: the `at` of the
//! `step-started` event that began it, as recorded in the run's log. The
//! monotonic clock is logical: it reads 0 first and one microsecond more at
//! each read, so it never goes backwards, a loop waiting for it to advance
//! ends, and the same guest code reads the same values in every attempt.
//!
//! A sleep — a pollable of `wasi:clocks/monotonic-clock`'s
//! `subscribe-duration` or `subscribe-instant`, which is what every
//! language's sleep comes down to — waits real time (bounded by the
//! attempt's deadline, like any blocking call), and when it is over the
//! logical clock has advanced by at least the time slept: a guest that
//! sleeps until the clock reads some value (Go's scheduler does) then reads
//! it, with the grant or without. [`link_sleeps`] puts this implementation
//! of the interface in place of wasmtime-wasi's, which waits without moving
//! a clock it does not own; with the `clocks` grant it defers to
//! wasmtime-wasi's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};
use weft_core::Timestamp;

/// Both clocks' resolution: the microsecond of weft's timestamps.
const RESOLUTION: Duration = Duration::from_micros(1);

/// A wall clock stopped at the attempt's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptStart(Duration);

impl AttemptStart {
    pub(crate) fn at(started_at: Timestamp) -> Self {
        Self(Duration::from_micros(started_at.0))
    }
}

impl HostWallClock for AttemptStart {
    fn resolution(&self) -> Duration {
        RESOLUTION
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock reading 0, then one microsecond more at each read,
/// moved forward by sleeps.
#[derive(Debug, Default)]
pub(crate) struct Logical {
    /// What the next read returns, in nanoseconds.
    next: AtomicU64,
}

impl Logical {
    /// At least `at` (nanoseconds) from now on.
    fn advance_to(&self, at: u64) {
        self.next.fetch_max(at, Ordering::Relaxed);
    }
}

impl HostMonotonicClock for Logical {
    fn resolution(&self) -> u64 {
        RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        self.next
            .fetch_add(RESOLUTION.as_nanos() as u64, Ordering::Relaxed)
    }
}

/// The attempt's logical clock, shared by its WASI context (which reads
/// it) and its sleeps (which move it).
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedLogical(pub(crate) Arc<Logical>);

impl HostMonotonicClock for SharedLogical {
    fn resolution(&self) -> u64 {
        self.0.resolution()
    }

    fn now(&self) -> u64 {
        self.0.now()
    }
}

/// What `wasi:clocks/monotonic-clock` works on for one call: the attempt's
/// WASI context and resource table, and its logical clock unless granted
/// the host's clocks.
pub(crate) struct SleepClock<'a> {
    pub(crate) ctx: &'a mut WasiCtx,
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) logical: Option<&'a Arc<Logical>>,
}

impl SleepClock<'_> {
    fn stock(&mut self) -> WasiClocksCtxView<'_> {
        WasiClocksCtxView {
            ctx: self.ctx.clocks(),
            table: self.table,
        }
    }

    /// A pollable ready `nanos` of real time from now, that moves the
    /// logical clock to at least `until` when it is.
    fn sleep(
        &mut self,
        logical: Arc<Logical>,
        nanos: u64,
        until: u64,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let real = tokio::time::Instant::now().checked_add(Duration::from_nanos(nanos));
        let sleep = self.table.push(Sleep {
            real,
            until,
            logical,
        })?;
        subscribe(self.table, sleep)
    }
}

impl monotonic_clock::Host for SleepClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::now(&mut self.stock())
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::resolution(&mut self.stock())
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let Some(logical) = self.logical.cloned() else {
            return self.stock().subscribe_instant(when);
        };
        let now = logical.now();
        self.sleep(logical, when.saturating_sub(now), when)
    }

    fn subscribe_duration(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let Some(logical) = self.logical.cloned() else {
            return self.stock().subscribe_duration(nanos);
        };
        let until = logical.now().saturating_add(nanos);
        self.sleep(logical, nanos, until)
    }
}

/// A sleep on the logical clock: real time, then the clock moves.
struct Sleep {
    /// `None` past what the clock can represent: never ready.
    real: Option<tokio::time::Instant>,
    until: u64,
    logical: Arc<Logical>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        match self.real {
            Some(real) => tokio::time::sleep_until(real).await,
            None => std::future::pending().await,
        }
        self.logical.advance_to(self.until);
    }
}

/// [`HasData`] for [`SleepClock`].
pub(crate) struct Sleeps;

impl HasData for Sleeps {
    type Data<'a> = SleepClock<'a>;
}

/// Links this module's `wasi:clocks/monotonic-clock` over wasmtime-wasi's
/// (which must be linked already).
pub(crate) fn link_sleeps<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> SleepClock<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = monotonic_clock::add_to_linker::<T, Sleeps>(linker, view);
    linker.allow_shadowing(false);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_is_the_attempt_start() {
        let clock = AttemptStart::at(Timestamp(1_700_000_000_123_456));
        assert_eq!(clock.now(), Duration::new(1_700_000_000, 123_456_000));
        assert_eq!(clock.now(), clock.now());
    }

    #[test]
    fn the_monotonic_clock_starts_at_zero_and_advances_per_read() {
        let clock = Logical::default();
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.now(), 1_000);
        assert_eq!(clock.now(), 2_000);
        assert_eq!(clock.resolution(), 1_000);
    }

    #[test]
    fn a_sleep_moves_the_monotonic_clock_forward_never_back() {
        let clock = Logical::default();
        assert_eq!(clock.now(), 0);
        clock.advance_to(20_000_000);
        assert_eq!(clock.now(), 20_000_000);
        clock.advance_to(5_000);
        assert_eq!(clock.now(), 20_001_000);
    }
}
