//! weft's integration tests: one test binary, one module per area.

mod cli;
mod conformance;
mod crash;
mod manifest;
mod parity;
mod pins;
mod rerun;
mod runs;
mod runtime;
mod sandbox;
mod support;
mod timers;
mod watch;
