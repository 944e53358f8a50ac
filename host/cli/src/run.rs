//! `weft run`: start a run and drive it until it finishes or suspends.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use weft_core::{RunId, RunResult, RunStatus};
use weft_runtime::RuntimeError;

use weft_runtime::{Request, RuntimeKind};

use crate::client::Client;
use crate::engine;
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::load;
use crate::output;
use crate::remote;
use crate::watch::Watcher;

/// Arguments of `weft run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workflow manifest (.toml or .json); with --server, a manifest
    /// (deployed first: a no-op when deployed already) or the id of a
    /// deployed workflow
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
    #[arg(long, default_value = "evented", value_parser = engine::runtime_arg())]
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
        | RuntimeError::Replay { .. }
        | RuntimeError::Leased { .. } => Failure::invalid(error),
        other => Failure::other(other),
    }
}

/// Runs `weft run`.
pub fn run(home: &Home, server: Option<&Client>, args: Args) -> Outcome {
    let input = json_arg(&args.input, "--input").map_err(Failure::invalid)?;
    if let Some(client) = server {
        return remote_run(client, args, input);
    }
    let run_id = match &args.run_id {
        Some(id) => RunId::new(id)
            .context("--run-id")
            .map_err(Failure::invalid)?,
        None => RunId::new(&uuid::Uuid::new_v4().to_string()).map_err(Failure::other)?,
    };
    let loaded = load(home, &args.manifest)?;
    let store = engine::open_store(home, args.db.as_ref())?;
    // The run is pinned to the workflow as loaded now (see `weft resume --upgrade`).
    let digest = loaded.store_lock(&*store)?;
    let registered = engine::registered(&loaded, Some(digest));
    // Events reach the watcher as they happen: printed with `--watch`; a
    // sleep is always said on stderr.
    let mut watcher = Watcher::new(args.json, args.watch);
    let request = Request::Start {
        workflow: Arc::clone(&registered),
        run: run_id,
        input,
        detach: args.detach,
    };
    let outcome = engine::runtime(home, store.clone(), args.runtime).call(request, &mut watcher);
    let open = watcher.finish()?;
    let result = if args.detach {
        outcome.map_err(failure)?
    } else {
        engine::settle(&*store, &registered, outcome)?
    };
    if !open {
        // Stdout closed while watching: nothing more to print.
        return Ok(Code::of(result.status));
    }
    let code = report_stored(&*store, &result, args.json);
    Ok(match result.status {
        RunStatus::Running if args.detach => Code::Success,
        _ => code,
    })
}

/// `weft run --server`: deploys the manifest (unless given a deployed
/// workflow's id), starts the run on the server and follows it until it
/// settles (with `--detach`, returns at once: the server drives it).
fn remote_run(client: &Client, args: Args, input: serde_json::Value) -> Outcome {
    if args.db.is_some() {
        return Err(remote::local_only("--db"));
    }
    let mut body = if args.manifest.is_file() {
        let bytes = crate::bundle::pack(&args.manifest).map_err(Failure::invalid)?;
        let deployed = client
            .post_bytes("/v1/workflows", "application/x-tar", &bytes)?
            .ok()?;
        serde_json::json!({"workflow": deployed["id"], "version": deployed["digest"]})
    } else {
        let id = args.manifest.to_str().ok_or_else(|| {
            Failure::invalid(anyhow::anyhow!(
                "`{}` is neither a manifest file nor a workflow id",
                args.manifest.display()
            ))
        })?;
        serde_json::json!({"workflow": id})
    };
    body["input"] = input;
    if let Some(id) = &args.run_id {
        body["run_id"] = id.clone().into();
    }
    let started = remote::run_result(client.post_json("/v1/runs", &body)?.ok()?)?;
    let run = started.run_id.to_string();
    if args.detach {
        let code = report(&started, &mut |_| Ok(()), args.json);
        return Ok(match started.status {
            RunStatus::Running => Code::Success,
            _ => code,
        });
    }
    let watcher = Watcher::new(args.json, args.watch);
    remote::settle_and_report(client, &run, 0, watcher, args.json)
}

/// Prints the result (human or JSON) and returns its exit code.
pub fn report(result: &RunResult, events: output::Events<'_>, json: bool) -> Code {
    if json {
        output::json(result);
    } else {
        output::summary(result, events);
    }
    Code::of(result.status)
}

/// [`report`] of a run in `store`, whose events are read a page at a time.
pub fn report_stored(store: &dyn weft_core::EventStore, result: &RunResult, json: bool) -> Code {
    let run = &result.run_id;
    report(
        result,
        &mut |visit| crate::paged::each_stored(store, run, visit),
        json,
    )
}
