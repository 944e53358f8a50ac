//! Schema migrations: `migrations/NNNN_*.sql`, applied in order, all the
//! pending ones in one transaction, the applied count tracked in `PRAGMA
//! user_version`.

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
    (
        "0003_leases.sql",
        include_str!("../migrations/0003_leases.sql"),
    ),
    (
        "0004_deployments.sql",
        include_str!("../migrations/0004_deployments.sql"),
    ),
    (
        "0005_run_traces.sql",
        include_str!("../migrations/0005_run_traces.sql"),
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
/// Every pending migration applies in one `BEGIN IMMEDIATE` transaction
/// that re-reads the version first, so processes opening a fresh database
/// at the same time apply each migration exactly once (the loser of the
/// race waits for the write lock, busy timeout, then finds the schema
/// current), and a reader never sees a schema between two versions: a
/// database being created is at version 0 or at the current one.
///
/// # Errors
/// [`StoreError::Backend`] when the database is newer than this code (an
/// older weft must not write a schema it does not know) or a migration fails
/// (then none of the pending ones is applied).
pub(crate) fn migrate(conn: &mut Connection, what: &str) -> Result<(), StoreError> {
    apply(conn, what, MIGRATIONS)
}

/// [`migrate`] with the given list of migrations.
fn apply(conn: &mut Connection, what: &str, migrations: &[(&str, &str)]) -> Result<(), StoreError> {
    let latest = migrations.len() as u32;
    if check_against(schema_version(conn)?, latest, what)? {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("begin a migration"))?;
    let mut version = schema_version(&tx)?;
    if check_against(version, latest, what)? {
        return Ok(());
    }
    while version < latest {
        let (name, sql) = migrations[version as usize];
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("{what}: migration {name} failed: {e}")))?;
        version += 1;
    }
    tx.pragma_update(None, "user_version", version)
        .map_err(backend("record the schema version"))?;
    tx.commit()
        .map_err(|e| StoreError::Backend(format!("{what}: commit the migrations: {e}")))
}

/// Whether `version` is current; an error when it is newer than this code.
pub(crate) fn check(version: u32, what: &str) -> Result<bool, StoreError> {
    check_against(version, SCHEMA_VERSION, what)
}

fn check_against(version: u32, latest: u32, what: &str) -> Result<bool, StoreError> {
    if version > latest {
        return Err(StoreError::Backend(format!(
            "{what} has schema version {version}, but this weft only knows versions up to \
             {latest}: it was written by a newer weft; upgrade weft to use it"
        )));
    }
    Ok(version == latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn pending_migrations_apply_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        let good = ("0001_a.sql", "CREATE TABLE a (x);");
        let bad = ("0002_b.sql", "CREATE TABLE b (x); NOT SQL;");
        let err = apply(&mut conn, "m.db", &[good, bad]).unwrap_err();
        assert!(
            err.to_string().contains("migration 0002_b.sql failed"),
            "{err}"
        );
        // The first migration, which succeeded, is rolled back with the
        // second: nobody ever sees version 1.
        assert_eq!(schema_version(&conn).unwrap(), 0);
        assert!(tables(&conn).is_empty(), "{:?}", tables(&conn));

        let fixed = ("0002_b.sql", "CREATE TABLE b (x);");
        apply(&mut conn, "m.db", &[good, fixed]).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 2);
        assert_eq!(tables(&conn), ["a", "b"]);
        // Current: nothing runs again; a newer database is refused.
        apply(&mut conn, "m.db", &[good, fixed]).unwrap();
        let err = apply(&mut conn, "m.db", &[good]).unwrap_err();
        assert!(err.to_string().contains("newer weft"), "{err}");
    }
}
