//! Choosing and building a runtime, and the store every runtime records in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use weft_core::{RunId, RunResult, RunStatus, Store};
use weft_runtime::{LeaseOptions, Registered, Runtime, RuntimeError, RuntimeKind, SystemClock};
use weft_store_postgres::PostgresStore;
use weft_store_sqlite::SqliteStore;

use crate::exit::Failure;
use crate::home::Home;
use crate::load::Loaded;

/// Parses `--runtime` (`evented` or `default`): which configuration of the
/// run lifecycle drives the command's run. Both record it in the same store.
pub fn runtime_arg() -> impl clap::builder::TypedValueParser<Value = RuntimeKind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new([
        clap::builder::PossibleValue::new("evented")
            .help("Persist every event before it takes effect; survives crashes (`weft recover`)"),
        clap::builder::PossibleValue::new("default").help(
            "Drive the run in memory; record it in the store when it starts, suspends or ends (not crash-durable in between)",
        ),
    ])
    .map(|name| match name.as_str() {
        "default" => RuntimeKind::Default,
        _ => RuntimeKind::Evented,
    })
}

/// Where the store is: `--db`, else `$WEFT_DB`, else `$WEFT_HOME/weft.db`.
/// A SQLite file's path, or a PostgreSQL URL (`postgres://…`, see
/// [`postgres_url`]).
pub fn store_location(home: &Home, db: Option<&PathBuf>) -> PathBuf {
    db.cloned()
        .or_else(|| {
            std::env::var_os("WEFT_DB")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| home.db_path())
}

/// The store location as a PostgreSQL URL, when it is one
/// (`postgres://` or `postgresql://`): the store is then that database
/// (the schema its `schema` parameter names), not a file.
pub fn postgres_url(location: &Path) -> Option<&str> {
    location
        .to_str()
        .filter(|text| weft_store_postgres::is_postgres_url(text))
}

/// Opens the event store ([`store_location`]), creating it on first use: a
/// SQLite file, or the PostgreSQL database a `postgres://` URL names.
pub fn open_store(home: &Home, db: Option<&PathBuf>) -> Result<Arc<dyn Store>, Failure> {
    let location = store_location(home, db);
    let store = match postgres_url(&location) {
        Some(url) => PostgresStore::open(url).map(|store| Arc::new(store) as Arc<dyn Store>),
        None => SqliteStore::open_with(&location, home.durability())
            .map(|store| Arc::new(store) as Arc<dyn Store>),
    };
    // The store's error names the path or the URL (without a password).
    store
        .context("cannot open the store")
        .map_err(Failure::other)
}

/// A runtime of `kind` over `store`, with one worker per core, leasing
/// runs as `--lease-ttl` says.
pub fn runtime(home: &Home, store: Arc<dyn Store>, kind: RuntimeKind) -> Box<dyn Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    kind.build(store, Arc::new(SystemClock), workers, leases(home))
}

/// How runs are leased (`--lease-ttl`).
pub fn leases(home: &Home) -> LeaseOptions {
    LeaseOptions {
        ttl: home.lease_ttl(),
    }
}

/// The loaded workflow, registered with a runtime; a run it starts is
/// pinned to `workflow_digest` (a lock the caller stored).
pub fn registered(loaded: &Loaded, workflow_digest: Option<String>) -> Arc<Registered> {
    Arc::new(Registered {
        workflow: loaded.workflow().clone(),
        runner: loaded.steps.clone(),
        manifest: loaded.origin.clone(),
        manifest_sha256: loaded.sha256.clone(),
        workflow_digest,
    })
}

/// A stored run's metadata (without its events); a missing run is invalid
/// input.
pub fn run_meta(store: &dyn Store, run: &RunId) -> Result<weft_core::RunMeta, Failure> {
    store
        .load_page(run, 0, 0)
        .map(|(meta, _)| meta)
        .map_err(|e| crate::paged::missing_or(run, e))
}

/// A stored run's metadata and events; a missing run is invalid input.
pub fn load_run(
    store: &dyn Store,
    run: &RunId,
) -> Result<(weft_core::RunMeta, Vec<weft_core::Event>), Failure> {
    store.load(run).map_err(|e| match e {
        weft_core::StoreError::NotFound { .. } => Failure::missing(run),
        other => Failure::other(other),
    })
}

/// The outcome of a runtime request as the CLI reports it. When another
/// process took over the run while this one drove it
/// ([`RuntimeError::DrivenElsewhere`], e.g. `weft recover` racing a live
/// `weft run`), it says so on stderr and waits for the run to settle there,
/// then reports that: what the user asked about is the run, not this process.
pub fn settle(
    store: &dyn Store,
    registered: &Registered,
    outcome: Result<RunResult, RuntimeError>,
) -> Result<RunResult, Failure> {
    match outcome {
        Err(RuntimeError::DrivenElsewhere { run }) => {
            let run = RunId::new(&run).map_err(Failure::other)?;
            eprintln!(
                "note: run {} is being driven by another weft process; waiting for it to finish or suspend there",
                crate::output::escape(run.as_str())
            );
            follow(store, registered, &run)
        }
        other => other.map_err(crate::run::failure),
    }
}

/// Polls the store until the run is no longer running, and returns its result.
fn follow(store: &dyn Store, registered: &Registered, run: &RunId) -> Result<RunResult, Failure> {
    const POLL: Duration = Duration::from_millis(50);
    loop {
        let (_, state) =
            crate::paged::replay(store, run, |_| Ok(Arc::clone(&registered.workflow)))?;
        if state.status() != RunStatus::Running {
            return Ok(state.result());
        }
        std::thread::sleep(POLL);
    }
}
