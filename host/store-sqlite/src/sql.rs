//! Conversions between weft values and SQL values, and error context.
//!
//! SQLite integers are `i64`; sequence numbers and timestamps are `u64` in
//! weft. Values that do not fit are refused with an error instead of being
//! wrapped, in both directions.

use rusqlite::ErrorCode;
use weft_core::{RunId, StoreError, Timestamp};

/// Maps a SQLite error to [`StoreError::Backend`] naming the operation.
pub(crate) fn backend(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{op}: {e}"))
}

/// Maps a SQLite error to [`StoreError::Backend`] naming the operation and the run.
pub(crate) fn backend_run(
    op: &'static str,
    run: &str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{op} (run {run}): {e}"))
}

/// Whether `e` is a foreign key violation (a row naming a run that does not exist).
pub(crate) fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::ConstraintViolation
                && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

/// A sequence number or count as a SQL integer.
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
