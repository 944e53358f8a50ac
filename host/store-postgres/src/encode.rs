//! Events as rows: what is written for each event.
//!
//! Encoding (serializing the payload) happens before the store takes a
//! connection from its pool, so the write transaction only executes
//! prepared statements. The store keeps no read model of its own beyond the run's
//! row: what a run's steps did is the event log replayed through
//! [`weft_core::RunState`], one function for every store.

use weft_core::{Event, RunStatus, StoreError};

use crate::sql::to_sql_ts;

/// An event ready to be written.
#[derive(Clone)]
pub(crate) struct EncodedEvent {
    /// The event's type name.
    pub(crate) name: &'static str,
    /// When it happened.
    pub(crate) at: i64,
    /// Its serde JSON.
    pub(crate) payload: String,
    /// The run's status after it, if it changes it.
    pub(crate) status: Option<RunStatus>,
}

/// Serializes `event` of `run`.
pub(crate) fn encode(run: &str, event: &Event) -> Result<EncodedEvent, StoreError> {
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
