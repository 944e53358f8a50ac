//! The SQLite implementation of [`weft_core::EventStore`]: the durable,
//! append-only event log per run, with leases (one owner per run, fenced
//! appends) and each run's wake time.
//!
//! [`SqliteStore`] keeps everything in one database file (WAL mode) that
//! several weft processes may share:
//!
//! - `events` is the log itself and the only source of truth: each event is
//!   stored as its serde JSON under `(run_id, seq)`, seq counting from 1.
//! - `runs` caches what the log implies (status, last sequence number,
//!   first and last event time), so listing runs needs no replay. Its
//!   `last_seq` is also the optimistic-concurrency check of every append.
//!   It also holds the run's lease (owner, epoch, expiry by the database's
//!   clock; every append is fenced by the epoch) and its wake time, so a
//!   recovering host finds the runs it may take with one indexed query
//!   ([`weft_core::EventStore::claimable`]).
//! - `step_results` is a projection of the step events for inspection
//!   ([`SqliteStore::step_results`]); see [`StepResult`] for what it cannot
//!   know.
//! - `workflows` holds each distinct workflow lock once, by digest; a run
//!   references the lock it is pinned to, and `run_pins` keeps the history of
//!   its pins ([`SqliteStore::put_workflow`], [`SqliteStore::repin`]).
//!
//! Every write is one `BEGIN IMMEDIATE` transaction; the derived tables are
//! updated in the same transaction as the events they derive from, so they
//! never disagree with the log. [`EventStore::append_batch`] appends to many
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

mod leases;
mod migrate;
mod projection;
mod read_only;
mod rows;
mod sql;
mod store;
mod workflows;

pub use projection::StepResult;
pub use store::{Durability, SqliteStore};
pub use workflows::Pin;

#[cfg(test)]
mod tests;
