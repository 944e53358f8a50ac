//! Why a component cannot be loaded (or a sandbox created).
//!
//! Failures of a step *attempt* are not errors of this crate: they are
//! [`weft_core::StepError`]s inside the [`weft_core::StepReport`].

use std::path::PathBuf;

use weft_core::StepId;

/// Why the sandbox could not be created or a component could not be loaded.
/// `component` fields name the component: its path for files, the name given
/// to [`crate::Sandbox::load_bytes`] otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasmtime engine: {reason}")]
    Engine {
        /// What wasmtime said.
        reason: String,
    },

    /// The component file cannot be read.
    #[error("cannot read component `{}`: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },

    /// The component file is larger than the sandbox accepts
    /// ([`crate::SandboxConfig::max_component_bytes`]); it was not read.
    #[error(
        "component `{}` is {size} bytes, more than the {limit} bytes a component may have (the limit is the sandbox's `max_component_bytes`)",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least; a file that grows while read is cut there).
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A pinned component (by the SHA-256 of its bytes) is neither in the
    /// compile cache nor at its recorded path.
    #[error(
        "component `{}` (sha256 {sha256}) is neither in the compile cache nor at its path: {problem}",
        path.display()
    )]
    Pinned {
        /// The path recorded when the workflow was locked.
        path: PathBuf,
        /// The recorded digest.
        sha256: String,
        /// What is at the path instead.
        problem: String,
    },

    /// The bytes are neither a WebAssembly component nor a core module.
    #[error("`{component}` is not a WebAssembly component or module")]
    NotWasm {
        /// The component.
        component: String,
    },

    /// A core module could not be turned into a component (typically: it was
    /// not built with wit-bindgen, so it carries no component-type metadata).
    #[error(
        "`{component}` is a core WebAssembly module that cannot be turned into a component \
         (build it with wit-bindgen for world `weft:step/step@0.1.0`): {reason}"
    )]
    Encode {
        /// The component.
        component: String,
        /// What wit-component said.
        reason: String,
    },

    /// Compiling the component went past a limit of the compiler process
    /// (see [`crate::Compiler::Isolated`]).
    #[error(
        "cannot compile `{component}`: compiling it needed more than {limit}, the limit for compiling one component"
    )]
    CompileLimit {
        /// The component.
        component: String,
        /// The limit, e.g. `60000 ms of CPU time`.
        limit: String,
    },

    /// wasmtime could not compile (or validate) the component.
    #[error("cannot compile `{component}`: {reason}")]
    Compile {
        /// The component.
        component: String,
        /// What wasmtime said.
        reason: String,
    },

    /// The component imports interfaces steps can never use (read from its
    /// binary before it is compiled). Every one is named.
    #[error(
        "`{component}` imports {} steps cannot use: {}",
        count(imports.len()),
        list(imports)
    )]
    ImportsDenied {
        /// The component.
        component: String,
        /// Every refused import, in the component's order.
        imports: Vec<DeniedImport>,
    },

    /// The component uses the component model's async ABI, which the
    /// sandbox does not run (see the README's decisions).
    #[error(
        "`{component}` uses the component model's async ABI ({what}), which weft does not run: \
         build it synchronously (e.g. `componentize-qjs --sync`, or without async exports)"
    )]
    Async {
        /// The component.
        component: String,
        /// The first async construct found, e.g. `task.return`.
        what: String,
    },

    /// The component's exports (or its use of `weft:step/host`) do not match
    /// the world `weft:step/step@0.1.0`.
    #[error("`{component}` does not implement `{world}`: {reason}", world = crate::STEP_WORLD)]
    NotAStep {
        /// The component.
        component: String,
        /// What is missing or wrong, as precisely as wasmtime says.
        reason: String,
    },

    /// An import the step may use does not have the type the host provides
    /// (e.g. a `weft:step/host` function with another signature).
    #[error("`{component}` cannot be linked to the host's imports: {reason}")]
    Link {
        /// The component.
        component: String,
        /// What wasmtime said.
        reason: String,
    },

    /// A memory limit above what the sandbox's memory pool can hold.
    #[error(
        "a memory limit of {requested} bytes is above the sandbox's maximum of {max} bytes \
         (SandboxConfig::max_memory_bytes)"
    )]
    MemoryLimit {
        /// The requested `memory-bytes`.
        requested: u64,
        /// The sandbox's maximum.
        max: u64,
    },

    /// A step of a workflow could not be loaded.
    #[error("step `{step}` (component `{component}`): {error}")]
    Step {
        /// The step id.
        step: StepId,
        /// The component path as written in the step definition.
        component: String,
        /// Why.
        error: Box<SandboxError>,
    },
}

/// One import a step may not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedImport {
    /// The full import name, e.g. `wasi:http/outgoing-handler@0.2.6`.
    pub import: String,
    /// Why it is refused.
    pub reason: &'static str,
}

fn count(n: usize) -> String {
    if n == 1 {
        "an interface".to_owned()
    } else {
        format!("{n} interfaces")
    }
}

fn list(imports: &[DeniedImport]) -> String {
    imports
        .iter()
        .map(|d| format!("`{}` ({})", d.import, d.reason))
        .collect::<Vec<_>>()
        .join("; ")
}
