//! Wake-up hints through `LISTEN/NOTIFY`: a transaction that makes a run
//! claimable notifies the store's channel ([`channel`]; the statements are
//! in `append` and `leases`), and a host waiting for work listens on it
//! ([`wait`]) instead of only polling.
//!
//! A hint is never the data, and losing one costs latency, never a run: a
//! notification is sent at commit to whoever listens then, and a host that
//! was not listening (not yet, or its connection was being replaced) still
//! finds the run by polling [`weft_core::EventStore::claimable`].

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, NoTls};

use crate::location::Location;

/// PostgreSQL's longest name, in bytes.
const MAX_NAME: usize = 63;

/// The channel a store's hints go to: `weft_<schema>`, cut to
/// PostgreSQL's 63 bytes for a name (two schemas whose names differ only
/// past that share hints: a spurious hint is only an early look).
pub(crate) fn channel(schema: &str) -> String {
    let mut channel = format!("weft_{schema}");
    // The schema is ASCII (see `Location::parse`): any cut is a boundary.
    channel.truncate(MAX_NAME);
    channel
}

/// A connection that `LISTEN`s on a store's channel.
pub(crate) struct Listener {
    client: Client,
}

impl Listener {
    fn open(location: &Location, channel: &str) -> Result<Self, postgres::Error> {
        let mut client = location.config.connect(NoTls)?;
        client.batch_execute(&format!("LISTEN \"{channel}\""))?;
        Ok(Self { client })
    }
}

/// Makes sure the listener in `slot` listens: kept if it answers an empty
/// query (notifications it received stay for the next wait), else opened
/// anew.
pub(crate) fn listen(
    slot: &mut Option<Listener>,
    location: &Location,
    channel: &str,
) -> Result<(), postgres::Error> {
    if let Some(listener) = slot.as_mut()
        && listener.client.simple_query("").is_ok()
    {
        return Ok(());
    }
    *slot = None;
    *slot = Some(Listener::open(location, channel)?);
    Ok(())
}

/// Waits up to `timeout` for a notification on `channel` through the
/// listener in `slot` (opened first if there is none): `true` when one came
/// (or had come since the previous wait), then every notification already
/// received is consumed with it. A listener that fails is dropped (the next
/// wait opens another); a wait that cannot listen returns `false` at the
/// end of `timeout`, never sooner, so that a caller looping on it does not
/// spin while the database is away.
pub(crate) fn wait(
    slot: &mut Option<Listener>,
    location: &Location,
    channel: &str,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    if slot.is_none() {
        *slot = Listener::open(location, channel).ok();
    }
    let mut failed = false;
    let hinted = match slot.as_mut() {
        Some(listener) => {
            let mut notifications = listener.client.notifications();
            let left = deadline.saturating_duration_since(Instant::now());
            let first = notifications.timeout_iter(left).next();
            match first {
                Ok(Some(_)) => {
                    // One hint stands for all received so far.
                    while let Ok(Some(_)) = notifications.iter().next() {}
                    true
                }
                Ok(None) => false,
                Err(_) => {
                    failed = true;
                    false
                }
            }
        }
        None => false,
    };
    if failed {
        *slot = None;
    }
    if !hinted {
        if slot.as_mut().is_some_and(|l| l.client.is_closed()) {
            *slot = None;
        }
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    hinted
}
