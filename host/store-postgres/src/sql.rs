//! Conversions between weft values and SQL values, and error context.
//!
//! Sequence numbers and timestamps are `u64` in weft and `bigint` (`i64`)
//! in the database. Values that do not fit are refused with an error
//! instead of being wrapped, in both directions.

use postgres::error::SqlState;
use weft_core::{RunId, StoreError, Timestamp};

/// The database's error as one line (with its detail, when it has one),
/// else the client's error with its cause: the client's own `Display` of a
/// database error is just "db error".
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Maps a database error to [`StoreError::Backend`] naming the operation.
pub(crate) fn backend(op: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{op}: {}", describe(&e)))
}

/// Maps a database error to [`StoreError::Backend`] naming the operation
/// and the run.
pub(crate) fn backend_run(
    op: &'static str,
    run: &str,
) -> impl FnOnce(postgres::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{op} (run {run}): {}", describe(&e)))
}

/// Whether `e` is a foreign key violation (a row naming a workflow lock
/// that is not stored).
pub(crate) fn is_foreign_key_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// A sequence number, count or epoch as a SQL integer.
pub(crate) fn to_sql_u64(value: u64, what: &str, run: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Backend(format!(
            "run {run}: {what} {value} is too large for the store"
        ))
    })
}

/// A timestamp as a SQL integer.
pub(crate) fn to_sql_ts(at: Timestamp, run: &str) -> Result<i64, StoreError> {
    to_sql_u64(at.0, "timestamp", run)
}

/// A SQL integer read back as a `u64`.
pub(crate) fn from_sql_u64(value: i64, what: &str, run: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        StoreError::Backend(format!("run {run}: the stored {what} {value} is negative"))
    })
}

/// A SQL integer read back as a timestamp.
pub(crate) fn from_sql_ts(value: i64, what: &str, run: &str) -> Result<Timestamp, StoreError> {
    from_sql_u64(value, what, run).map(Timestamp)
}

/// A run id read back from the database.
pub(crate) fn run_id(text: &str) -> Result<RunId, StoreError> {
    RunId::new(text).map_err(|e| StoreError::Backend(format!("a stored run id is invalid: {e}")))
}

/// [`StoreError::NotFound`] for `run`.
pub(crate) fn not_found(run: &str) -> StoreError {
    StoreError::NotFound {
        run: run.to_owned(),
    }
}
