//! [`SqliteStore`]: opening a database, and the [`EventStore`] operations.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use weft_core::{
    Append, Claimable, Event, EventStore, Lease, Owner, RunCursor, RunFilter, RunId, RunIndex,
    RunMeta, RunPage, RunStatus, StoreError, Takeover, Timestamp,
};

use crate::encode::{EncodedEvent, encode};
use crate::leases::{self, NOW_US, head_of, ttl_us};
use crate::migrate::{SCHEMA_VERSION, check, migrate, schema_version};
use crate::rows::{last_seq_of, read_events, runs, workflow_id_of, write_events};
use crate::sql::{backend, backend_run, from_sql_u64, not_found, to_sql_ts, to_sql_u64};
use crate::workflows::{insert_pin, unknown_workflow};

/// How long a statement waits for another connection's write lock before
/// failing with "database is locked". Write transactions are short (one
/// group commit is about a millisecond on the reference machine), so this
/// only expires when another process holds the lock abnormally long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection; more than the store uses, so
/// `prepare_cached` never evicts one.
const STATEMENT_CACHE: usize = 64;

/// When a commit is durable: SQLite's `PRAGMA synchronous` in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit syncs the write-ahead log before it
    /// returns, so a committed event survives a process crash, an OS crash
    /// and power loss. One device flush per commit (about 100 µs on the
    /// reference VM; 0.5–5 ms on network disks), which is what
    /// [`EventStore::append_batch`] amortizes over many events.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits do not sync; the log is synced only at
    /// checkpoints. A committed event survives a process crash, but an OS
    /// crash or power loss may roll back the latest commits (the database
    /// stays consistent). About 5× cheaper per commit; for tests and
    /// throwaway runs, not for work whose side effects must not repeat.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// The SQLite event store.
///
/// One database file holds every run. The store owns ONE connection behind
/// a mutex: every operation, read or write, takes it in turn, so a read may
/// wait behind a commit's fsync. That is enough for one runtime process that
/// group-commits its appends; a pool of read connections is the next step if
/// readers ever need to overtake writers. Several processes (or several
/// stores in one process) may open the same file: WAL lets readers proceed
/// during a write, writers queue on SQLite's lock for up to five seconds
/// (`busy_timeout`), and every write transaction starts with `BEGIN
/// IMMEDIATE`, so the optimistic `expected` check and the write happen
/// under the same lock. WAL needs shared memory between the processes, so
/// the file must be on a local file system (not NFS/SMB).
///
/// Pragmas: `journal_mode=WAL`, `synchronous` per [`Durability`] (FULL by
/// default), `busy_timeout=5000`, `foreign_keys=ON`; the rest are SQLite's
/// defaults (notably `wal_autocheckpoint=1000` pages, checkpointing inline
/// at commit).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    location: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating the file and its parent directories on first use) the
    /// database at `path` with [`Durability::Full`], and migrates its schema.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the directory or file cannot be created
    /// or opened, the file is not a SQLite database, its schema is newer than
    /// this code, or a migration fails.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Full)
    }

    /// Like [`SqliteStore::open`], with the given durability.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("create the directory {}: {e}", dir.display()))
            })?;
        }
        // No SQLITE_OPEN_URI: a path is a path. NO_MUTEX: the store's own
        // mutex serializes use of the connection.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Backend(format!("open {location}: {e}")))?;
        Self::configure(conn, location, durability, true)
    }

    /// Opens the existing database at `path` for reading only: nothing is
    /// created, no pragma is changed and no migration runs, so a database
    /// the process cannot write (a read-only file, directory or mount, or
    /// another user's) can still be inspected. Every write through this
    /// store fails with [`StoreError::Backend`].
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file does not exist or cannot be
    /// opened, is not a SQLite database, or its schema is not the one this
    /// code writes (newer: written by a newer weft; older: it needs the
    /// migration a writable [`SqliteStore::open`] applies).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let location = path.display().to_string();
        // Falls back to an immutable open in a directory it cannot write;
        // see `read_only::open` for when and why that is safe.
        let conn = crate::read_only::open(path, &location, BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let version = schema_version(&conn)?;
        if !check(version, &location)? {
            return Err(StoreError::Backend(format!(
                "{location} has schema version {version}, older than this weft's \
                 {SCHEMA_VERSION}; it needs a migration, which a read-only open cannot apply \
                 (any weft command that writes, e.g. `weft recover`, applies it)"
            )));
        }
        Ok(Self {
            conn: Mutex::new(conn),
            location,
        })
    }

    /// A private in-memory database, for tests: nothing is persisted and no
    /// other handle can see it.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when SQLite fails to set it up.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| StoreError::Backend(format!("open an in-memory database: {e}")))?;
        Self::configure(conn, ":memory:".to_owned(), Durability::Full, false)
    }

    fn configure(
        mut conn: Connection,
        location: String,
        durability: Durability,
        file: bool,
    ) -> Result<Self, StoreError> {
        let err = |what: &str, e: rusqlite::Error| {
            StoreError::Backend(format!("open {location}: {what}: {e}"))
        };
        // The busy timeout comes first: switching a fresh file to WAL and
        // migrating take the write lock, which another process may hold.
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err("set busy_timeout", e))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        if file {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(|e| err("set journal_mode", e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Backend(format!(
                    "open {location}: the database stays in journal mode `{mode}` instead of WAL"
                )));
            }
        }
        conn.pragma_update(None, "synchronous", durability.pragma())
            .map_err(|e| err("set synchronous", e))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| err("set foreign_keys", e))?;
        migrate(&mut conn, &location)?;
        Ok(Self {
            conn: Mutex::new(conn),
            location,
        })
    }

    /// Runs `PRAGMA integrity_check`: `"ok"` for a sound database, otherwise
    /// SQLite's findings, one per line.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the check itself cannot run.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .map_err(backend("integrity_check"))?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(backend("integrity_check"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("integrity_check"))?;
        Ok(lines.join("\n"))
    }

    /// The schema version of the database (`PRAGMA user_version`), which is
    /// the number of migrations applied.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it cannot be read.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema_version(&self.lock())
    }

    /// The connection. A thread that panicked while holding it poisons the
    /// mutex; the connection itself is still sound (an open transaction is
    /// rolled back when its guard drops during unwinding, and again here
    /// for good measure), so the poison is cleared rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(conn) => conn,
            Err(poisoned) => {
                let conn = poisoned.into_inner();
                if !conn.is_autocommit() {
                    // If this fails, the next BEGIN fails and says why.
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.conn.clear_poison();
                conn
            }
        }
    }
}

