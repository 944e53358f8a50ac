//! Schema migrations: `migrations/NNNN_*.sql`, applied in order, one
//! transaction each, the applied count tracked in `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};
use weft_core::StoreError;

use crate::sql::backend;

/// Every migration, in order. Migration `i` (0-based) takes the schema from
/// version `i` to `i + 1`. Append new files; never edit a released one.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../migrations/0001_init.sql")),
    (
        "0002_workflow_locks.sql",
        include_str!("../migrations/0002_workflow_locks.sql"),
    ),
];

/// The schema version this code writes and understands.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub(crate) fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend("read the schema version"))?;
    u32::try_from(version).map_err(|_| {
        StoreError::Backend(format!(
            "the database has an invalid schema version {version}"
        ))
    })
}

/// Brings the schema up to [`SCHEMA_VERSION`].
///
/// Each step re-reads the version inside its own `BEGIN IMMEDIATE`
/// transaction, so processes opening a fresh database at the same time apply
/// every migration exactly once: the loser of the race waits for the write
/// lock (busy timeout) and then finds the migration applied.
///
/// # Errors
/// [`StoreError::Backend`] when the database is newer than this code (an
/// older weft must not write a schema it does not know) or a migration fails
/// (the failing migration is rolled back completely).
pub(crate) fn migrate(conn: &mut Connection, what: &str) -> Result<(), StoreError> {
    if check(schema_version(conn)?, what)? {
        return Ok(());
    }
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("begin a migration"))?;
        let version = schema_version(&tx)?;
        if check(version, what)? {
            return Ok(());
        }
        let (name, sql) = MIGRATIONS[version as usize];
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("{what}: migration {name} failed: {e}")))?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(backend("record the schema version"))?;
        tx.commit()
            .map_err(|e| StoreError::Backend(format!("{what}: commit migration {name}: {e}")))?;
    }
}

/// Whether `version` is current; an error when it is newer than this code.
pub(crate) fn check(version: u32, what: &str) -> Result<bool, StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "{what} has schema version {version}, but this weft only knows versions up to \
             {SCHEMA_VERSION}: it was written by a newer weft; upgrade weft to use it"
        )));
    }
    Ok(version == SCHEMA_VERSION)
}
