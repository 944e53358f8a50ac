//! Loading a manifest and its components, with errors located in the manifest.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use weft_core::Workflow;
use weft_manifest::Manifest;
use weft_sandbox::{Sandbox, SandboxConfig, SandboxError, WorkflowSteps};

use crate::exit::Failure;
use crate::home::Home;

/// A manifest whose every component loaded.
pub struct Loaded {
    /// The manifest.
    pub manifest: Manifest,
    /// SHA-256 of the manifest text.
    pub sha256: String,
    /// The components, ready to run.
    pub steps: Arc<WorkflowSteps>,
}

impl Loaded {
    /// The workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        self.manifest.workflow()
    }
}

/// Loads `path` and compiles (or fetches from the cache) every component it
/// names. Errors are invalid-input failures located in the manifest.
pub fn load(home: &Home, path: &Path) -> Result<Loaded, Failure> {
    // The manifest crate reads the file (bounded: a regular file of at most
    // `weft_manifest::MAX_MANIFEST_BYTES`); the hash is of the text it parsed.
    let manifest = Manifest::load(path).map_err(Failure::invalid)?;
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(home.cache_dir()),
        ..Default::default()
    })
    .context("cannot start the sandbox")
    .map_err(Failure::other)?;
    // Each distinct component file is read, hashed and compiled once; an
    // error points at the failing step's `component` field.
    let steps = WorkflowSteps::load(&sandbox, manifest.workflow())
        .map_err(|e| -> anyhow::Error {
            match e {
                SandboxError::Step { step, error, .. } => manifest
                    .error_at(&format!("steps.{step}.component"), error.to_string())
                    .into(),
                other => anyhow::Error::new(other).context("cannot load the workflow's components"),
            }
        })
        .map_err(Failure::invalid)?;
    let sha256 = hex::encode(Sha256::digest(manifest.text()));
    Ok(Loaded {
        manifest,
        sha256,
        steps: Arc::new(steps),
    })
}
