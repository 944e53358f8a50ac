//! Loading a workflow — from its manifest on disk, or from the lock a run is
//! pinned to — and its components, with errors located in the manifest.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, anyhow};
use sha2::{Digest, Sha256};
use weft_core::{RunId, RunMeta, Store, Workflow};
use weft_manifest::{Manifest, WorkflowLock};
use weft_sandbox::{Compiler, Sandbox, SandboxConfig, SandboxError, WorkflowSteps};

use crate::exit::Failure;
use crate::home::Home;

/// A workflow whose every component loaded, and its lock.
pub struct Loaded {
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's absolute path (where the workflow came from).
    pub origin: String,
    /// SHA-256 of the manifest text.
    pub sha256: String,
    /// The components, ready to run.
    pub steps: Arc<WorkflowSteps>,
    /// The workflow frozen (component digests filled in).
    pub lock: WorkflowLock,
}

impl Loaded {
    /// The workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        self.manifest.workflow()
    }

    /// Stores the lock (once per content) and returns its digest, to pin a
    /// run to it.
    pub fn store_lock(&self, store: &dyn Store) -> Result<String, Failure> {
        let digest = self.lock.digest();
        store
            .put_workflow(&digest, &self.lock.to_json())
            .context("cannot store the workflow's lock")
            .map_err(Failure::other)?;
        Ok(digest)
    }
}

/// The process's sandbox, made on first use from `home`'s settings (a
/// process has one home): one wasmtime engine, and one reservation of
/// address space for its pooling allocator, whatever the process loads —
/// `weft serve` and `weft recover` load many workflows.
fn sandbox(home: &Home) -> Result<&'static Sandbox, Failure> {
    static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| new_sandbox(home).map_err(|failure| failure.to_string()))
        .as_ref()
        .map_err(|reason| Failure::other(anyhow!("{reason}")))
}

fn new_sandbox(home: &Home) -> Result<Sandbox, Failure> {
    let loading = home.loading();
    // Components are compiled by this same executable in a child process,
    // under the compile limits.
    let program = std::env::current_exe()
        .context("cannot find weft's own executable to compile components with")
        .map_err(Failure::other)?;
    Sandbox::new(SandboxConfig {
        cache_dir: Some(home.cache_dir()),
        max_component_bytes: loading.max_component_bytes,
        compiler: Compiler::Isolated {
            program,
            args: vec!["compile-component".into()],
            limits: loading.compile,
        },
        ..Default::default()
    })
    .context("cannot start the sandbox")
    .map_err(Failure::other)
}

/// Loads `path` and compiles (or fetches from the cache) every component it
/// names, recording the lock a run of it is pinned to. Errors are
/// invalid-input failures located in the manifest.
pub fn load(home: &Home, path: &Path) -> Result<Loaded, Failure> {
    // The manifest crate reads the file (bounded: a regular file of at most
    // `weft_manifest::MAX_MANIFEST_BYTES`); the hash is of the text it parsed.
    let (manifest, mut lock) = Manifest::load_recording(path).map_err(Failure::invalid)?;
    let sandbox = sandbox(home)?;
    // Each distinct component file is read, hashed and compiled once; an
    // error points at the failing step's `component` field.
    let steps = WorkflowSteps::load(sandbox, manifest.workflow())
        .map_err(|e| -> anyhow::Error {
            match e {
                SandboxError::Step { step, error, .. } => manifest
                    .error_at(&format!("steps.{step}.component"), error.to_string())
                    .into(),
                other => anyhow::Error::new(other).context("cannot load the workflow's components"),
            }
        })
        .map_err(Failure::invalid)?;
    // The digests are of the bytes the sandbox compiled, not of a second read.
    for def in manifest.workflow().steps() {
        if let Some((component, _)) = steps.get(&def.id) {
            lock.set_component_digest(&def.component, &component.content_hash());
        }
    }
    let origin = std::path::absolute(path)
        .context("cannot resolve the manifest path")
        .map_err(Failure::other)?
        .display()
        .to_string();
    let sha256 = hex::encode(Sha256::digest(manifest.text()));
    Ok(Loaded {
        manifest,
        origin,
        sha256,
        steps: Arc::new(steps),
        lock,
    })
}

