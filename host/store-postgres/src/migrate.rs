//! Schema migrations: `migrations/NNNN_*.sql`, applied in order, all the
//! pending ones in one transaction, the applied count kept in the store
//! schema's `schema_version` table.

use postgres::error::SqlState;
use postgres::{Client, GenericClient};
use weft_core::StoreError;

use crate::location::Location;
use crate::sql::describe;

/// Every migration, in order. Migration `i` (0-based) takes the schema from
/// version `i` to `i + 1`. Append new files; never edit a released one.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../migrations/0001_init.sql")),
    (
        "0002_event_epochs.sql",
        include_str!("../migrations/0002_event_epochs.sql"),
    ),
];

/// The schema version this code writes and understands.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The first key of the advisory lock that serializes migrations (the
/// second is the schema's name, hashed): "weft" in ASCII.
const LOCK_CLASS: i32 = 0x7765_6674;

/// The store's schema version, or `None` when the schema holds no store
/// (it, or its version table, does not exist).
pub(crate) fn schema_version(
    client: &mut impl GenericClient,
    location: &Location,
) -> Result<Option<u32>, StoreError> {
    let shown = &location.shown;
    match client.query_opt("SELECT version FROM schema_version", &[]) {
        Ok(row) => {
            let version: i32 = row.map_or(0, |row| row.get(0));
            u32::try_from(version).map(Some).map_err(|_| {
                StoreError::Backend(format!("{shown} has an invalid schema version {version}"))
            })
        }
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(StoreError::Backend(format!(
            "{shown}: read the schema version: {}",
            describe(&e)
        ))),
    }
}

/// Brings the store's schema up to [`SCHEMA_VERSION`], creating the schema
/// on first use.
///
/// Every pending migration applies in one transaction that first takes a
/// transaction-scoped advisory lock on the schema's name
/// (`pg_advisory_xact_lock`) and then re-reads the version, so hosts
/// opening a fresh store at the same time apply each migration exactly
/// once (the others wait for the lock, then find the schema current), and
/// a reader never sees a schema between two versions (PostgreSQL's DDL is
/// transactional).
///
/// # Errors
/// [`StoreError::Backend`] when the store is newer than this code (an older
/// weft must not write a schema it does not know) or a migration fails
/// (then none of the pending ones is applied).
pub(crate) fn migrate(client: &mut Client, location: &Location) -> Result<(), StoreError> {
    apply(client, location, MIGRATIONS)
}

/// [`migrate`] with the given list of migrations.
pub(crate) fn apply(
    client: &mut Client,
    location: &Location,
    migrations: &[(&str, &str)],
) -> Result<(), StoreError> {
    let latest = migrations.len() as u32;
    let shown = &location.shown;
    if check_against(schema_version(client, location)?, latest, shown)? {
        return Ok(());
    }
    let err = |what: &'static str| {
        move |e: postgres::Error| StoreError::Backend(format!("{shown}: {what}: {}", describe(&e)))
    };
    let mut tx = client.transaction().map_err(err("begin a migration"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &location.schema],
    )
    .map_err(err("lock the schema for a migration"))?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&location.schema],
        )
        .map_err(err("look for the schema"))?
        .is_some();
    let ident = location.schema_ident();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {ident}"))
            .map_err(err("create the schema"))?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO {ident};
         CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
    ))
    .map_err(err("create the schema version table"))?;
    let mut version = schema_version(&mut tx, location)?.unwrap_or(0);
    if check_against(Some(version), latest, shown)? {
        return tx.commit().map_err(err("commit"));
    }
    while version < latest {
        let (name, sql) = migrations[version as usize];
        tx.batch_execute(sql).map_err(|e| {
            StoreError::Backend(format!(
                "{shown}: migration {name} failed: {}",
                describe(&e)
            ))
        })?;
        version += 1;
    }
    let version = i32::try_from(version).unwrap_or(i32::MAX);
    tx.execute("DELETE FROM schema_version", &[])
        .and_then(|_| {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
        })
        .map_err(err("record the schema version"))?;
    tx.commit().map_err(err("commit the migrations"))
}

/// Whether `version` is current; an error when it is newer than this code.
pub(crate) fn check(version: Option<u32>, what: &str) -> Result<bool, StoreError> {
    check_against(version, SCHEMA_VERSION, what)
}

fn check_against(version: Option<u32>, latest: u32, what: &str) -> Result<bool, StoreError> {
    let version = version.unwrap_or(0);
    if version > latest {
        return Err(StoreError::Backend(format!(
            "{what} has schema version {version}, but this weft only knows versions up to \
             {latest}: it was written by a newer weft; upgrade weft to use it"
        )));
    }
    Ok(version == latest)
}
