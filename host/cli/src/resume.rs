//! `weft resume`: continue a suspended run, in this or any other process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use weft_core::{ResumeTarget, RunId, StepPath, SystemClock};
use weft_runtime::{DefaultRuntime, RuntimeError};

use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::load;
use crate::output::Printer;
use crate::run::finish;

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
}

/// Runs `weft resume`.
pub fn run(home: &Home, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id).context("run id").map_err(Failure::invalid)?;
    let payload = json_arg(&args.data, "--data").map_err(Failure::invalid)?;
    let target = match (&args.step, &args.label) {
        (Some(path), _) => {
            ResumeTarget::Path(StepPath::parse(path).context("--step").map_err(Failure::invalid)?)
        }
        (None, Some(label)) => ResumeTarget::Label(label.clone()),
        (None, None) => ResumeTarget::Only,
    };
    let file = home.load_run(&run_id).map_err(Failure::invalid)?;
    let manifest = args.manifest.clone().unwrap_or_else(|| file.manifest.clone());
    let loaded = load(home, &manifest)?;
    if args.manifest.is_none() && loaded.sha256 != file.manifest_sha256 {
        return Err(Failure::invalid(anyhow!(
            "run {run_id}: {} changed since the run started; pass --manifest to resume with it anyway",
            manifest.display()
        )));
    }
    let mut run = file.run.restore(loaded.workflow().clone()).map_err(Failure::invalid)?;
    let runtime = DefaultRuntime::new(loaded.steps.clone(), Arc::new(SystemClock));
    let mut printer = Printer { steps: !args.json };
    runtime.resume(&mut run, &target, payload, &mut printer).map_err(|e| match e {
        RuntimeError::Resume(_) => Failure::invalid(e),
        other => Failure::other(other),
    })?;
    finish(home, &loaded, &manifest, &run, args.json)
}
