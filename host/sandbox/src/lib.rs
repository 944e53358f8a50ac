//! The sandbox: runs weft steps as WebAssembly components under wasmtime.
//!
//! A [`Sandbox`] owns the one wasmtime [`Engine`](wasmtime::Engine) and the one
//! [`Linker`](wasmtime::component::Linker) of the process. It loads step
//! components ([`Sandbox::load_file`], [`Sandbox::load_bytes`]): it compiles
//! each distinct content once (optionally through an on-disk cache of
//! precompiled artifacts) after checking its imports against the import
//! policy (read from the binary, before compiling), checks that it implements the world
//! `weft:step/step@0.1.0` (`wit/step.wit`), and pre-instantiates it. A loaded
//! [`StepComponent`] then runs any number of attempts, each in a fresh store
//! and instance, under the step's [`Limits`](weft_core::Limits): a wall-clock
//! deadline (epoch interruption in guest code, a timer in blocking host
//! calls, see `deadline` and `executor`), fuel, a memory cap, payload
//! sizes, and the sizes of errors and resume labels (enforced as wasmtime
//! copies them out of the guest, see `outcome`).
//! Compiling can happen in a child process under CPU-time and memory limits
//! ([`Compiler::Isolated`], see `isolate`).
//! [`WorkflowSteps`] loads every component of a workflow up front and
//! implements [`StepRunner`](weft_core::StepRunner) for the runtimes.
//!
//! Every way an attempt can end is data in the [`StepReport`](weft_core::StepReport):
//! the guest's own `step-error` ([`FailureKind::Step`](weft_core::FailureKind)),
//! a trap or limit hit (deadline, fuel, memory, payload size, output that is
//! not JSON), or a failure of the host itself (instantiation). Nothing a guest
//! does makes the host panic.
//!
//! What this crate deliberately does NOT do:
//! - decide what runs next, retry, or check JSON Schemas: that is the
//!   runtimes' and `weft-core`'s job; the sandbox only checks that payloads
//!   are JSON and within their size limits;
//! - give steps filesystem, network or HTTP access, host environment
//!   variables or the host terminal: WASI 0.2 (cli, io, clocks, random,
//!   filesystem, sockets) is linked but virtualised, deny-by-default — no
//!   preopened directory, inert sockets, an empty environment, stdout and
//!   stderr discarded unless granted `stdio`, deterministic clocks and random
//!   numbers unless granted `clocks`/`random` (see `wasi`); `wasi:http` and
//!   anything else are refused at load;
//! - run the component model's async ABI: such components are refused at
//!   load with a message saying to build them synchronously;
//! - run attempts concurrently on one thread: an attempt occupies its
//!   calling thread until it returns, traps, hits its deadline or is
//!   interrupted (the guest runs on a fiber of the thread's own
//!   single-threaded async runtime, so that the deadline and the
//!   [`Interrupt`](weft_core::Interrupt) stop it in a blocking WASI call as
//!   in its own code; see `executor`);
//! - evict anything from its compile cache: a process loads a bounded set of
//!   components.

mod binary;
mod bindings;
mod cache;
mod component;
mod deadline;
mod error;
mod executor;
mod host;
mod imports;
mod isolate;
mod outcome;
mod sandbox;
mod stdio;
mod steps;
mod wasi;

pub use cache::LoadedFrom;
pub use component::StepComponent;
pub use error::{DeniedImport, SandboxError};
pub use imports::STEP_WORLD;
pub use isolate::{CompileLimits, Compiler, compile_in_child};
pub use sandbox::{Sandbox, SandboxConfig};
pub use steps::WorkflowSteps;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Sandbox>();
        assert_send_sync::<StepComponent>();
        assert_send_sync::<WorkflowSteps>();
    }
}
