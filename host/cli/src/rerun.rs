//! `weft rerun`: time travel — a new run that takes an old run's results of
//! everything before an address and executes from there on.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{Clock as _, RunId, StepPath};
use weft_runtime::SystemClock;

use weft_runtime::{Request, RuntimeKind};

use crate::client::Client;
use crate::engine;
use crate::exit::{Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::load_run_workflow;
use crate::output::SleepNotes;
use crate::remote;
use crate::run::report_stored;

/// Arguments of `weft rerun`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the run to rerun (it is not changed)
    #[arg(value_name = "RUN_ID")]
    run: String,
    /// The address to execute from (e.g. `charge`, `items[3]/enrich`,
    /// `again#2/check`, `charge-flow/charge`); the old run's results of
    /// everything before it are taken over
    #[arg(long, value_name = "PATH")]
    from: String,
    /// The input of the --from address instead of what precedes it: JSON
    /// text, or @FILE
    #[arg(long, short, value_name = "JSON|@FILE")]
    input: Option<String>,
    /// Use this id for the new run instead of a new UUID
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// Print the result as one JSON object instead of per-step lines
    #[arg(long)]
    json: bool,
    /// Which runtime drives the new run
    #[arg(long, default_value = "evented", value_parser = engine::runtime_arg())]
    runtime: RuntimeKind,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

/// Runs `weft rerun`.
pub fn run(home: &Home, server: Option<&Client>, args: Args) -> Outcome {
    let old = RunId::new(&args.run)
        .context("run id")
        .map_err(Failure::invalid)?;
    let from = StepPath::parse(&args.from)
        .context("--from")
        .map_err(Failure::invalid)?;
    let input = args
        .input
        .as_deref()
        .map(|text| json_arg(text, "--input"))
        .transpose()
        .map_err(Failure::invalid)?;
    let new = match &args.run_id {
        Some(id) => RunId::new(id)
            .context("--run-id")
            .map_err(Failure::invalid)?,
        None => RunId::new(&uuid::Uuid::new_v4().to_string()).map_err(Failure::other)?,
    };
    if let Some(client) = server {
        if args.db.is_some() {
            return Err(remote::local_only("--db"));
        }
        let mut body = serde_json::json!({ "from": from.to_string(), "run_id": new.as_str() });
        if let Some(input) = input {
            body["input"] = input;
        }
        let started = remote::run_result(
            client
                .post_json(&remote::run_path(old.as_str(), "/rerun"), &body)?
                .ok()?,
        )?;
        let watcher = crate::watch::Watcher::new(args.json, false);
        return remote::settle_and_report(client, started.run_id.as_str(), 0, watcher, args.json);
    }
    let store = engine::open_store(home, args.db.as_ref())?;
    // The new run runs the workflow the old one is pinned to.
    let (meta, events) = engine::load_run(&*store, &old)?;
    let loaded = load_run_workflow(home, &*store, &meta)?;
    let registered = engine::registered(&loaded, meta.workflow_digest.clone());
    let first = weft_core::rerun(
        &registered.workflow,
        &events,
        new.clone(),
        from,
        input,
        SystemClock.now(),
    )
    .map_err(Failure::invalid)?;
    let request = Request::StartWith {
        workflow: Arc::clone(&registered),
        run: new,
        events: first,
    };
    let outcome = engine::runtime(home, store.clone(), args.runtime).call(request, &mut SleepNotes);
    let result = engine::settle(&*store, &registered, outcome)?;
    Ok(report_stored(&*store, &result, args.json))
}
