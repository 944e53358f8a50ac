//! `weft cancel`: stop a running or suspended run for good.

use std::path::PathBuf;

use anyhow::Context as _;
use weft_core::RunId;
use weft_runtime::{NoObserver, Request, RuntimeKind};

use crate::client::Client;
use crate::engine;
use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::load::load_run_plan;
use crate::remote;

use crate::run::{failure, report_stored};

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

/// Runs `weft cancel`: appends `run-canceled` and takes the run's lease in
/// one transaction (from whichever process holds it: that process is fenced
/// out, commits nothing more, stops at its next step boundary and reports
/// the cancellation).
pub fn run(home: &Home, server: Option<&Client>, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id)
        .context("run id")
        .map_err(Failure::invalid)?;
    if let Some(client) = server {
        if args.db.is_some() {
            return Err(remote::local_only("--db"));
        }
        let body = serde_json::json!({ "reason": args.reason });
        let result = remote::run_result(
            client
                .post_json(&remote::run_path(run_id.as_str(), "/cancel"), &body)?
                .ok()?,
        )?;
        return Ok(remote::report(client, &result, args.json));
    }
    let store = engine::open_store(home, args.db.as_ref())?;
    let meta = engine::run_meta(&*store, &run_id)?;
    let loaded = load_run_plan(home, &*store, &meta)?;
    let registered = engine::registered(&loaded, meta.workflow_digest.clone());
    // Cancelling drives nothing: the lighter configuration does it.
    let request = Request::Cancel {
        workflow: registered,
        run: run_id,
        reason: args.reason,
    };
    let result = engine::runtime(home, store.clone(), RuntimeKind::Default)
        .call(request, &mut NoObserver)
        .map_err(failure)?;
    Ok(report_stored(&*store, &result, args.json))
}
