//! [`PostgresStore`]: opening a store, and the [`EventStore`] operations.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use postgres::GenericClient;
use weft_core::{
    Append, Claimable, Event, EventStore, Lease, Owner, RunId, RunMeta, RunStatus, StoreError,
    Takeover, Timestamp,
};

use crate::append::{Encoded, append_all, lock_heads};
use crate::encode::{EncodedEvent, encode};
use crate::leases::{self, NOW, ttl_us};
use crate::location::Location;
use crate::migrate::{SCHEMA_VERSION, check, migrate, schema_version};
use crate::notify::Listener;
use crate::pool::{Conn, Generation, Loss, Manager, Session};
use crate::sql::{backend_run, describe, from_sql_u64, not_found, to_sql_ts, to_sql_u64};
use crate::workflows::{insert_pin, unknown_workflow};

/// The most connections one store opens at once.
const POOL_SIZE: u32 = 8;

/// How long an operation waits for a connection (all in use, or the
/// database unreachable: the pool keeps trying to connect meanwhile)
/// before it fails.
const CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// How many times an operation whose connection was lost runs again (on
/// another connection) before its error is returned.
const RETRIES: u32 = 6;

/// The pause before the second retry (the first goes at once, on a
/// checked or new connection); each further pause doubles, up to
/// [`MAX_BACKOFF`]: at most 0.6 s of pauses in all, besides the wait for a
/// connection ([`CONNECTION_WAIT`], during which the pool keeps trying to
/// connect: a restarting server).
const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// The longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The PostgreSQL event store: the whole store contract ([`weft_core::Store`])
/// in one schema of one database, shared by any number of weft processes on
/// any number of hosts.
///
/// Each operation takes a connection from the store's pool (at most
/// 8, opened as needed and kept; a connection the server
/// closed is dropped and replaced at the next use) and runs one statement
/// or one short transaction on it. Writes that check something first lock
/// the run's row (`SELECT … FOR UPDATE`) in the transaction that writes, so
/// the lease epoch and the expected sequence number are checked and the
/// events written under the same lock, whichever host writes.
///
/// **Lost connections** (PostgreSQL restarted, backends killed) are
/// replaced, and the operation runs again on another connection, up to
/// 6 times with exponential backoff, when that is safe: reads,
/// the statements that commit alone (each is idempotent: renewing or
/// releasing leases, storing a workflow lock, a deployment, a trace), and
/// transactions that lost their connection before `COMMIT` was sent
/// (nothing was written). A connection lost DURING the commit leaves the
/// outcome unknown: that is returned as [`StoreError::Backend`], and the
/// runtime reloads the run (its next append finds the log as it is).
///
/// **Wake-up hints.** A transaction that makes a run claimable (a lease
/// released while the run is running) notifies the channel
/// `weft_<schema>`; [`PostgresStore::wait_for_hint`] waits for such a
/// notification on a dedicated connection (`LISTEN`). See
/// [`EventStore::wait_for_hint`].
pub struct PostgresStore {
    pool: r2d2::Pool<Manager>,
    location: Location,
    pub(crate) generation: Generation,
    /// The channel of the store's hints ([`crate::notify::channel`]).
    channel: String,
    /// The `LISTEN` connection, opened by the first wait for a hint.
    listener: Mutex<Option<Listener>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location.shown)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the store at `url` (`postgres://user@host:port/database`, with
    /// `?schema=NAME` to choose the schema, `weft` by default), creating
    /// the schema and its tables on first use and migrating an older one.
    ///
    /// # Errors
    /// [`StoreError::Backend`], naming the URL without its password, when
    /// the URL is invalid, the database cannot be reached, the schema is
    /// newer than this code, or a migration fails.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let location = Location::parse(url)?;
        let manager = Manager {
            location: location.clone(),
            generation: Generation::default(),
        };
        let mut conn = manager.open().map_err(|e| cannot_connect(&location, &e))?;
        migrate(conn.split().0, &location)?;
        Ok(Self::pooled(manager, location))
    }

    /// Opens the store at `url` for reading only: nothing is created or
    /// migrated, and every connection is read-only
    /// (`default_transaction_read_only`), so every write through this
    /// store fails with [`StoreError::Backend`]. `None` when the schema
    /// holds no store (nothing was ever written there).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid, the database cannot
    /// be reached, or the store's schema is not the one this code writes
    /// (newer: written by a newer weft; older: it needs the migration a
    /// writable [`PostgresStore::open`] applies).
    pub fn open_read_only(url: &str) -> Result<Option<Self>, StoreError> {
        let mut location = Location::parse(url)?;
        let options = location.config.get_options().unwrap_or_default().to_owned();
        location
            .config
            .options(&format!("{options} -c default_transaction_read_only=on"));
        let manager = Manager {
            location: location.clone(),
            generation: Generation::default(),
        };
        let mut conn = manager.open().map_err(|e| cannot_connect(&location, &e))?;
        let Some(version) = schema_version(conn.split().0, &location)? else {
            return Ok(None);
        };
        if !check(Some(version), &location.shown)? {
            return Err(StoreError::Backend(format!(
                "{} has schema version {version}, older than this weft's {SCHEMA_VERSION}; it \
                 needs a migration, which a read-only open cannot apply (any weft command that \
                 writes, e.g. `weft recover`, applies it)",
                location.shown
            )));
        }
        Ok(Some(Self::pooled(manager, location)))
    }

    /// The lease epoch each of `run`'s events was appended under, in log
    /// order (0 for events stored before epochs were recorded): an audit of
    /// fencing — a run's epochs never decrease unless an event was appended
    /// under a lease already taken over.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub fn event_epochs(&self, run: &RunId) -> Result<Vec<u64>, StoreError> {
        let id = run.as_str();
        let rows = self.retrying("read the events' epochs", Some(id), |conn| {
            conn.session()
                .query(
                    "SELECT epoch FROM events WHERE run_id = $1 ORDER BY seq",
                    &[&id],
                )
                .map_err(backend_run("read the events' epochs", id))
        })?;
        rows.iter()
            .map(|row| from_sql_u64(row.get(0), "lease epoch", id))
            .collect()
    }

    /// Drops the schema `url` names and everything in it (every run of the
    /// store): for tests and throwaway stores. Dropping a schema that does
    /// not exist does nothing.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid, the database cannot
    /// be reached or the schema cannot be dropped.
    pub fn drop_schema(url: &str) -> Result<(), StoreError> {
        let location = Location::parse(url)?;
        let manager = Manager {
            location: location.clone(),
            generation: Generation::default(),
        };
        let mut conn = manager.open().map_err(|e| cannot_connect(&location, &e))?;
        conn.split()
            .0
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                location.schema_ident()
            ))
            .map_err(|e| {
                StoreError::Backend(format!(
                    "{}: drop the schema: {}",
                    location.shown,
                    describe(&e)
                ))
            })
    }

    /// The schema holding the store.
    pub fn schema(&self) -> &str {
        &self.location.schema
    }

    /// The store's schema version, which is the number of migrations
    /// applied.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it cannot be read.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let version = self.retrying("read the schema version", None, |conn| {
            schema_version(conn.split().0, &self.location)
        })?;
        Ok(version.unwrap_or(0))
    }

    fn pooled(manager: Manager, location: Location) -> Self {
        let generation = manager.generation.clone();
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            // A checkout costs no round trip: a connection that failed is
            // known as closed (`has_broken`) and replaced.
            .test_on_check_out(false)
            .connection_timeout(CONNECTION_WAIT)
            .build_unchecked(manager);
        Self {
            pool,
            channel: crate::notify::channel(&location.schema),
            location,
            generation,
            listener: Mutex::new(None),
        }
    }

    /// Waits up to `timeout` for a hint that a run became claimable in
    /// this store (see [`EventStore::wait_for_hint`]): `true` when one came
    /// (or had come since the previous wait returned), `false` when the
    /// time passed without one.
    ///
    /// The first wait opens a connection of its own and `LISTEN`s on it;
    /// later waits reuse it, so a hint sent between two waits is not
    /// missed. A hint sent before the first wait began listening is not
    /// seen, nor one sent while the connection was being replaced (it was
    /// lost: the wait then returns `false` after `timeout`, and the next
    /// one reconnects): a hint saves latency, polling finds every run.
    /// Waits are served one at a time.
    pub fn wait_for_hint(&self, timeout: Duration) -> bool {
        let mut listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::notify::wait(&mut listener, &self.location, &self.channel, timeout)
    }

    /// Starts listening for hints now if this store is not listening (or
    /// its listening connection was lost): every hint sent after this
    /// returns is seen by the next [`PostgresStore::wait_for_hint`]. The
    /// first wait listens by itself; this is for a caller that must not
    /// miss a hint sent before its first wait. One round trip.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be reached.
    pub fn listen(&self) -> Result<(), StoreError> {
        let mut listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::notify::listen(&mut listener, &self.location, &self.channel)
            .map_err(|e| cannot_connect(&self.location, &e))
    }

    /// A connection from the pool, for the operation `op` (on `run`).
    fn get(
        &self,
        op: &'static str,
        run: Option<&str>,
    ) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool.get().map_err(|e| {
            let on = run.map(|run| format!(" (run {run})")).unwrap_or_default();
            StoreError::Backend(format!(
                "{op}{on}: no connection to {}: {e}",
                self.location.shown
            ))
        })
    }

    /// A connection from the pool known to be usable in the current
    /// generation: after a connection was lost, the others opened before
    /// are checked (and the dead ones dropped) before use.
    fn checkout(
        &self,
        op: &'static str,
        run: Option<&str>,
    ) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let current = self.generation.current();
        for _ in 0..POOL_SIZE {
            let mut conn = self.get(op, run)?;
            if conn.check(current) {
                return Ok(conn);
            }
        }
        self.get(op, run)
    }

    /// Runs `body` on a connection from the pool and, if the connection
    /// was lost before anything could have been committed, again on
    /// another one, up to [`RETRIES`] times with exponential backoff.
    ///
    /// `body` must be a read, ONE statement that commits alone and may be
    /// applied twice (an idempotent write), or one transaction
    /// ([`in_transaction`]): a loss while committing is not retried.
    pub(crate) fn retrying<T>(
        &self,
        op: &'static str,
        run: Option<&str>,
        mut body: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut retries = 0;
        let mut backoff = Duration::ZERO;
        loop {
            let mut conn = self.checkout(op, run)?;
            let result = body(&mut conn);
            let Some(loss) = conn.loss() else {
                return result;
            };
            // Dropped, not pooled again (`Manager::has_broken`); the others
            // are suspect.
            drop(conn);
            self.generation.lost();
            match (result, loss) {
                (Err(_), Loss::Before) if retries < RETRIES => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    retries += 1;
                }
                (Err(StoreError::Backend(e)), Loss::InCommit) => {
                    return Err(StoreError::Backend(format!(
                        "{e} (the connection was lost while committing: the write may or may \
                         not have been committed; read the run again)"
                    )));
                }
                (result, _) => return result,
            }
        }
    }
}

