//! The deterministic clocks of a step without the `clocks` grant.
//!
//! The wall clock always reads the attempt's start: the `at` of the
//! `step-started` event that began it, as recorded in the run's log. The
//! monotonic clock is logical: it reads 0 first and one microsecond more at
//! each read, so it never goes backwards, a loop waiting for it to advance
//! ends, and the same guest code reads the same values in every attempt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// A monotonic clock reading 0, then one microsecond more at each read.
#[derive(Debug, Default)]
pub(crate) struct Logical {
    reads: AtomicU64,
}

impl HostMonotonicClock for Logical {
    fn resolution(&self) -> u64 {
        RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        let reads = self.reads.fetch_add(1, Ordering::Relaxed);
        reads.saturating_mul(RESOLUTION.as_nanos() as u64)
    }
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
}
