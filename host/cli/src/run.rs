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
use crate::watch::Watcher;

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
    /// Print the run's events as they happen (like `weft events`; JSON lines
    /// with --json), then the result
    #[arg(long)]
    watch: bool,
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
    let mut watcher = args.watch.then(|| Watcher::new(args.json));
    let outcome = match (args.runtime, &mut watcher) {
        (RuntimeKind::Evented, Some(watcher)) => {
            watch_evented(&store, &registered, run_id, input, watcher)
        }
        (RuntimeKind::Evented, None) => {
            engine::evented(store.clone()).start(Arc::clone(&registered), run_id, input)
        }
        (RuntimeKind::Default, Some(watcher)) => engine::default(store.clone())
            .start(&registered, run_id, input, watcher)
            .map(|run| run.result()),
        (RuntimeKind::Default, None) => engine::default(store.clone())
            .start(&registered, run_id, input, &mut LogObserver)
            .map(|run| run.result()),
    };
    if let Some(watcher) = watcher
        && !watcher.finish()?
    {
        // Stdout closed while watching: nothing more to print.
        let result = engine::settle(&store, &registered, outcome)?;
        return Ok(Code::of(result.status));
    }
    let result = engine::settle(&store, &registered, outcome)?;
    let events = engine::stored_events(&store, &result.run_id);
    Ok(report(&result, &events, args.json))
}

/// Starts a run on the evented runtime and prints its events as they
/// commit, until the run finishes or suspends.
fn watch_evented(
    store: &Arc<weft_store_sqlite::SqliteStore>,
    registered: &Arc<weft_runtime::Registered>,
    run_id: RunId,
    input: serde_json::Value,
    watcher: &mut Watcher,
) -> Result<RunResult, RuntimeError> {
    let runtime = engine::evented(Arc::clone(store));
    let (watch, events) = crossbeam_channel::unbounded();
    let result = runtime.start_watched(Arc::clone(registered), run_id, input, watch);
    loop {
        crossbeam_channel::select! {
            recv(events) -> event => match event {
                Ok(event) => watcher.event(&event),
                // The run is done here; its result is on its way.
                Err(_) => return result.recv().unwrap_or(Err(RuntimeError::ShutDown)),
            },
            recv(result) -> outcome => {
                // Every event committed before the result was sent is queued.
                for event in events.try_iter() {
                    watcher.event(&event);
                }
                return outcome.unwrap_or(Err(RuntimeError::ShutDown));
            }
        }
    }
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