fn cannot_connect(location: &Location, e: &postgres::Error) -> StoreError {
    StoreError::Backend(format!(
        "cannot connect to PostgreSQL at {}: {}",
        location.shown,
        describe(e)
    ))
}

/// Runs `body` in a transaction on `conn` and commits it; an error rolls
/// everything back. A lost connection is noted on `conn` (before or
/// during the commit: see [`PostgresStore::retrying`]).
pub(crate) fn in_transaction<T>(
    conn: &mut Conn,
    op: &'static str,
    run: &str,
    body: impl FnOnce(&mut Session<'_, postgres::Transaction<'_>>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let (mut tx, statements) = conn.begin().map_err(backend_run(op, run))?;
    let value = body(&mut Session::new(&mut tx, statements))?;
    statements.commit(tx).map_err(backend_run(op, run))?;
    Ok(value)
}

fn encode_all(run: &str, events: &[Event]) -> Result<Vec<EncodedEvent>, StoreError> {
    events.iter().map(|e| encode(run, e)).collect()
}

impl EventStore for PostgresStore {
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
        let encoded = encode_all(run, events)?;
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
        self.retrying("create_run", Some(run), |conn| {
            in_transaction(conn, "create_run", run, |tx| {
                let inserted = tx
                    .execute(
                        &format!(
                        "INSERT INTO runs (run_id, workflow_id, manifest, manifest_sha256, status,
                                           last_seq, created_at, updated_at, workflow_digest,
                                           lease_owner, lease_epoch, lease_expires_at, wake_at)
                         VALUES ($1, $2, $3, $4, $5::text, $6, $7, $8, $9,
                                 CASE WHEN $5::text = 'running' THEN $10::text END, 1,
                                 CASE WHEN $5::text = 'running'
                                      THEN {NOW} + $11::bigint * interval '1 microsecond' END,
                                 $12)
                         ON CONFLICT (run_id) DO NOTHING"
                    ),
                        &[
                            &run,
                            &meta.workflow_id.as_str(),
                            &meta.manifest,
                            &meta.manifest_sha256,
                            &status.as_str(),
                            &last_seq,
                            &first.at,
                            &last.at,
                            &meta.workflow_digest,
                            &owner.id,
                            &ttl_us(owner),
                            &wake,
                        ],
                    )
                    .map_err(|e| unknown_workflow(e, meta, "create_run: insert the run"))?;
                if inserted == 0 {
                    return Err(StoreError::Exists {
                        run: run.to_owned(),
                    });
                }
                if let Some(digest) = &meta.workflow_digest {
                    insert_pin(tx, run, 0, digest, first.at)?;
                }
                insert_events(tx, run, &encoded)
            })
        })?;
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
        let id = run.as_str();
        self.retrying("acquire", Some(id), |conn| {
            in_transaction(conn, "acquire", id, |tx| {
                leases::acquire(tx, run, owner, takeover).map(|(lease, _)| lease)
            })
        })
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
        let encoded = encode_all(id, events)?;
        let expected_sql = to_sql_u64(expected, "expected sequence number", id)?;
        self.retrying("acquire_and_append", Some(id), |conn| {
            in_transaction(conn, "acquire_and_append", id, |tx| {
                let (lease, head) = leases::acquire(tx, run, owner, takeover)?;
                let append = Append {
                    run,
                    expected,
                    epoch: lease.epoch,
                    events,
                    wake,
                };
                let mut heads = [(id.to_owned(), head)].into_iter().collect();
                append_all(
                    tx,
                    &mut heads,
                    &[Encoded {
                        append: &append,
                        expected: expected_sql,
                        events: encoded.clone(),
                    }],
                    &self.channel,
                )?;
                Ok(lease)
            })
        })
    }

    fn renew(&self, owner: &Owner) -> Result<Vec<(RunId, u64)>, StoreError> {
        self.retrying("renew leases", None, |conn| {
            leases::renew(&mut conn.session(), owner)
        })
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.release_all(std::slice::from_ref(lease))
    }

    /// One statement for all of them.
    fn release_all(&self, leases: &[Lease]) -> Result<(), StoreError> {
        let Some(first) = leases.first() else {
            return Ok(());
        };
        let run = first.run.as_str();
        self.retrying("release leases", Some(run), |conn| {
            leases::release(&mut conn.session(), leases, &self.channel)
        })
    }

    /// Appends in one transaction: the runs' rows are locked in run id
    /// order, every append is checked against them in order, then every
    /// event of the batch is written by one statement. Four round trips
    /// (begin, lock, write, commit) whatever the batch's size.
    fn append_batch(&self, appends: &[Append<'_>]) -> Result<(), StoreError> {
        let Some(first) = appends.first() else {
            return Ok(());
        };
        let first = first.run.as_str();
        // Serialize before taking a connection: the transaction only runs
        // statements.
        let encoded = appends
            .iter()
            .map(|append| {
                let run = append.run.as_str();
                Ok(Encoded {
                    append,
                    expected: to_sql_u64(append.expected, "expected sequence number", run)?,
                    events: encode_all(run, append.events)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut runs: Vec<&str> = appends.iter().map(|a| a.run.as_str()).collect();
        runs.sort_unstable();
        runs.dedup();
        self.retrying("append_batch", Some(first), |conn| {
            in_transaction(conn, "append_batch", first, |tx| {
                let mut heads = lock_heads(tx, &runs)?;
                append_all(tx, &mut heads, &encoded, &self.channel)
            })
        })
    }

    fn load(&self, run: &RunId) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let id = run.as_str();
        self.retrying("load", Some(id), |conn| {
            let mut db = conn.session();
            let (meta, last_seq) = meta_of(&mut db, run)?;
            let events = read_events(&mut db, id, 0, last_seq)?;
            Ok((meta, events))
        })
    }

    fn load_page(
        &self,
        run: &RunId,
        after: u64,
        limit: usize,
    ) -> Result<(RunMeta, Vec<Event>), StoreError> {
        let id = run.as_str();
        self.retrying("load_page", Some(id), |conn| {
            let mut db = conn.session();
            let (meta, last_seq) = meta_of(&mut db, run)?;
            // Past the end of the log there is nothing to read (and `after`
            // may not even fit a bigint).
            let events = match i64::try_from(after) {
                Ok(after) if after < last_seq && limit > 0 => {
                    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                    read_events(
                        &mut db,
                        id,
                        after,
                        last_seq.min(after.saturating_add(limit)),
                    )?
                }
                _ => Vec::new(),
            };
            Ok((meta, events))
        })
    }

    fn events_after(&self, run: &RunId, after: u64) -> Result<Vec<Event>, StoreError> {
        let id = run.as_str();
        self.retrying("events_after", Some(id), |conn| {
            let mut db = conn.session();
            let last_seq: i64 = db
                .query_opt("SELECT last_seq FROM runs WHERE run_id = $1", &[&id])
                .map_err(backend_run("read the run's last sequence number", id))?
                .ok_or_else(|| not_found(id))?
                .get(0);
            match i64::try_from(after) {
                Ok(after) if after < last_seq => read_events(&mut db, id, after, last_seq),
                _ => Ok(Vec::new()),
            }
        })
    }

    /// One query for all of them, on the `runs` table's primary key.
    fn changed_since(&self, runs: &[(RunId, u64)]) -> Result<Vec<RunId>, StoreError> {
        let Some((first, _)) = runs.first() else {
            return Ok(Vec::new());
        };
        let ids: Vec<&str> = runs.iter().map(|(run, _)| run.as_str()).collect();
        let rows = self.retrying("changed_since", Some(first.as_str()), |conn| {
            conn.session()
                .query(
                    "SELECT run_id, last_seq FROM runs WHERE run_id = ANY($1::text[])",
                    &[&ids],
                )
                .map_err(backend_run("changed_since", first.as_str()))
        })?;
        let last: std::collections::HashMap<String, i64> = rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        Ok(runs
            .iter()
            .filter(|(run, seen)| {
                let now = last.get(run.as_str()).copied().unwrap_or(0);
                u64::try_from(now).unwrap_or(0) > *seen
            })
            .map(|(run, _)| run.clone())
            .collect())
    }

    fn claimable(&self, horizon: Timestamp) -> Result<Vec<Claimable>, StoreError> {
        self.retrying("claimable runs", None, |conn| {
            leases::claimable(&mut conn.session(), horizon)
        })
    }

    /// Waits on the store's `LISTEN` connection: see
    /// [`PostgresStore::wait_for_hint`].
    fn wait_for_hint(&self, timeout: Duration) -> bool {
        PostgresStore::wait_for_hint(self, timeout)
    }
}

/// Inserts `events` as the first events of `run`, in one statement, under
/// the first lease's epoch (1).
fn insert_events<C: GenericClient>(
    tx: &mut Session<'_, C>,
    run: &str,
    events: &[EncodedEvent],
) -> Result<(), StoreError> {
    let seqs: Vec<i64> = (1..).take(events.len()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.name).collect();
    let ats: Vec<i64> = events.iter().map(|e| e.at).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
    tx.execute(
        "INSERT INTO events (run_id, seq, type, at, payload, epoch)
         SELECT $1, e.*, 1 FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[]) AS e",
        &[&run, &seqs, &types, &ats, &payloads],
    )
    .map(drop)
    .map_err(backend_run("insert events", run))
}

/// The run's metadata and its last sequence number.
fn meta_of<C: GenericClient>(
    db: &mut Session<'_, C>,
    run: &RunId,
) -> Result<(RunMeta, i64), StoreError> {
    let id = run.as_str();
    let row = db
        .query_opt(
            "SELECT workflow_id, manifest, manifest_sha256, last_seq, workflow_digest
             FROM runs WHERE run_id = $1",
            &[&id],
        )
        .map_err(backend_run("load: read the run", id))?
        .ok_or_else(|| not_found(id))?;
    let meta = RunMeta {
        run_id: run.clone(),
        workflow_id: crate::index::workflow_id_of(row.get(0), id)?,
        manifest: row.get(1),
        manifest_sha256: row.get(2),
        workflow_digest: row.get(4),
    };
    Ok((meta, row.get(3)))
}

/// Reads and parses the events `after + 1 ..= last_seq` of `run` (the
/// run's last event, or the last of a page), checking that none is missing.
///
/// No transaction is needed for one snapshot of the run's row and its
/// events: events are never changed once written, and the row's
/// `last_seq` is committed with them, so every event up to a `last_seq`
/// read before is there to read.
fn read_events<C: GenericClient>(
    db: &mut Session<'_, C>,
    run: &str,
    after: i64,
    last_seq: i64,
) -> Result<Vec<Event>, StoreError> {
    let rows = db
        .query(
            "SELECT seq, payload FROM events
             WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            &[&run, &after, &last_seq],
        )
        .map_err(backend_run("read events", run))?;
    let mut events = Vec::with_capacity(rows.len());
    let mut next = after + 1;
    for row in rows {
        let seq: i64 = row.get(0);
        if seq != next {
            return Err(StoreError::Backend(format!(
                "run {run}: the event log is missing event {next} (the next stored one is {seq})"
            )));
        }
        let event = serde_json::from_str(row.get(1)).map_err(|e| {
            StoreError::Backend(format!("run {run}: stored event {seq} does not parse: {e}"))
        })?;
        events.push(event);
        next += 1;
    }
    if next - 1 != last_seq {
        return Err(StoreError::Backend(format!(
            "run {run}: the run's last event is {last_seq} but the log ends at {}",
            next - 1
        )));
    }
    Ok(events)
}
