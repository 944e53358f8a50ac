//! Compiling a component in a child process, under a CPU-time and a memory
//! limit.
//!
//! Cranelift's time and memory grow faster than linearly with some shapes of
//! code (deeply nested loops, thousands of live locals): a component of a few
//! hundred kilobytes can take minutes and gigabytes to compile, and nothing
//! inside wasmtime can stop a compilation once started. So the sandbox can
//! hand the job to a child process ([`Compiler::Isolated`]): the child (the
//! `weft` binary's hidden `compile-component` command, which calls
//! [`compile_in_child`]) limits itself with `RLIMIT_CPU` and `RLIMIT_AS`
//! before it reads anything, compiles with the same engine settings, and
//! writes the precompiled artifact; the parent waits (bounded by a wall-clock
//! limit too), then loads the artifact. A child stopped by a limit fails the
//! load with [`SandboxError::CompileLimit`], naming the component and the
//! limit; the host itself never spends more than the wait.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::SandboxError;

/// The limits of one isolated compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// CPU time (all compiler threads together, `RLIMIT_CPU`) per MiB of
    /// the component, counting at least one MiB. An ordinary component's
    /// compile time grows with its size; a compile bomb's grows faster.
    pub cpu_per_mib: Duration,
    /// Address space of the compiling process (`RLIMIT_AS`), in bytes.
    pub memory_bytes: u64,
}

impl Default for CompileLimits {
    /// 20 s of CPU per MiB and 4 GiB. The most expensive of weft's guests
    /// to compile, the 11.5 MiB JavaScript one, needs 7–22 s of CPU per MiB
    /// (by machine) and 0.9 GiB in a debug build of weft (about a third of
    /// the time in a release build: the CLI gives a debug build 60 s); a
    /// compile bomb of 350 KB, 120 s and 1.2 GiB.
    fn default() -> Self {
        Self {
            cpu_per_mib: Duration::from_secs(20),
            memory_bytes: 4 << 30,
        }
    }
}

impl CompileLimits {
    /// The CPU time allowed for a component of `bytes` bytes.
    pub fn cpu_for(&self, bytes: u64) -> Duration {
        let mib = u32::try_from(bytes.div_ceil(1 << 20).max(1)).unwrap_or(u32::MAX);
        self.cpu_per_mib.saturating_mul(mib)
    }
}

/// Where the sandbox compiles components.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Compiler {
    /// In this process, without limits: for trusted components (tests).
    #[default]
    InProcess,
    /// In a child process under [`CompileLimits`]: `program args…` followed
    /// by the arguments [`compile_in_child`] parses.
    Isolated {
        /// The executable (the `weft` binary).
        program: PathBuf,
        /// Its arguments before the job's (e.g. the hidden subcommand).
        args: Vec<OsString>,
        /// The limits.
        limits: CompileLimits,
    },
}

/// Most of the child's stderr kept for an error message.
const STDERR_BYTES: u64 = 4 << 10;

/// Compiles `bytes` (a component) in a child process and loads the result.
pub(crate) fn compile(
    engine: &Engine,
    bytes: &[u8],
    name: &str,
    program: &Path,
    args: &[OsString],
    limits: CompileLimits,
) -> Result<Component, SandboxError> {
    let cpu = limits.cpu_for(bytes.len() as u64);
    let failed = |reason: String| SandboxError::Compile {
        component: name.to_owned(),
        reason,
    };
    let dir = tempfile::tempdir()
        .map_err(|e| failed(format!("cannot make a directory to compile in: {e}")))?;
    let input = dir.path().join("component.wasm");
    let output = dir.path().join("component.cwasm");
    let errors = dir.path().join("stderr");
    std::fs::write(&input, bytes)
        .map_err(|e| failed(format!("cannot write the component to compile: {e}")))?;
    let stderr = std::fs::File::create(&errors)
        .map_err(|e| failed(format!("cannot capture the compiler's errors: {e}")))?;
    let mut child = Command::new(program)
        .args(args)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--cpu-ms")
        .arg(cpu.as_millis().to_string())
        .arg("--memory-bytes")
        .arg(limits.memory_bytes.to_string())
        // Its error is a message for the user, not a backtrace.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "cannot start the compiler process `{}`: {e}",
                program.display()
            ))
        })?;
    // CPU time never runs faster than the wall clock with one thread per
    // core; the margin covers a loaded machine, where the child waits for a
    // core. Past it the child is killed however little CPU it used.
    let wall = cpu.saturating_mul(3) + Duration::from_secs(10);
    let status = wait(&mut child, wall)
        .map_err(|e| failed(format!("cannot wait for the compiler process: {e}")))?;
    let said = read_start(&errors);
    let Some(status) = status else {
        return Err(SandboxError::CompileLimit {
            component: name.to_owned(),
            limit: format!(
                "{} s of wall-clock time (the compiler process was killed)",
                wall.as_secs()
            ),
        });
    };
    if !status.success() {
        return Err(classify(name, status, &said, cpu, limits.memory_bytes));
    }
    // SAFETY: `deserialize_file` trusts the file to be an artifact written by
    // `Engine::precompile_component` of a compatible engine. This one was
    // written a moment ago by the child this function started — the host's
    // own executable, running `compile_in_child` with the same engine
    // settings — into a directory only this process knows; wasmtime also
    // checks the artifact's header and refuses other versions or settings.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize_file(engine, &output) };
    loaded.map_err(|e| {
        failed(format!(
            "cannot load what the compiler process wrote: {e:#}"
        ))
    })
}

