//! weft's integration tests: one test binary, one module per area.

mod cli;
mod crash;
mod manifest;
mod parity;
mod runtime;
mod sandbox;
mod support;
