//! `weft recover`: pick up runs a crashed (or killed) weft process left running.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use weft_core::{EventStore as _, RunStatus};
use weft_runtime::RuntimeError;

use crate::engine;
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;
use crate::load::load_run_workflow;
use crate::output::{self, escape};

/// Arguments of `weft recover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Print one JSON result per recovered run instead of a line
    #[arg(long)]
    json: bool,
}

/// Runs `weft recover`: every run whose status is `running` is driven to its
/// end (or next suspension). Steps whose completion was committed never run
/// again; steps that were in flight run again with the same idempotency key.
/// Assumes no other weft process is driving those runs right now.
pub fn run(home: &Home, args: Args) -> Outcome {
    let store = engine::open_store(home, args.db.as_ref())?;
    let running = store
        .list_runs(Some(RunStatus::Running))
        .map_err(Failure::other)?;
    if running.is_empty() {
        if !args.json {
            output::print(|out| writeln!(out, "no runs to recover"))?;
        }
        return Ok(Code::Success);
    }
    let runtime = engine::evented(store.clone());
    let mut failures = 0;
    // Every run is handed to the runtime first, so that they all go on at
    // once (runs that sleep wait side by side, out of memory); each
    // manifest is loaded (and its components prepared) once.
    let mut workflows = HashMap::new();
    let mut pending = Vec::with_capacity(running.len());
    for summary in running {
        let run = summary.meta.run_id.clone();
        // Pinned runs share a workflow by lock digest; older runs by manifest.
        let key = (
            summary.meta.workflow_digest.clone(),
            summary.meta.manifest.clone(),
            summary.meta.manifest_sha256.clone(),
        );
        let registered = match workflows.get(&key) {
            Some(registered) => Ok(Arc::clone(registered)),
            None => load_run_workflow(home, &store, &summary.meta).map(|loaded| {
                let registered = engine::registered(&loaded, summary.meta.workflow_digest.clone());
                workflows.insert(key, Arc::clone(&registered));
                registered
            }),
        };
        let submitted = registered.map(|registered| {
            let reply = runtime.submit_recover(Arc::clone(&registered), run.clone());
            (registered, reply)
        });
        pending.push((run, submitted));
    }
    for (run, submitted) in pending {
        let outcome = submitted.and_then(|(registered, reply)| {
            let outcome = reply.recv().unwrap_or(Err(RuntimeError::ShutDown));
            engine::settle(&store, &registered, outcome)
        });
        // A closed stdout stops the printing, never the recovering.
        match outcome {
            Ok(result) if args.json => {
                output::print(|out| {
                    serde_json::to_writer(&mut *out, &result)?;
                    writeln!(out)
                })?;
            }
            Ok(result) => {
                output::print(|out| {
                    writeln!(
                        out,
                        "run {}: recovered, now {}",
                        escape(run.as_str()),
                        result.status
                    )
                })?;
            }
            Err(failure) => {
                failures += 1;
                eprintln!("run {}: cannot recover: {failure}", escape(run.as_str()));
            }
        }
    }
    Ok(if failures == 0 {
        Code::Success
    } else {
        Code::Other
    })
}
