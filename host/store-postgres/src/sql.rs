//! Conversions between weft values and SQL values, and error context.
//!
//! Sequence numbers and timestamps are `u64` in weft and `bigint` (`i64`)
//! in the database. Values that do not fit are refused with an error
//! instead of being wrapped, in both directions.

use postgres::error::SqlState;
use weft_core::StoreError;

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

pub(crate) use weft_core::rows::{
    from_sql_ts, from_sql_u64, not_found, run_id, to_sql_ts, to_sql_u64,
};
