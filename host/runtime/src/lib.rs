//! Runtimes that drive weft's one state machine ([`weft_core::RunState`]).
//!
//! - [`DefaultRuntime`] keeps a run's events in memory and calls the step
//!   runner directly, one step at a time, on the caller's thread.
//! - [`EventedRuntime`] appends every event to an [`weft_core::EventStore`]
//!   before it takes effect, hands steps to worker threads over a [`Bus`],
//!   and recovers runs left running by a crashed process.
//! - [`execute_step`] is the single place where a step attempt is executed
//!   and its report turned into events; every runtime calls it, so input
//!   validation, schema checks and failure mapping cannot drift apart.
//!
//! What this crate deliberately does NOT do: load manifests, compile
//! components or persist anything itself. A suspended [`Run`] serializes to
//! a [`SavedRun`] (its events), from which any process can rebuild and resume it.

mod default;
mod error;
mod evented;
mod memory_store;
mod worker;

pub use default::{DefaultRuntime, NoObserver, Run, RunObserver, SavedRun};
pub use error::RuntimeError;
pub use evented::{Bus, Done, EventedRuntime, InProcessBus, Registered, WorkItem};
pub use memory_store::MemoryStore;
pub use worker::{Executed, execute_step};

#[cfg(test)]
mod tests;
