//! The SQLite implementation of the store contract ([`weft_core::Store`]):
//! the durable, append-only event log per run with leases (one owner per
//! run, fenced appends) and each run's wake time, the workflow registry and
//! the run index.
//!
//! [`SqliteStore`] keeps everything in one database file (WAL mode) that
//! several weft processes may share:
//!
//! - `events` is the log itself and the only source of truth: each event is
//!   stored as its serde JSON under `(run_id, seq)`, seq counting from 1.
//! - `runs` caches what the log implies (status, last sequence number,
//!   first and last event time), so listing runs needs no replay (keyset
//!   paging on creation time and run id). Its `last_seq` is also the
//!   optimistic-concurrency check of every append. It also holds the run's
//!   lease (owner, epoch, expiry by the database's clock; every append is
//!   fenced by the epoch), its wake time, so a recovering host finds the
//!   runs it may take with one indexed query
//!   ([`weft_core::EventStore::claimable`]), and its tenant (`default` until
//!   weft has tenants).
//! - `workflows` holds each distinct workflow lock once, by digest; a run
//!   references the lock it is pinned to, and `run_pins` keeps the history of
//!   its pins ([`weft_core::WorkflowRegistry`]).
//!
//! There is no read model of steps: what a run's steps did is its events
//! replayed through [`weft_core::RunState`], the same function for every
//! store.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction; the run's row is
//! updated in the same transaction as the events it derives from, so they
//! never disagree. [`EventStore::append_batch`] appends to many
//! runs in one transaction and so shares one commit (one fsync) between
//! them: that is the runtime's group-commit primitive.
//!
//! The schema lives in `migrations/*.sql`, applied in order and tracked with
//! `PRAGMA user_version` (see [`SqliteStore::open`]).
//!
//! What this crate deliberately does NOT do: interpret events beyond a run's
//! status (it never validates transitions; that is
//! [`weft_core::RunState::apply`]'s job before an event is appended), delete
//! runs, or fire timers.
//!
//! [`EventStore::append_batch`]: weft_core::EventStore::append_batch

mod encode;
mod leases;
mod migrate;
mod read_only;
mod rows;
mod sql;
mod store;
mod workflows;

pub use store::{Durability, SqliteStore};

#[cfg(test)]
mod tests;
