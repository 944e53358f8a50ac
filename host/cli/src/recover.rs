//! `weft recover`: pick up runs whose driving process died (or let go).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use weft_core::{RunId, RunMeta, RunResult, RunStatus, Store};
use weft_runtime::{Registered, Request, Runtime, RuntimeError, RuntimeKind};

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
    /// Also wait for runs another live process holds: each is taken over
    /// if its lease expires (its process stopped renewing it), or reported
    /// once it settles there
    #[arg(long)]
    wait: bool,
    /// Which runtime drives the recovered runs (either continues runs
    /// started by either)
    #[arg(long, default_value = "evented", value_parser = engine::runtime_arg())]
    runtime: RuntimeKind,
}

/// Runs `weft recover`: every `running` run that no live process holds (no
/// lease, an expired one, or one whose process is provably gone from this
/// host) is taken over and driven to its end (or next suspension). Steps
/// whose completion was committed never run again; steps that were in
/// flight run again with the same idempotency key. Runs a live process
/// holds are left to it (said on stderr), or with `--wait` waited for.
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
    let runtime = engine::runtime(home, store.clone(), args.runtime);
    let mut recovering = Recovering {
        home,
        store: &store,
        runtime: &*runtime,
        workflows: HashMap::new(),
        json: args.json,
        failures: 0,
    };
    // Every run is handed to the runtime first, so that they all go on at
    // once (runs that sleep wait side by side, out of memory).
    let mut pending: Vec<(RunId, Submitted)> = running
        .iter()
        .map(|summary| {
            (
                summary.meta.run_id.clone(),
                recovering.submit(&summary.meta),
            )
        })
        .collect();
    let metas: HashMap<RunId, RunMeta> = running
        .into_iter()
        .map(|s| (s.meta.run_id.clone(), s.meta))
        .collect();
    loop {
        let mut held = Vec::new();
        for (run, submitted) in pending {
            match recovering.outcome(&run, submitted) {
                Ok(result) => recovering.report(&run, &result)?,
                Err(Held {
                    owner,
                    remaining_ms,
                }) => held.push((run, owner, remaining_ms)),
            }
        }
        if held.is_empty() {
            break;
        }
        if !args.wait {
            for (run, owner, _) in &held {
                eprintln!(
                    "run {}: left alone: a live weft process drives it ({}); `weft recover --wait` waits for it",
                    escape(run.as_str()),
                    escape(owner)
                );
            }
            break;
        }
        // Look again when the first lease could have expired, and at least
        // every second (a run may settle there meanwhile). A lease renewed
        // meanwhile just means another look.
        let soonest = held.iter().map(|(_, _, ms)| *ms).min().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(soonest.clamp(10, 1_000)));
        let statuses: HashMap<RunId, RunStatus> = store
            .list_runs(None)
            .map_err(Failure::other)?
            .into_iter()
            .map(|s| (s.meta.run_id, s.status))
            .collect();
        pending = Vec::new();
        for (run, _, _) in held {
            match statuses.get(&run) {
                Some(RunStatus::Running) | None => {
                    let submitted = recovering.submit(&metas[&run]);
                    pending.push((run, submitted));
                }
                Some(status) => recovering.report_elsewhere(&run, *status)?,
            }
        }
    }
    Ok(if recovering.failures == 0 {
        Code::Success
    } else {
        Code::Other
    })
}

/// A run handed to the runtime: its workflow and the reply to wait for.
type Submitted = Result<(Arc<Registered>, Receiver<Result<RunResult, RuntimeError>>), Failure>;

/// A run another live process holds.
struct Held {
    owner: String,
    remaining_ms: u64,
}

struct Recovering<'a> {
    home: &'a Home,
    store: &'a Arc<dyn Store>,
    runtime: &'a dyn Runtime,
    /// Workflows loaded so far (each manifest is loaded, and its components
    /// prepared, once): pinned runs by lock digest, older runs by manifest.
    workflows: HashMap<(Option<String>, String, String), Arc<Registered>>,
    json: bool,
    failures: usize,
}

impl Recovering<'_> {
    fn submit(&mut self, meta: &RunMeta) -> Submitted {
        let key = (
            meta.workflow_digest.clone(),
            meta.manifest.clone(),
            meta.manifest_sha256.clone(),
        );
        let registered = match self.workflows.get(&key) {
            Some(registered) => Arc::clone(registered),
            None => {
                let loaded = load_run_workflow(self.home, &**self.store, meta)?;
                let registered = engine::registered(&loaded, meta.workflow_digest.clone());
                self.workflows.insert(key, Arc::clone(&registered));
                registered
            }
        };
        let request = Request::Recover {
            workflow: Arc::clone(&registered),
            run: meta.run_id.clone(),
        };
        let reply = self.runtime.submit(request, None);
        Ok((registered, reply))
    }

    /// Waits for a submitted run: its result, or who holds it. A failure is
    /// said on stderr and counted (then there is no result to print).
    fn outcome(&mut self, run: &RunId, submitted: Submitted) -> Result<Option<RunResult>, Held> {
        let outcome = submitted.and_then(|(registered, reply)| {
            match reply.recv().unwrap_or(Err(RuntimeError::ShutDown)) {
                Err(RuntimeError::Leased {
                    owner,
                    remaining_ms,
                    ..
                }) => Ok(Err(Held {
                    owner,
                    remaining_ms,
                })),
                other => engine::settle(&**self.store, &registered, other).map(Ok),
            }
        });
        match outcome {
            Ok(Ok(result)) => Ok(Some(result)),
            Ok(Err(held)) => Err(held),
            Err(failure) => {
                self.failures += 1;
                eprintln!("run {}: cannot recover: {failure}", escape(run.as_str()));
                Ok(None)
            }
        }
    }

    /// Prints a recovered run (a closed stdout stops the printing, never
    /// the recovering).
    fn report(&self, run: &RunId, result: &Option<RunResult>) -> Result<(), Failure> {
        let Some(result) = result else {
            return Ok(());
        };
        if self.json {
            output::print(|out| {
                serde_json::to_writer(&mut *out, result)?;
                writeln!(out)
            })?;
        } else {
            output::print(|out| {
                writeln!(
                    out,
                    "run {}: recovered, now {}",
                    escape(run.as_str()),
                    result.status
                )
            })?;
        }
        Ok(())
    }

    /// Says that a run another process held settled there.
    fn report_elsewhere(&self, run: &RunId, status: RunStatus) -> Result<(), Failure> {
        if !self.json {
            output::print(|out| {
                writeln!(
                    out,
                    "run {}: settled in the process that held it, now {status}",
                    escape(run.as_str())
                )
            })?;
        }
        Ok(())
    }
}
