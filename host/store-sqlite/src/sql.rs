//! Conversions between weft values and SQL values, and error context.
//!
//! SQLite integers are `i64`; sequence numbers and timestamps are `u64` in
//! weft. Values that do not fit are refused with an error instead of being
//! wrapped, in both directions.

use rusqlite::ErrorCode;
use weft_core::StoreError;

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

pub(crate) use weft_core::rows::{
    from_sql_ts, from_sql_u64, not_found, run_id, to_sql_ts, to_sql_u64,
};
