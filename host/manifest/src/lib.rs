//! Workflow manifests: TOML (or JSON) files → validated [`weft_core::Workflow`]s.
//!
//! [`Manifest::load`] reads a manifest and checks it against the format (the
//! serde model in `format.rs`, every field documented there; unknown keys are
//! errors everywhere). It resolves the files the manifest names (components,
//! schema files, nested workflow manifests) relative to the manifest's
//! directory, compiles its JSON Schemas and its expressions (CEL: a syntax
//! error or a variable not available where the expression is written is
//! located at its line and column inside the expression, in the manifest's
//! own coordinates), merges step defaults, and builds the
//! workflow through [`weft_core::WorkflowBuilder`]. Every error is a
//! [`ManifestError`] pointing at `file:line:column` and naming the field path
//! it is about (`steps.validate.input-schema`, `flow[2].step`); the same paths
//! locate fields later ([`Manifest::locate`], [`Manifest::error_at`]), e.g.
//! when a component fails to load in the sandbox.
//!
//! Files are read with [`read_file`]: only regular files (after following
//! symlinks), never more than a cap ([`MAX_MANIFEST_BYTES`],
//! [`MAX_SCHEMA_BYTES`]), so a manifest or schema naming `/dev/zero` or a
//! FIFO fails with an error instead of exhausting memory or hanging. The CLI
//! reads its `@FILE` arguments with the same function.
//!
//! [`Manifest::load_recording`] also returns a [`WorkflowLock`]: every file
//! the load read, as text, and every component's canonical path, so that
//! [`Manifest::load_locked`] can load the very same workflow later without
//! reading the disk (a run is pinned to its lock).
//!
//! What this crate deliberately does NOT do: load or inspect components
//! (only their existence is checked; see `weft-sandbox`), evaluate
//! expressions, or decide which node kinds run (the core's builder does).

mod error;
mod file;
mod format;
mod lock;
mod lower;
mod manifest;
mod source;

pub use error::{Location, ManifestError};
pub use file::{MAX_MANIFEST_BYTES, MAX_SCHEMA_BYTES, read_file};
pub use lock::{LockedComponent, WorkflowLock};
pub use lower::absolute as lexical_absolute;
pub use manifest::Manifest;

#[cfg(test)]
mod tests;