impl EventStore for SqliteStore {
    /// Creates `meta.run_id` with `events` as its events 1..=n; its status is
    /// what the events imply (`running` after `run-started`), its creation
    /// time the first event's. `events` must not be empty. The lease is
    /// granted only if the run is `running` after them.
    fn create_run(
        &self,
        meta: &RunMeta,
        events: &[Event],
        owner: &Owner,
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        let run = meta.run_id.as_str();
        let encoded = events
            .iter()
            .map(|e| encode(run, e))
            .collect::<Result<Vec<_>, _>>()?;
        let (Some(first), Some(last)) = (encoded.first(), encoded.last()) else {
            return Err(StoreError::Backend(format!(
                "create_run (run {run}): a run is created with at least its `run-started` event"
            )));
        };
        let status = encoded
            .iter()
            .rev()
            .find_map(|e| e.status)
            .unwrap_or(RunStatus::Pending);
        let last_seq = to_sql_u64(events.len() as u64, "event count", run)?;
        let wake = wake.map(|w| to_sql_ts(w, run)).transpose()?;

        let mut conn = self.lock();
        let tx = begin_immediate(&mut conn, "create_run", run)?;
        if last_seq_of(&tx, run)?.is_some() {
            return Err(StoreError::Exists {
                run: run.to_owned(),
            });
        }
        tx.prepare_cached(&format!(
            "INSERT INTO runs (run_id, workflow_id, manifest, manifest_sha256, status, last_seq,
                               created_at, updated_at, workflow_digest,
                               lease_owner, lease_epoch, lease_expires_at, wake_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                     CASE WHEN ?5 = 'running' THEN ?10 END, 1,
                     CASE WHEN ?5 = 'running' THEN {NOW_US} + ?11 END, ?12)"
        ))
        .and_then(|mut s| {
            s.execute(params![
                run,
                meta.workflow_id.as_str(),
                meta.manifest,
                meta.manifest_sha256,
                status.as_str(),
                last_seq,
                first.at,
                last.at,
                meta.workflow_digest,
                owner.id,
                ttl_us(owner),
                wake,
            ])
        })
        .map_err(|e| unknown_workflow(e, meta, "create_run: insert the run"))?;
        if let Some(digest) = &meta.workflow_digest {
            insert_pin(&tx, run, 0, digest, first.at)?;
        }
        write_events(&tx, run, 0, &encoded)?;
        tx.commit()
            .map_err(backend_run("create_run: commit", run))?;
        Ok(Lease {
            run: meta.run_id.clone(),
            owner: owner.id.clone(),
            epoch: 1,
        })
    }

    fn acquire(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
    ) -> Result<Lease, StoreError> {
        let mut conn = self.lock();
        let tx = begin_immediate(&mut conn, "acquire", run.as_str())?;
        let lease = leases::acquire(&tx, run, owner, takeover)?;
        tx.commit()
            .map_err(backend_run("acquire: commit", run.as_str()))?;
        Ok(lease)
    }

    fn acquire_and_append(
        &self,
        run: &RunId,
        owner: &Owner,
        takeover: Takeover<'_>,
        expected: u64,
        events: &[Event],
        wake: Option<Timestamp>,
    ) -> Result<Lease, StoreError> {
        let id = run.as_str();
        let encoded = events
            .iter()
            .map(|e| encode(id, e))
            .collect::<Result<Vec<_>, _>>()?;
        let expected_sql = to_sql_u64(expected, "expected sequence number", id)?;
        let mut conn = self.lock();
        let tx = begin_immediate(&mut conn, "acquire_and_append", id)?;
        let lease = leases::acquire(&tx, run, owner, takeover)?;
        let append = Append {
            run,
            expected,
            epoch: lease.epoch,
            events,
            wake,
        };
        append_in(&tx, &append, expected_sql, &encoded)?;
        tx.commit()
            .map_err(backend_run("acquire_and_append: commit", id))?;
        Ok(lease)
    }

    fn renew(&self, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("renew leases: begin"))?;
        let held = leases::renew(&tx, owner)?;
        tx.commit().map_err(backend("renew leases: commit"))?;
        Ok(held)
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        leases::release(&self.lock(), lease)
    }

    fn release_all(&self, leases: &[Lease]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock();
        let tx = begin_immediate(&mut conn, "release leases", leases[0].run.as_str())?;
        for lease in leases {
            leases::release(&tx, lease)?;
        }
        tx.commit().map_err(backend_run(
            "release leases: commit",
            leases[0].run.as_str(),
        ))
    }

    fn claimable(&self, horizon: Timestamp) -> Result<Vec<Claimable>, StoreError> {
        leases::claimable(&self.lock(), horizon)
    }

    /// Appends in one `BEGIN IMMEDIATE` transaction. Appends are checked and
    /// written in order, so a batch may append to one run twice if the second
    /// append's `expected` counts the first one's events. An append without
    /// events only checks `expected`. The run's status becomes that after its
    /// last status-changing event; its update time the last event's.
    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError> {
        if appends.is_empty() {
            return Ok(());
        }
        // Serialize before taking the lock: the transaction only runs statements.
        let encoded = appends
            .iter()
            .map(|a| {
                let run = a.run.as_str();
                let events = a
                    .events
                    .iter()
                    .map(|e| encode(run, e))
                    .collect::<Result<Vec<_>, _>>()?;
                let expected = to_sql_u64(a.expected, "expected sequence number", run)?;
                Ok((a, expected, events))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;

        let mut conn = self.lock();
        let tx = begin_immediate(&mut conn, "append_batch", appends[0].run.as_str())?;
        for (append, expected, events) in &encoded {
            // Returning an error drops `tx`, which rolls back every earlier append.
            append_in(&tx, append, *expected, events)?;
        }
        tx.commit().map_err(backend("append_batch: commit"))
    }

    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let id = run.as_str();
        let mut conn = self.lock();
        // A read transaction: one snapshot for the run row and its events,
        // even while another process appends.
        let tx = conn.transaction().map_err(backend_run("load: begin", id))?;
        let (meta, last_seq) = meta_of(&tx, run)?;
        let events = read_events(&tx, id, 0, last_seq)?;
        Ok((meta, events))
    }

    fn load_page(
        &self,
        run: &RunId,
        after: u64,
        limit: usize,
    ) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let id = run.as_str();
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(backend_run("load_page: begin", id))?;
        let (meta, last_seq) = meta_of(&tx, run)?;
        // Past the end of the log there is nothing to read (and `after` may
        // not even fit SQLite's integers).
        let events = match i64::try_from(after) {
            Ok(after) if after < last_seq && limit > 0 => {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                read_events(&tx, id, after, last_seq.min(after.saturating_add(limit)))?
            }
            _ => Vec::new(),
        };
        Ok((meta, events))
    }

    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError> {
        let id = run.as_str();
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(backend_run("events_after: begin", id))?;
        let last_seq = last_seq_of(&tx, id)?.ok_or_else(|| not_found(id))?;
        // Past the end of the log there is nothing to read (and `after` may
        // not even fit SQLite's integers).
        match i64::try_from(after) {
            Ok(after) if after < last_seq => read_events(&tx, id, after, last_seq),
            _ => Ok(Vec::new()),
        }
    }

    /// One query per 500 runs, on the `runs` table's primary key.
    fn changed_since(&self, runs: &[(RunId, u64)]) -> Result<Vec<RunId>, StoreError> {
        let conn = self.lock();
        let mut changed = Vec::new();
        for chunk in runs.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT run_id, last_seq FROM runs WHERE run_id IN ({marks})");
            let mut statement = conn.prepare(&sql).map_err(backend("changed_since"))?;
            let ids = chunk.iter().map(|(run, _)| run.as_str());
            let rows = statement
                .query_map(rusqlite::params_from_iter(ids), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(backend("changed_since"))?;
            let last: std::collections::HashMap<String, i64> = rows
                .collect::<Result<_, _>>()
                .map_err(backend("changed_since"))?;
            for (run, seen) in chunk {
                let now = last.get(run.as_str()).copied().unwrap_or(0);
                if u64::try_from(now).unwrap_or(0) > *seen {
                    changed.push(run.clone());
                }
            }
        }
        Ok(changed)
    }
}

