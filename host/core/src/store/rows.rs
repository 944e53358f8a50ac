//! What the SQL stores (`weft-store-sqlite`, `weft-store-postgres`) share
//! when they write events as rows and read them back: the encoding of an
//! event and the checked conversions between the contract's numbers and
//! SQL's signed integers, each failure a [`StoreError::Backend`] naming the
//! run.
//!
//! Encoding (serializing the payload) happens before a store takes a
//! connection, so the write transaction only executes prepared statements.
//! The stores keep no read model of their own beyond a run's row: what a
//! run's steps did is the event log replayed through
//! [`crate::RunState`], one function for every store.

use crate::event::Event;
use crate::id::{RunId, Timestamp};
use crate::state::RunStatus;
use crate::store::StoreError;

/// An event ready to be written.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    /// The event's type name.
    pub name: &'static str,
    /// When it happened.
    pub at: i64,
    /// Its serde JSON.
    pub payload: String,
    /// The run's status after it, if it changes it.
    pub status: Option<RunStatus>,
}

/// Serializes `event` of `run`.
///
/// # Errors
/// [`StoreError::Backend`] when it cannot be serialized or its time does
/// not fit a SQL integer.
pub fn encode(run: &str, event: &Event) -> Result<EncodedEvent, StoreError> {
    let payload = serde_json::to_string(event).map_err(|e| {
        StoreError::Backend(format!(
            "run {run}: cannot serialize a {} event: {e}",
            event.name()
        ))
    })?;
    Ok(EncodedEvent {
        name: event.name(),
        at: to_sql_ts(event.at(), run)?,
        payload,
        status: RunStatus::after(event),
    })
}

/// A sequence number, count or epoch as a SQL integer.
///
/// # Errors
/// [`StoreError::Backend`] past `i64::MAX`.
pub fn to_sql_u64(value: u64, what: &str, run: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Backend(format!(
            "run {run}: {what} {value} is too large for the store"
        ))
    })
}

/// A timestamp as a SQL integer.
///
/// # Errors
/// As [`to_sql_u64`].
pub fn to_sql_ts(at: Timestamp, run: &str) -> Result<i64, StoreError> {
    to_sql_u64(at.0, "timestamp", run)
}

/// A SQL integer read back as a `u64`.
///
/// # Errors
/// [`StoreError::Backend`] when it is negative.
pub fn from_sql_u64(value: i64, what: &str, run: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        StoreError::Backend(format!("run {run}: the stored {what} {value} is negative"))
    })
}

/// A SQL integer read back as a timestamp.
///
/// # Errors
/// As [`from_sql_u64`].
pub fn from_sql_ts(value: i64, what: &str, run: &str) -> Result<Timestamp, StoreError> {
    from_sql_u64(value, what, run).map(Timestamp)
}

/// A run id read back from the database.
///
/// # Errors
/// [`StoreError::Backend`] when it is not a valid run id.
pub fn run_id(text: &str) -> Result<RunId, StoreError> {
    RunId::new(text).map_err(|e| StoreError::Backend(format!("a stored run id is invalid: {e}")))
}

/// [`StoreError::NotFound`] for `run`.
pub fn not_found(run: &str) -> StoreError {
    StoreError::NotFound {
        run: run.to_owned(),
    }
}
