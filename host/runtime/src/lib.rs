//! Runtimes that drive weft's one state machine ([`weft_core::RunState`]).
//!
//! - [`DefaultRuntime`] drives a run in memory and calls the step runner
//!   directly, one step at a time, on the caller's thread; it records the
//!   run in an [`weft_core::EventStore`] where the run enters and leaves the
//!   process (claims are exactly-once; it is not crash-durable in between).
//! - [`EventedRuntime`] appends every event to an [`weft_core::EventStore`]
//!   before it takes effect, hands steps to worker threads over a [`Bus`],
//!   and recovers runs left running by a crashed process.
//! - [`Runtime`] is what callers use: one interface over both
//!   configurations ([`RuntimeKind`]), taking a [`Request`] (start,
//!   rerun, resume, cancel, recover) and answering with the run's result.
//! - [`execute_step`] is the single place where a step attempt is executed
//!   and its report turned into events; every runtime calls it, so input
//!   validation, schema checks and failure mapping cannot drift apart.
//!
//! What this crate deliberately does NOT do: load manifests, compile
//! components, or know how a store persists (both runtimes see only the
//! [`weft_core::EventStore`] trait; [`MemoryStore`] is the non-durable one).

mod clock;
mod default;
mod error;
mod evented;
mod lease;
mod memory_store;
mod runtime;
mod stored;
pub mod trace_ids;
mod worker;

pub use clock::SystemClock;
pub use default::{DefaultRuntime, Run};
pub use error::RuntimeError;
pub use evented::{Bus, Done, EventedOptions, EventedRuntime, InProcessBus, WorkItem};
pub use lease::{LeaseOptions, owner_id, owner_is_gone};
pub use memory_store::MemoryStore;
pub use runtime::{Answer, NoObserver, Registered, Request, RunObserver, Runtime, RuntimeKind};
pub use worker::{Executed, GUEST_LOG_TARGET, execute_step};

#[cfg(test)]
mod tests;
