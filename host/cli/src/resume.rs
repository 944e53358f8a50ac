//! `weft resume`: continue a suspended run, in this or any other process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use weft_core::{ResumeTarget, RunId, StepPath, SystemClock};
use weft_runtime::DefaultRuntime;

use crate::engine;
use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::load;
use crate::output::LogObserver;
use crate::run::{failure, report, save};

/// Arguments of `weft resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the suspended run (printed by `weft run`)
    run_id: String,
    /// The path of the suspended step to resume (e.g. `approve`)
    #[arg(long, value_name = "PATH", conflicts_with = "label")]
    step: Option<String>,
    /// Resume the suspended step that has this resume label
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
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
}

/// Runs `weft resume`. Runs started by the evented runtime are found in the
/// store; runs started with `--runtime default` in their saved file.
pub fn run(home: &Home, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id)
        .context("run id")
        .map_err(Failure::invalid)?;
    let payload = json_arg(&args.data, "--data").map_err(Failure::invalid)?;
    let target = match (&args.step, &args.label) {
        (Some(path), _) => ResumeTarget::Path(
            StepPath::parse(path)
                .context("--step")
                .map_err(Failure::invalid)?,
        ),
        (None, Some(label)) => ResumeTarget::Label(label.clone()),
        (None, None) => ResumeTarget::Only,
    };
    let check_manifest = |path: &PathBuf, sha: &str, loaded_sha: &str| {
        if args.manifest.is_none() && sha != loaded_sha {
            return Err(Failure::invalid(anyhow!(
                "run {run_id}: {} changed since the run started; pass --manifest to resume with it anyway",
                path.display()
            )));
        }
        Ok(())
    };

    if home.has_run_file(&run_id) && args.db.is_none() {
        let file = home.load_run(&run_id).map_err(Failure::invalid)?;
        let manifest = args
            .manifest
            .clone()
            .unwrap_or_else(|| file.manifest.clone());
        let loaded = load(home, &manifest)?;
        check_manifest(&manifest, &file.manifest_sha256, &loaded.sha256)?;
        let mut run = file
            .run
            .restore(loaded.workflow().clone())
            .map_err(Failure::invalid)?;
        let runtime = DefaultRuntime::new(loaded.steps.clone(), Arc::new(SystemClock));
        runtime
            .resume(&mut run, &target, payload, &mut LogObserver)
            .map_err(failure)?;
        save(home, &loaded, &manifest, &run)?;
        return Ok(report(&run.result(), run.events(), args.json));
    }

    let store = engine::open_store(home, args.db.as_ref())?;
    let (meta, _) = engine::load_run(&store, &run_id)?;
    let manifest = args
        .manifest
        .clone()
        .unwrap_or_else(|| PathBuf::from(&meta.manifest));
    let loaded = load(home, &manifest)?;
    check_manifest(&manifest, &meta.manifest_sha256, &loaded.sha256)?;
    let runtime = engine::evented(store.clone());
    let result = runtime
        .resume(engine::registered(&loaded)?, run_id, target, payload)
        .map_err(failure)?;
    drop(runtime);
    let events = engine::stored_events(&store, &result.run_id);
    Ok(report(&result, &events, args.json))
}
