//! `weft run`: start a run and drive it until it finishes or suspends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{RunId, SystemClock};
use weft_runtime::{DefaultRuntime, Run, RuntimeError};

use crate::exit::{Code, Failure, Outcome};
use crate::home::{Home, RunFile};
use crate::input::json_arg;
use crate::load::{Loaded, load};
use crate::output::{self, Printer};

/// Arguments of `weft run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workflow manifest (.toml or .json)
    manifest: PathBuf,
    /// The workflow input: JSON text, or @FILE to read it from a file
    #[arg(long, short, value_name = "JSON|@FILE", default_value = "{}")]
    input: String,
    /// Print the result as one JSON object instead of per-step lines
    #[arg(long)]
    json: bool,
    /// Use this run id instead of a new UUID
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
}

/// Runs `weft run`.
pub fn run(home: &Home, args: Args) -> Outcome {
    let input = json_arg(&args.input, "--input").map_err(Failure::invalid)?;
    let run_id = match args.run_id {
        Some(id) => RunId::new(&id).context("--run-id").map_err(Failure::invalid)?,
        None => RunId::new(&uuid::Uuid::new_v4().to_string()).map_err(Failure::other)?,
    };
    let loaded = load(home, &args.manifest)?;
    let runtime = DefaultRuntime::new(loaded.steps.clone(), Arc::new(SystemClock));
    let mut printer = Printer { steps: !args.json };
    let run = runtime
        .start(loaded.workflow().clone(), run_id, input, &mut printer)
        .map_err(|e| match e {
            RuntimeError::InvalidInput { .. } => Failure::invalid(e),
            other => Failure::other(other),
        })?;
    finish(home, &loaded, &args.manifest, &run, args.json)
}

/// Saves the run (so a suspended run can be resumed from any process) and
/// prints its result.
pub fn finish(
    home: &Home,
    loaded: &Loaded,
    manifest: &std::path::Path,
    run: &Run,
    json: bool,
) -> Outcome {
    let result = run.result();
    let manifest = std::path::absolute(manifest)
        .with_context(|| format!("cannot resolve {}", manifest.display()))
        .map_err(Failure::other)?;
    let file = RunFile { manifest, manifest_sha256: loaded.sha256.clone(), run: run.save() };
    home.save_run(&result.run_id, &file).map_err(Failure::other)?;
    if json {
        output::json(&result);
    } else {
        output::summary(&result);
    }
    Ok(Code::of(result.status))
}
