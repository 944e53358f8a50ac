//! weft's integration tests: one test binary, one module per area.

mod manifest;
mod sandbox;