impl RunIndex for SqliteStore {
    fn runs(
        &self,
        filter: &RunFilter,
        after: Option<&RunCursor>,
        limit: usize,
    ) -> Result<RunPage, StoreError> {
        runs(&self.lock(), filter, after, limit)
    }

    fn holder(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached(&format!(
            "SELECT lease_owner FROM runs WHERE run_id = ?1 AND lease_expires_at > {NOW_US}"
        ))
        .and_then(|mut s| {
            rusqlite::OptionalExtension::optional(s.query_row([run.as_str()], |row| row.get(0)))
        })
        .map(Option::flatten)
        .map_err(backend_run("read the run's lease holder", run.as_str()))
    }

    fn put_trace(&self, run: &RunId, traceparent: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO run_traces (run_id, traceparent) VALUES (?1, ?2)
             ON CONFLICT (run_id) DO NOTHING",
        )
        .and_then(|mut s| s.execute(rusqlite::params![run.as_str(), traceparent]))
        .map(drop)
        .map_err(backend_run("record the run's trace", run.as_str()))
    }

    fn trace(&self, run: &RunId) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached("SELECT traceparent FROM run_traces WHERE run_id = ?1")
            .and_then(|mut s| {
                rusqlite::OptionalExtension::optional(s.query_row([run.as_str()], |row| row.get(0)))
            })
            .map_err(backend_run("read the run's trace", run.as_str()))
    }

    fn count_by_status(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status")
            .map_err(backend("count runs"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(backend("count runs"))?;
        let mut counts = Vec::new();
        for row in rows {
            let (status, count) = row.map_err(backend("count runs"))?;
            let status = RunStatus::parse(&status).ok_or_else(|| {
                StoreError::Backend(format!("a stored run has an unknown status `{status}`"))
            })?;
            counts.push((status, u64::try_from(count).unwrap_or_default()));
        }
        counts.sort_by_key(|(status, _)| *status);
        Ok(counts)
    }
}

/// Starts a write transaction holding SQLite's write lock from the start,
/// so nothing read inside it can be changed by another connection before
/// the commit.
fn begin_immediate<'c>(
    conn: &'c mut Connection,
    op: &'static str,
    run: &str,
) -> Result<Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend_run(op, run))
}

