//! The PostgreSQL implementation of the store contract ([`weft_core::Store`]):
//! the event log per run with leases (one owner per run, fenced appends)
//! and wake times, the workflow registry and the run index, in one schema
//! of a PostgreSQL database that weft processes on several hosts share.
//!
//! [`PostgresStore`] has exactly the SQLite store's tables and semantics
//! (`weft-store-sqlite`; one conformance suite, `tests/all/store_contract.rs`,
//! runs against both):
//!
//! - `events` is the log itself and the only source of truth: each event is
//!   stored as its serde JSON text under `(run_id, seq)`, seq counting from 1.
//! - `runs` caches what the log implies (status, last sequence number,
//!   first and last event time) for listing runs without replay (keyset
//!   paging on creation time and run id), and holds the run's lease (owner,
//!   epoch, expiry by the DATABASE's clock: `clock_timestamp()`, never a
//!   host's), its wake time (found by [`weft_core::EventStore::claimable`]
//!   with one index range) and its tenant (`default` until weft has
//!   tenants).
//! - `workflows`, `run_pins` and `deployments` are the workflow registry;
//!   `run_traces` the trace each run continues.
//!
//! Every write that checks something locks the run's row (`SELECT … FOR
//! UPDATE`) in the transaction that writes: an append's lease epoch (the
//! fencing token) and expected sequence number are checked under the same
//! lock as its events are written, whichever host writes.
//! [`EventStore::append_batch`] appends to many runs in one transaction, all
//! or nothing, with every event of the batch in one statement (group
//! commit: four round trips whatever the batch's size).
//!
//! **Where the store lives.** A URL, `postgres://user@host:port/database`,
//! names the database; its `schema` parameter (`?schema=NAME`, default
//! `weft`) the schema holding the tables, so that several stores (tests,
//! tenants of a shared database) live side by side in one database and a
//! store is dropped with its schema ([`PostgresStore::drop_schema`]). The
//! client's own parameters (`connect_timeout`, `application_name`,
//! `options`, …) are accepted too; connections are made without TLS (a
//! loopback or private network).
//!
//! **Migrations** live in `migrations/*.sql`, applied at
//! [`PostgresStore::open`], every pending one in one transaction under an
//! advisory lock on the schema's name (see `migrate`): hosts opening a fresh
//! store at once apply each migration once.
//!
//! **Connections.** A small pool (r2d2, at most 8 connections, each keeping
//! its prepared statements) of the synchronous `postgres` client: the
//! store contract is synchronous and its callers are threads (the evented
//! runtime's orchestrator, the lease keeper, the server's blocking pool).
//!
//! **Lost connections** (a restarted server, killed backends) are replaced
//! and the operation retried with backoff where that is safe (see
//! [`PostgresStore`]); **wake-up hints** go through `LISTEN/NOTIFY` (see
//! `notify` and [`PostgresStore::wait_for_hint`]).
//!
//! What this crate deliberately does NOT do: interpret events beyond a run's
//! status (it never validates transitions; that is
//! [`weft_core::RunState::apply`]'s job before an event is appended), delete
//! runs, fire timers (a hint only says where to look; hosts still poll
//! `claimable`), resolve a commit whose connection was lost (an error), or
//! speak TLS.
//!
//! [`EventStore::append_batch`]: weft_core::EventStore::append_batch

mod append;
mod encode;
mod index;
mod leases;
mod location;
mod migrate;
mod notify;
mod pool;
mod sql;
mod store;
mod workflows;

pub use location::{DEFAULT_SCHEMA, is_postgres_url};
pub use store::PostgresStore;

#[cfg(test)]
mod tests;
