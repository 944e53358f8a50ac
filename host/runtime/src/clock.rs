//! [`SystemClock`]: the real clock, which the runtimes and the CLI inject
//! into everything that reads time. The core only knows the
//! [`weft_core::Clock`] trait (and a manual clock for tests), so nothing in
//! the model can read the wall clock behind a caller's back.

use weft_core::{Clock, Timestamp};

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
    }

    fn sleep_until(&self, deadline: Timestamp) {
        let now = self.now();
        if deadline > now {
            std::thread::sleep(std::time::Duration::from_micros(deadline.micros_since(now)));
        }
    }
}
