//! weft's integration tests: one test binary, one module per area.

mod budgets;
mod cli;
mod conformance;
mod crash;
mod jepsen;
mod leases;
mod manifest;
mod parity;
mod parity_api;
mod pins;
mod postgres;
#[cfg(unix)]
mod read_only;
mod rerun;
mod runs;
mod runtime;
mod sandbox;
mod serve;
mod store_contract;
mod support;
mod timers;
mod watch;
