//! `weft resume`: continue a suspended run, in this or any other process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use weft_core::{
    Clock as _, Event, ResumeTarget, RunId, RunMeta, RunState, StepPath, Store, StoreError,
    check_upgrade,
};

use weft_runtime::SystemClock;

use weft_runtime::{Request, RuntimeKind};

use crate::client::Client;
use crate::engine;
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;
use crate::input::json_arg;
use crate::load::{Loaded, load, load_run_workflow, locked_manifest, run_lock};
use crate::remote;
use crate::run::report_stored;
use crate::watch::Watcher;

/// Arguments of `weft resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The id of the suspended run (printed by `weft run`)
    run_id: String,
    /// The path of the suspended step to resume (e.g. `approve`)
    #[arg(long, value_name = "PATH", conflicts_with = "label")]
    step: Option<String>,
    /// Resume the suspended step that has this resume label
    #[arg(long, value_name = "LABEL", conflicts_with = "all")]
    label: Option<String>,
    /// Resume every suspended step, all with the same --data
    #[arg(long, conflicts_with = "step")]
    all: bool,
    /// The resume payload: JSON text, or @FILE
    #[arg(long, short, value_name = "JSON|@FILE", default_value = "{}")]
    data: String,
    /// Print the result as one JSON object instead of per-step lines
    #[arg(long)]
    json: bool,
    /// First print each event as it happens, numbered as `weft events`
    /// numbers it (with --json: one JSON object per line)
    #[arg(long)]
    watch: bool,
    /// Move the run to the workflow on disk (its manifest, or --manifest)
    /// instead of the workflow it is pinned to, if its recorded events still
    /// apply to it; the run is then pinned to that workflow
    #[arg(long)]
    upgrade: bool,
    /// With --upgrade: the manifest to move the run to [default: the one the run started from]
    #[arg(long, value_name = "MANIFEST", requires = "upgrade")]
    manifest: Option<PathBuf>,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Which runtime drives the run from here on
    #[arg(long, default_value = "evented", value_parser = engine::runtime_arg())]
    runtime: RuntimeKind,
}

/// Runs `weft resume` with the runtime `--runtime` names (the run may have
/// been started by either: both record it in the same store).
pub fn run(home: &Home, server: Option<&Client>, args: Args) -> Outcome {
    let run_id = RunId::new(&args.run_id)
        .context("run id")
        .map_err(Failure::invalid)?;
    let payload = json_arg(&args.data, "--data").map_err(Failure::invalid)?;
    let target = match (&args.step, &args.label) {
        _ if args.all => ResumeTarget::All,
        (Some(path), _) => ResumeTarget::Path(
            StepPath::parse(path)
                .context("--step")
                .map_err(Failure::invalid)?,
        ),
        (None, Some(label)) => ResumeTarget::Label(label.clone()),
        (None, None) => ResumeTarget::Only,
    };
    if let Some(client) = server {
        return remote_resume(client, &run_id, target, payload, &args);
    }
    let store = engine::open_store(home, args.db.as_ref())?;
    let (meta, events) = engine::load_run(&*store, &run_id)?;
    let (loaded, digest) = if args.upgrade {
        upgrade(home, &*store, &meta, &events, args.manifest.as_deref())?
    } else {
        (
            load_run_workflow(home, &*store, &meta)?,
            meta.workflow_digest.clone(),
        )
    };
    let registered = engine::registered(&loaded, digest);
    // With --watch the run's new events are printed as they happen (on the
    // evented runtime, as they commit); a sleep is said on stderr either way.
    let mut watcher = Watcher::after(events.len(), args.json, args.watch);
    let request = Request::Resume {
        workflow: Arc::clone(&registered),
        run: run_id,
        target,
        payload,
    };
    let outcome = engine::runtime(home, store.clone(), args.runtime).call(request, &mut watcher);
    let open = watcher.finish()?;
    let result = engine::settle(&*store, &registered, outcome)?;
    if !open {
        // Stdout closed while watching: nothing more to print.
        return Ok(Code::of(result.status));
    }
    Ok(report_stored(&*store, &result, args.json))
}

/// `--upgrade`: loads the workflow from `manifest` (default: the run's own
/// manifest path), checks that the run's recorded events apply to it (every
/// recorded address is a node of the same kind running the same step, and
/// the events replay), and re-pins the run to it, fenced by the run's last
/// event. Returns the loaded workflow and the new pin.
fn upgrade(
    home: &Home,
    store: &dyn Store,
    meta: &RunMeta,
    events: &[Event],
    manifest: Option<&Path>,
) -> Result<(Loaded, Option<String>), Failure> {
    let run = &meta.run_id;
    let path = manifest.unwrap_or_else(|| Path::new(&meta.manifest));
    let loaded = load(home, path)?;
    let refuse = |reason: String| {
        Failure::invalid(anyhow!(
            "run {run}: cannot upgrade to {}: {reason}",
            path.display()
        ))
    };
    // The plan the events were recorded on: the lock's (a run recorded
    // before locks existed has none; its events are checked alone).
    let pinned = match run_lock(store, meta)? {
        Some(lock) => Some(locked_manifest(run, &lock)?),
        None => None,
    };
    check_upgrade(
        pinned.as_ref().map(|m| &**m.workflow()),
        loaded.workflow(),
        events,
    )
    .map_err(|e| refuse(e.to_string()))?;
    RunState::replay(Arc::clone(loaded.workflow()), events)
        .map_err(|e| refuse(format!("its events do not replay on it: {e}")))?;
    let digest = loaded.store_lock(store)?;
    store
        .repin(run, events.len() as u64, &digest, SystemClock.now())
        .map_err(|e| match e {
            StoreError::Conflict { .. } => Failure::invalid(anyhow!(
                "run {run}: it changed while it was being upgraded; try again"
            )),
            held @ StoreError::Leased { .. } => {
                Failure::invalid(anyhow::Error::new(held).context(format!(
                    "run {run}: a running run cannot be upgraded while another process drives it"
                )))
            }
            other => Failure::other(
                anyhow::Error::new(other)
                    .context(format!("run {run}: cannot pin it to the new workflow")),
            ),
        })?;
    Ok((loaded, Some(digest)))
}

/// `weft resume --server`: the same request to the server, then follows
/// the run until it settles again.
fn remote_resume(
    client: &Client,
    run: &RunId,
    target: ResumeTarget,
    data: serde_json::Value,
    args: &Args,
) -> Outcome {
    if args.db.is_some() {
        return Err(remote::local_only("--db"));
    }
    if args.upgrade {
        return Err(remote::local_only("--upgrade"));
    }
    let mut body = serde_json::json!({ "data": data });
    match target {
        ResumeTarget::All => body["all"] = true.into(),
        ResumeTarget::Path(path) => body["step"] = path.to_string().into(),
        ResumeTarget::Label(label) => body["label"] = label.into(),
        ResumeTarget::Only => {}
    }
    let seen = remote::event_count(client, run.as_str())?;
    client
        .post_json(&remote::run_path(run.as_str(), "/resume"), &body)?
        .ok()?;
    let watcher = Watcher::after(
        usize::try_from(seen).unwrap_or(usize::MAX),
        args.json,
        args.watch,
    );
    remote::settle_and_report(client, run.as_str(), seen, watcher, args.json)
}
