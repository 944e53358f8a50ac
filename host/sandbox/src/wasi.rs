//! WASI for steps: virtualised and deny-by-default.
//!
//! Every WASI 0.2 interface an ordinary guest toolchain imports is linked,
//! so a component built for `wasm32-wasip1`/`wasip2` (C with wasi-libc and
//! the preview1 adapter, componentize-py, componentize-js, Go) loads
//! unchanged; what each interface *gives* depends on the step's grants:
//!
//! | area | without a grant | with its grant |
//! |---|---|---|
//! | `wasi:cli` (environment, exit, stdin/stdout/stderr, terminal-*) | empty environment, no arguments, empty stdin, stdout/stderr discarded, no terminal | `stdio`: stdout/stderr lines go to the step's log (see `stdio`) |
//! | `wasi:clocks` | deterministic: the wall clock is the attempt's start (the `at` of its `step-started` event), the monotonic clock starts at 0 (see `clocks`) | `clocks`: the host's clocks |
//! | `wasi:random` | deterministic: a ChaCha20 generator seeded by the idempotency key and the attempt (see `random`) | `random`: the host's generators |
//! | `wasi:filesystem` | no preopened directory: no file is reachable | — |
//! | `wasi:sockets` | inert: TCP and UDP are refused (`access-denied`), name lookup fails (`permanent-resolver-failure`), every address check denies | — |
//! | `wasi:io` | the streams and pollables of the above | — |
//!
//! `wasi:http` and anything else stay refused at load (see `imports`).
//!
//! The grant model is [`WasiGrants`]: the grants of a step, resolved once
//! when its component is loaded, that [`attempt_ctx`] turns into each
//! attempt's `WasiCtx`. A future grant extends it without touching the
//! import policy, e.g. a read-only directory per step would be a
//! `preopens: Vec<(PathBuf, String)>` field here, applied with
//! `WasiCtxBuilder::preopened_dir(host, guest, DirPerms::READ, FilePerms::READ)`.

mod clocks;
mod random;

pub(crate) use clocks::{Logical, SleepClock, link_sleeps};

use std::sync::{Arc, Mutex};

use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};
use weft_core::{Grant, Limits, StepTask, Timestamp};

use crate::stdio::{Capture, CapturePipe};

/// The WASI 0.2 interfaces linked for every step, by package: exactly what
/// `wasmtime_wasi::p2::add_to_linker_sync` links. The import policy allows
/// these (any `0.2.x`) and nothing else of WASI.
pub(crate) const LINKED: &[(&str, &[&str])] = &[
    (
        "wasi:cli",
        &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi:io", &["error", "poll", "streams"]),
    ("wasi:clocks", &["wall-clock", "monotonic-clock"]),
    ("wasi:random", &["random", "insecure", "insecure-seed"]),
    ("wasi:filesystem", &["types", "preopens"]),
    (
        "wasi:sockets",
        &[
            "network",
            "instance-network",
            "ip-name-lookup",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
        ],
    ),
];

/// The most random bytes one `get-random-bytes` (or insecure) call returns;
/// a larger request traps, naming the limit.
pub(crate) const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// What a step's grants change in its WASI context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WasiGrants {
    /// `stdio`: guest stdout/stderr into the step's log.
    pub(crate) stdio: bool,
    /// `clocks`: the host's real clocks.
    pub(crate) clocks: bool,
    /// `random`: the host's real random generators.
    pub(crate) random: bool,
}

impl WasiGrants {
    pub(crate) fn of(grants: &[Grant]) -> Self {
        Self {
            stdio: grants.contains(&Grant::Stdio),
            clocks: grants.contains(&Grant::Clocks),
            random: grants.contains(&Grant::Random),
        }
    }
}

/// What an attempt's WASI context is built from, kept in its store until
/// the guest's first WASI call (most steps never make one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptWasi {
    grants: WasiGrants,
    started_at: Timestamp,
    /// The deterministic generators' seed (unused with the `random` grant).
    seed: [u8; 32],
    /// The largest random buffer a guest may ask for at once.
    max_random_bytes: u64,
}

impl AttemptWasi {
    pub(crate) fn new(grants: WasiGrants, task: &StepTask, limits: &Limits) -> Self {
        let seed = if grants.random {
            [0; 32]
        } else {
            random::seed(&task.idempotency_key, task.attempt)
        };
        Self {
            grants,
            started_at: task.started_at,
            seed,
            // Random bytes are generated on the host, in one call that the
            // epoch cannot interrupt, then copied into the guest: a call
            // stays small (a guest wanting more asks again, from its own
            // code, which the deadline stops), and never more than the
            // guest's memory could hold.
            max_random_bytes: limits.memory_bytes.min(MAX_RANDOM_BYTES),
        }
    }

    /// Whether guest stdout/stderr go to the step's log.
    pub(crate) fn captures_stdio(&self) -> bool {
        self.grants.stdio
    }
}

/// Builds the WASI context of one attempt; `capture` receives stdout and
/// stderr when the step has the `stdio` grant. Without the `clocks` grant,
/// also the logical clock its sleeps move (see `clocks`).
pub(crate) fn attempt_ctx(
    wasi: &AttemptWasi,
    capture: Option<Arc<Mutex<Capture>>>,
) -> (WasiCtx, Option<Arc<clocks::Logical>>) {
    // The builder's defaults are what an ungranted step gets for `wasi:cli`
    // and `wasi:filesystem`: no environment, no arguments, closed stdin,
    // discarded stdout/stderr, no preopened directory.
    let mut builder = WasiCtxBuilder::new();
    if let Some(capture) = capture {
        builder.stdout(CapturePipe::stdout(capture.clone()));
        builder.stderr(CapturePipe::stderr(capture));
    }
    let mut logical = None;
    if !wasi.grants.clocks {
        let clock = clocks::SharedLogical::default();
        logical = Some(Arc::clone(&clock.0));
        builder.wall_clock(clocks::AttemptStart::at(wasi.started_at));
        builder.monotonic_clock(clock);
    }
    if !wasi.grants.random {
        let (secure, insecure, insecure_seed) = random::generators(&wasi.seed);
        builder.secure_random(secure);
        builder.insecure_random(insecure);
        builder.insecure_random_seed(insecure_seed);
    }
    builder.max_random_size(wasi.max_random_bytes);
    // Sockets are linked but inert, whatever the grants.
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    (builder.build(), logical)
}