/// One append inside the caller's write transaction: checks its epoch and
/// expected sequence number against the run's head, then writes its
/// (encoded) events and updates the head.
fn append_in(
    tx: &Transaction<'_>,
    append: &Append<'_>,
    expected: i64,
    events: &[EncodedEvent],
) -> Result<(), StoreError> {
    let run = append.run.as_str();
    let head = head_of(tx, run)?.ok_or_else(|| not_found(run))?;
    let epoch = to_sql_u64(append.epoch, "lease epoch", run)?;
    if head.epoch != epoch {
        return Err(StoreError::Fenced {
            run: run.to_owned(),
            epoch: append.epoch,
            current: from_sql_u64(head.epoch, "lease epoch", run)?,
        });
    }
    if head.last_seq != expected {
        return Err(StoreError::Conflict {
            run: run.to_owned(),
            expected: append.expected,
            actual: from_sql_u64(head.last_seq, "last sequence number", run)?,
        });
    }
    let Some(last) = events.last() else {
        return Ok(());
    };
    write_events(tx, run, expected, events)?;
    let new_last = to_sql_u64(
        append.expected.saturating_add(events.len() as u64),
        "sequence number",
        run,
    )?;
    let status = events.iter().rev().find_map(|e| e.status);
    let wake = append.wake.map(|w| to_sql_ts(w, run)).transpose()?;
    update_head(
        tx,
        run,
        new_last,
        last.at,
        status,
        (head.wake_at != wake).then_some(wake),
    )
}

