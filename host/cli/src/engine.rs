//! Choosing and building a runtime, and the store it uses.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{RunId, SystemClock};
use weft_runtime::{EventedRuntime, Registered};
use weft_store_sqlite::SqliteStore;

use crate::exit::Failure;
use crate::home::Home;
use crate::load::Loaded;

/// Which runtime drives a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Persist every event in the SQLite store; survives crashes (`weft recover`)
    Evented,
    /// Drive the run in memory; a suspended run is saved as a file of events
    Default,
}

/// Opens the event store (`--db`, default `$WEFT_HOME/weft.db`), creating it on first use.
pub fn open_store(home: &Home, db: Option<&PathBuf>) -> Result<Arc<SqliteStore>, Failure> {
    let path = db.cloned().unwrap_or_else(|| home.db_path());
    SqliteStore::open(&path)
        .with_context(|| format!("cannot open the store {}", path.display()))
        .map(Arc::new)
        .map_err(Failure::other)
}

/// An evented runtime over `store`, with one step worker per core.
pub fn evented(store: Arc<SqliteStore>) -> EventedRuntime {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    EventedRuntime::new(store, Arc::new(SystemClock), workers)
}

/// The loaded workflow, registered for the evented runtime.
pub fn registered(loaded: &Loaded) -> Result<Arc<Registered>, Failure> {
    let manifest = std::path::absolute(loaded.manifest.path())
        .context("cannot resolve the manifest path")
        .map_err(Failure::other)?;
    Ok(Arc::new(Registered {
        workflow: loaded.workflow().clone(),
        runner: loaded.steps.clone(),
        manifest: manifest.display().to_string(),
        manifest_sha256: loaded.sha256.clone(),
    }))
}

/// A stored run's metadata and events; a missing run is invalid input.
pub fn load_run(
    store: &SqliteStore,
    run: &RunId,
) -> Result<(weft_core::RunMeta, Vec<weft_core::Event>), Failure> {
    use weft_core::EventStore as _;
    store.load(run).map_err(|e| match e {
        weft_core::StoreError::NotFound { .. } => {
            Failure::invalid(anyhow::anyhow!("no run `{run}` in the store"))
        }
        other => Failure::other(other),
    })
}

/// Events of a run in the store, for printing.
pub fn stored_events(store: &SqliteStore, run: &RunId) -> Vec<weft_core::Event> {
    use weft_core::EventStore as _;
    store
        .load(run)
        .map(|(_, events)| events)
        .unwrap_or_default()
}
