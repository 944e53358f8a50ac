//! `weft run`: start a run and drive it until it finishes or suspends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{Event, RunId, RunResult, RunStatus};
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
    /// Return once the run has nothing to do but wait for a timer (a sleep,
    /// a retry delay), leaving it `running` (exit 0); `weft recover`
    /// continues it
    #[arg(long)]
    detach: bool,
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
    let registered = engine::registered(&loaded)?;
    let store = engine::open_store(home, args.db.as_ref())?;
    let registered_run = Arc::clone(&registered);
    let outcome = match (args.runtime, args.detach) {
        (RuntimeKind::Evented, false) => {
            engine::evented(store.clone()).start(registered_run, run_id, input)
        }
        (RuntimeKind::Evented, true) => {
            engine::evented(store.clone()).start_detached(registered_run, run_id, input)
        }
        (RuntimeKind::Default, detach) => {
            let runtime = engine::default(store.clone());
            if detach {
                runtime.start_detached(&registered, run_id, input, &mut LogObserver)
            } else {
                runtime.start(&registered, run_id, input, &mut LogObserver)
            }
            .map(|run| run.result())
        }
    };
    let result = if args.detach {
        outcome.map_err(failure)?
    } else {
        engine::settle(&store, &registered, outcome)?
    };
    let events = engine::stored_events(&store, &result.run_id);
    let code = report(&result, &events, args.json);
    Ok(match result.status {
        RunStatus::Running if args.detach => Code::Success,
        _ => code,
    })
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
