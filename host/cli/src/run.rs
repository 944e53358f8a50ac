//! `weft run`: start a run and drive it until it finishes or suspends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{Event, RunId, RunResult};
use weft_runtime::RuntimeError;

use crate::engine::{self, RuntimeKind};
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::load;
use crate::output::{self, LogObserver};

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
    /// Which runtime drives the run
    #[arg(long, value_enum, default_value = "evented")]
    runtime: RuntimeKind,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

/// Maps a runtime error to an exit code: bad requests are invalid input.
pub fn failure(error: RuntimeError) -> Failure {
    match error {
        RuntimeError::InvalidInput { .. }
        | RuntimeError::Resume(_)
        | RuntimeError::Conflict { .. }
        | RuntimeError::Exists { .. }
        | RuntimeError::NotFound { .. }
        | RuntimeError::WrongWorkflow { .. }
        | RuntimeError::Replay { .. } => Failure::invalid(error),
        other => Failure::other(other),
    }
}

/// Runs `weft run`.
pub fn run(home: &Home, args: Args) -> Outcome {
    let input = json_arg(&args.input, "--input").map_err(Failure::invalid)?;
    let run_id = match &args.run_id {
        Some(id) => RunId::new(id)
            .context("--run-id")
            .map_err(Failure::invalid)?,
        None => RunId::new(&uuid::Uuid::new_v4().to_string()).map_err(Failure::other)?,
    };
    let loaded = load(home, &args.manifest)?;
    let store = engine::open_store(home, args.db.as_ref())?;
    // The run is pinned to the workflow as loaded now (see `weft resume --upgrade`).
    let digest = loaded.store_lock(&store)?;
    let registered = engine::registered(&loaded, Some(digest));
    let outcome = match args.runtime {
        RuntimeKind::Evented => {
            engine::evented(store.clone()).start(Arc::clone(&registered), run_id, input)
        }
        RuntimeKind::Default => engine::default(store.clone())
            .start(&registered, run_id, input, &mut LogObserver)
            .map(|run| run.result()),
    };
    let result = engine::settle(&store, &registered, outcome)?;
    let events = engine::stored_events(&store, &result.run_id);
    Ok(report(&result, &events, args.json))
}

/// Prints the result (human or JSON) and returns its exit code.
pub fn report(result: &RunResult, events: &[Event], json: bool) -> Code {
    if json {
        output::json(result);
    } else {
        output::summary(result, events);
    }
    Code::of(result.status)
}