/// The lock `meta`'s run is pinned to, `None` for a run recorded before
/// runs were pinned.
pub fn run_lock(store: &dyn Store, meta: &RunMeta) -> Result<Option<WorkflowLock>, Failure> {
    let Some(digest) = &meta.workflow_digest else {
        return Ok(None);
    };
    let run = &meta.run_id;
    let text = store
        .workflow(digest)
        .with_context(|| format!("run {run}: cannot read its workflow lock"))
        .map_err(Failure::other)?;
    WorkflowLock::from_json(&text)
        .map_err(|e| anyhow!("run {run}: its workflow lock `{digest}` does not parse: {e}"))
        .map(Some)
        .map_err(Failure::other)
}

/// The manifest of a lock, read from the lock alone.
pub fn locked_manifest(run: &RunId, lock: &WorkflowLock) -> Result<Manifest, Failure> {
    Manifest::load_locked(lock)
        .with_context(|| format!("run {run}: its locked workflow does not load"))
        .map_err(Failure::other)
}

/// Loads the workflow `lock` froze, for `meta`'s run: the manifest from the
/// lock, each component by its digest (from the compile cache, else from its
/// recorded path if the file there still has that digest).
pub fn load_locked(home: &Home, meta: &RunMeta, lock: WorkflowLock) -> Result<Loaded, Failure> {
    let run = &meta.run_id;
    let manifest = locked_manifest(run, &lock)?;
    load_components(home, manifest, lock, meta.manifest.clone())
        .with_context(|| format!("run {run}: cannot load its pinned workflow"))
        .map_err(Failure::other)
}

/// Loads a stored lock (a deployed version of a workflow): the manifest
/// from the lock, each component by its digest. Runs of it record `origin`
/// as where the workflow came from.
pub fn load_lock(home: &Home, lock: WorkflowLock, origin: String) -> Result<Loaded, Failure> {
    let manifest = Manifest::load_locked(&lock)
        .context("the deployed workflow does not load")
        .map_err(Failure::other)?;
    load_components(home, manifest, lock, origin)
        .context("cannot load the deployed workflow's components")
        .map_err(Failure::other)
}

fn load_components(
    home: &Home,
    manifest: Manifest,
    lock: WorkflowLock,
    origin: String,
) -> anyhow::Result<Loaded> {
    let sandbox = sandbox(home).map_err(|f| f.error)?;
    let steps = WorkflowSteps::load_pinned(sandbox, manifest.workflow(), |path| {
        lock.component_digest(path)
    })?;
    let sha256 = hex::encode(Sha256::digest(manifest.text()));
    Ok(Loaded {
        manifest,
        origin,
        sha256,
        steps: Arc::new(steps),
        lock,
    })
}

/// The workflow `meta`'s run runs, without its components (for a request
/// that runs no step, such as a cancel): a pinned run's from its lock alone;
/// otherwise as [`load_run_workflow`].
pub fn load_run_plan(home: &Home, store: &dyn Store, meta: &RunMeta) -> Result<Loaded, Failure> {
    let Some(lock) = run_lock(store, meta)? else {
        return load_run_workflow(home, store, meta);
    };
    let manifest = locked_manifest(&meta.run_id, &lock)?;
    let sha256 = hex::encode(Sha256::digest(manifest.text()));
    Ok(Loaded {
        manifest,
        origin: meta.manifest.clone(),
        sha256,
        // No step runs: a runner without components says so if one did.
        steps: Arc::new(WorkflowSteps::default()),
        lock,
    })
}

/// Loads the workflow `meta`'s run runs: from its lock when it is pinned,
/// else (a run recorded before runs were pinned) from its manifest on disk,
/// refused when the manifest's text changed since the run started.
pub fn load_run_workflow(
    home: &Home,
    store: &dyn Store,
    meta: &RunMeta,
) -> Result<Loaded, Failure> {
    if let Some(lock) = run_lock(store, meta)? {
        return load_locked(home, meta, lock);
    }
    let path = Path::new(&meta.manifest);
    let loaded = load(home, path)?;
    if meta.manifest_sha256 != loaded.sha256 {
        return Err(Failure::invalid(anyhow!(
            "run {}: {} changed since the run started (the run predates workflow locks); \
             pass --upgrade to move the run to it",
            meta.run_id,
            path.display()
        )));
    }
    Ok(loaded)
}
