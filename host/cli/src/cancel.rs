//! `weft cancel`: stop a running or suspended run for good.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{RunId, SystemClock};
use weft_runtime::DefaultRuntime;

use crate::engine;
use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::load::load;
use crate::output::LogObserver;
use crate::run::{failure, report, save};

/// Arguments of `weft cancel`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the run to cancel
    run_id: String,
    /// Why (recorded in the `run-canceled` event)
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// Print the result as one JSON object
    #[arg(long)]
    json: bool,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

/// Runs `weft cancel`. Like `weft resume`, it finds evented runs in the store
/// and default-runtime runs in their saved file.
pub fn run(home: &Home, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id)
        .context("run id")
        .map_err(Failure::invalid)?;
    if home.has_run_file(&run_id) && args.db.is_none() {
        let file = home.load_run(&run_id).map_err(Failure::invalid)?;
        let loaded = load(home, &file.manifest)?;
        let mut run = file
            .run
            .restore(loaded.workflow().clone())
            .map_err(Failure::invalid)?;
        let runtime = DefaultRuntime::new(loaded.steps.clone(), Arc::new(SystemClock));
        runtime
            .cancel(&mut run, args.reason, &mut LogObserver)
            .map_err(failure)?;
        save(home, &loaded, &file.manifest, &run)?;
        return Ok(report(&run.result(), run.events(), args.json));
    }
    let store = engine::open_store(home, args.db.as_ref())?;
    let (meta, _) = engine::load_run(&store, &run_id)?;
    let loaded = load(home, &PathBuf::from(&meta.manifest))?;
    let runtime = engine::evented(store.clone());
    let result = runtime
        .cancel(engine::registered(&loaded)?, run_id, args.reason)
        .map_err(failure)?;
    drop(runtime);
    let events = engine::stored_events(&store, &result.run_id);
    Ok(report(&result, &events, args.json))
}
