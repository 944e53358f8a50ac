//! `weft resume`: continue a suspended run, in this or any other process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use weft_core::{ResumeTarget, RunId, StepPath};
use weft_store_sqlite::SqliteStore;

use crate::engine::{self, RuntimeKind};
use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::{Loaded, load};
use crate::output::LogObserver;
use crate::run::report;

/// Arguments of `weft resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the suspended run (printed by `weft run`)
    run_id: String,
    /// The path of the suspended step to resume (e.g. `approve`)
    #[arg(long, value_name = "PATH", conflicts_with = "label")]
    step: Option<String>,
    /// Resume the suspended step that has this resume label
    #[arg(long, value_name = "LABEL", conflicts_with = "all")]
    label: Option<String>,
    /// Resume every suspended step, all with the same --data
    #[arg(long, conflicts_with = "step")]
    all: bool,
    /// The resume payload: JSON text, or @FILE
    #[arg(long, short, value_name = "JSON|@FILE", default_value = "{}")]
    data: String,
    /// Print the result as one JSON object instead of per-step lines
    #[arg(long)]
    json: bool,
    /// Load the workflow from this manifest instead of the one the run started from
    #[arg(long, value_name = "MANIFEST")]
    manifest: Option<PathBuf>,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Which runtime drives the run from here on
    #[arg(long, value_enum, default_value = "evented")]
    runtime: RuntimeKind,
}

/// Runs `weft resume` with the runtime `--runtime` names (the run may have
/// been started by either: both record it in the same store).
pub fn run(home: &Home, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id)
        .context("run id")
        .map_err(Failure::invalid)?;
    let payload = json_arg(&args.data, "--data").map_err(Failure::invalid)?;
    let target = match (&args.step, &args.label) {
        _ if args.all => ResumeTarget::All,
        (Some(path), _) => ResumeTarget::Path(
            StepPath::parse(path)
                .context("--step")
                .map_err(Failure::invalid)?,
        ),
        (None, Some(label)) => ResumeTarget::Label(label.clone()),
        (None, None) => ResumeTarget::Only,
    };
    let store = engine::open_store(home, args.db.as_ref())?;
    let loaded = stored_workflow(home, &store, &run_id, args.manifest.as_ref())?;
    let registered = engine::registered(&loaded)?;
    let outcome = match args.runtime {
        RuntimeKind::Evented => {
            engine::evented(store.clone()).resume(Arc::clone(&registered), run_id, target, payload)
        }
        RuntimeKind::Default => engine::default(store.clone())
            .resume(&registered, &run_id, &target, payload, &mut LogObserver)
            .map(|run| run.result()),
    };
    let result = engine::settle(&store, &registered, outcome)?;
    let events = engine::stored_events(&store, &result.run_id);
    Ok(report(&result, &events, args.json))
}

/// Loads the workflow a stored run started from (or `manifest` instead),
/// refusing a manifest whose text changed since unless it was given explicitly.
pub fn stored_workflow(
    home: &Home,
    store: &SqliteStore,
    run: &RunId,
    manifest: Option<&PathBuf>,
) -> Result<Loaded, Failure> {
    let (meta, _) = engine::load_run(store, run)?;
    let path = manifest
        .cloned()
        .unwrap_or_else(|| PathBuf::from(&meta.manifest));
    let loaded = load(home, &path)?;
    if manifest.is_none() && meta.manifest_sha256 != loaded.sha256 {
        return Err(Failure::invalid(anyhow!(
            "run {run}: {} changed since the run started; pass --manifest to use it anyway",
            path.display()
        )));
    }
    Ok(loaded)
}