/// Waits for `child` at most `limit`; kills it past that (`None`).
fn wait(child: &mut std::process::Child, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    // Compilations take milliseconds to seconds: look often at first,
    // then every 50 ms.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The first few KiB of what the child wrote to stderr, as text.
fn read_start(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(STDERR_BYTES).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).trim().to_owned()
}

/// Why the child failed: a limit, or what it said.
fn classify(
    name: &str,
    status: ExitStatus,
    said: &str,
    cpu: Duration,
    memory_bytes: u64,
) -> SandboxError {
    use std::os::unix::process::ExitStatusExt as _;

    let limit = |limit: String| SandboxError::CompileLimit {
        component: name.to_owned(),
        limit,
    };
    let cpu = || limit(format!("{} ms of CPU time", cpu.as_millis()));
    let memory = || limit(format!("{memory_bytes} bytes of memory"));
    match status.signal() {
        // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
        Some(signal) if signal == libc_signal::SIGXCPU || signal == libc_signal::SIGKILL => cpu(),
        // RLIMIT_AS: an allocation fails (Rust aborts), an `mmap` fails
        // (ENOMEM), or a compiler thread's stack cannot be mapped (EAGAIN).
        _ if OUT_OF_MEMORY.iter().any(|sign| said.contains(sign)) => memory(),
        _ => SandboxError::Compile {
            component: name.to_owned(),
            reason: if said.is_empty() {
                format!("the compiler process failed ({status})")
            } else {
                said.to_owned()
            },
        },
    }
}

/// What the child says when its address space is exhausted.
const OUT_OF_MEMORY: &[&str] = &[
    "memory allocation of",
    "Cannot allocate memory",
    "out of memory",
    "Resource temporarily unavailable",
];

/// Signal numbers (Linux).
mod libc_signal {
    pub(super) const SIGKILL: i32 = 9;
    pub(super) const SIGXCPU: i32 = 24;
}

/// The child's side: limits this process to `cpu_ms` of CPU time and
/// `memory_bytes` of address space, compiles the component at `input` with
/// the engine settings of [`crate::Sandbox`], and writes the artifact to
/// `output`. Called by the `weft` binary's hidden `compile-component`
/// command, whose arguments are `--input P --output P --cpu-ms N
/// --memory-bytes N` (as [`compile`] passes them).
///
/// # Errors
/// What went wrong, for the child's stderr (the parent reports it).
pub fn compile_in_child(
    input: &Path,
    output: &Path,
    cpu_ms: u64,
    memory_bytes: u64,
) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, setrlimit};

    let cpu_secs = cpu_ms.div_ceil(1000).max(1);
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(cpu_secs),
            maximum: Some(cpu_secs + 1),
        },
    )
    .map_err(|e| format!("cannot limit the compiler's CPU time: {e}"))?;
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(memory_bytes),
            maximum: Some(memory_bytes),
        },
    )
    .map_err(|e| format!("cannot limit the compiler's memory: {e}"))?;
    let bytes =
        std::fs::read(input).map_err(|e| format!("cannot read `{}`: {e}", input.display()))?;
    let engine = crate::sandbox::compile_engine()
        .map_err(|e| format!("cannot create the compiler's engine: {e}"))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    std::fs::write(output, artifact)
        .map_err(|e| format!("cannot write `{}`: {e}", output.display()))
}
