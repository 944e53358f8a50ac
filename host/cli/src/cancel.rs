//! `weft cancel`: stop a running or suspended run for good.

use std::path::PathBuf;

use anyhow::Context as _;
use weft_core::RunId;

use crate::engine;
use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::load::load_run_plan;
use crate::output::{self, LogObserver};
use crate::run::{failure, report};

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

/// Runs `weft cancel`: takes the run's lease (from whichever process holds
/// it: that process is fenced out, commits nothing more, stops at its next
/// step boundary and reports the cancellation) and appends `run-canceled`
/// (a single event, so the default runtime does it).
pub fn run(home: &Home, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id)
        .context("run id")
        .map_err(Failure::invalid)?;
    let store = engine::open_store(home, args.db.as_ref())?;
    let meta = engine::run_meta(&*store, &run_id)?;
    let loaded = load_run_plan(home, &*store, &meta)?;
    let registered = engine::registered(&loaded, meta.workflow_digest.clone());
    let run = engine::default(home, store.clone())
        .cancel(&registered, &run_id, args.reason, &mut LogObserver)
        .map_err(failure)?;
    Ok(report(
        &run.result(),
        &mut output::in_memory(run.events()),
        args.json,
    ))
}