/// Updates a run's row after an append: its last sequence number and update
/// time; its status only when the append changes it (naming a column in the
/// `SET` list rewrites its index entries, one more page per commit, even
/// when the value stays), releasing the lease of a run that leaves
/// `running`; its wake time only when it changes (`Some(new)`).
fn update_head(
    tx: &Transaction<'_>,
    run: &str,
    last_seq: i64,
    at: i64,
    status: Option<RunStatus>,
    wake: Option<Option<i64>>,
) -> Result<(), StoreError> {
    const SQL: [&str; 4] = [
        "UPDATE runs SET last_seq = ?2, updated_at = ?3 WHERE run_id = ?1",
        "UPDATE runs SET last_seq = ?2, updated_at = ?3, wake_at = ?5 WHERE run_id = ?1",
        "UPDATE runs SET last_seq = ?2, updated_at = ?3, status = ?4,
             lease_owner = CASE WHEN ?4 = 'running' THEN lease_owner END,
             lease_expires_at = CASE WHEN ?4 = 'running' THEN lease_expires_at END
         WHERE run_id = ?1",
        "UPDATE runs SET last_seq = ?2, updated_at = ?3, status = ?4, wake_at = ?5,
             lease_owner = CASE WHEN ?4 = 'running' THEN lease_owner END,
             lease_expires_at = CASE WHEN ?4 = 'running' THEN lease_expires_at END
         WHERE run_id = ?1",
    ];
    let which = usize::from(wake.is_some()) + 2 * usize::from(status.is_some());
    let mut stmt = tx
        .prepare_cached(SQL[which])
        .map_err(backend_run("append_batch: update the run", run))?;
    let status = status.map(RunStatus::as_str);
    let wake = wake.flatten();
    let updated = match which {
        0 => stmt.execute(params![run, last_seq, at]),
        1 => stmt.execute(params![run, last_seq, at, rusqlite::types::Null, wake]),
        2 => stmt.execute(params![run, last_seq, at, status]),
        _ => stmt.execute(params![run, last_seq, at, status, wake]),
    };
    updated
        .map(drop)
        .map_err(backend_run("append_batch: update the run", run))
}

/// The run's metadata and its last sequence number, inside `tx`.
fn meta_of(tx: &rusqlite::Transaction<'_>, run: &RunId) -> Result<(RunMeta, i64), StoreError> {
    let id = run.as_str();
    let row = tx
        .prepare_cached(
            "SELECT workflow_id, manifest, manifest_sha256, last_seq, workflow_digest
             FROM runs WHERE run_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()
        })
        .map_err(backend_run("load: read the run", id))?;
    let (workflow_id, manifest, manifest_sha256, last_seq, workflow_digest) =
        row.ok_or_else(|| not_found(id))?;
    let meta = RunMeta {
        run_id: run.clone(),
        workflow_id: workflow_id_of(&workflow_id, id)?,
        manifest,
        manifest_sha256,
        workflow_digest,
    };
    Ok((meta, last_seq))
}
