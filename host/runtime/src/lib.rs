//! Runtimes that drive weft's one state machine ([`weft_core::RunState`]).
//!
//! - [`DefaultRuntime`] keeps a run's events in memory and calls the step
//!   runner directly, one step at a time, on the caller's thread.
//! - [`execute_step`] is the single place where a step attempt is executed
//!   and its report turned into events; every runtime calls it, so input
//!   validation, schema checks and failure mapping cannot drift apart.
//!
//! What this crate deliberately does NOT do: load manifests, compile
//! components or persist anything itself. A suspended [`Run`] serializes to
//! a [`SavedRun`] (its events), from which any process can rebuild and resume it.

mod default;
mod error;
mod worker;

pub use default::{DefaultRuntime, NoObserver, Run, RunObserver, SavedRun};
pub use error::RuntimeError;
pub use worker::{Executed, execute_step};

#[cfg(test)]
mod tests;
