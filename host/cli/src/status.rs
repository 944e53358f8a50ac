//! `weft status`, `weft runs` and `weft events`: inspecting stored runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use weft_core::{Event, EventStore as _, RunId, RunState, RunStatus};
use weft_manifest::Manifest;

use crate::engine;
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;
use crate::output;

/// Arguments of `weft status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The run id
    run_id: String,
    /// Print the result as one JSON object
    #[arg(long)]
    json: bool,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

/// Arguments of `weft runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs with this status (running, success, failed, suspended, canceled)
    #[arg(long, value_name = "STATUS")]
    status: Option<String>,
    /// Print a JSON array
    #[arg(long)]
    json: bool,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

/// Arguments of `weft events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The run id
    run_id: String,
    /// Keep printing new events until the run finishes or suspends
    #[arg(long)]
    follow: bool,
    /// Print each event as one JSON object per line
    #[arg(long)]
    json: bool,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

fn parse_run(id: &str) -> Result<RunId, Failure> {
    RunId::new(id).map_err(Failure::invalid)
}

/// Runs `weft status`: the run's result, rebuilt from its events.
pub fn status(home: &Home, args: StatusArgs) -> Outcome {
    let run = parse_run(&args.run_id)?;
    let store = engine::open_store(home, args.db.as_ref())?;
    let (meta, events) = engine::load_run(&store, &run)?;
    let manifest =
        Manifest::load(std::path::Path::new(&meta.manifest)).map_err(Failure::invalid)?;
    let state = RunState::replay(Arc::clone(manifest.workflow()), &events)
        .map_err(|e| Failure::other(anyhow!("run {run}: the stored events do not replay: {e}")))?;
    let result = state.result();
    if args.json {
        output::json(&result);
    } else {
        output::summary(&result, &events);
    }
    Ok(Code::Success)
}

/// Runs `weft runs`: the stored runs, newest first.
pub fn runs(home: &Home, args: RunsArgs) -> Outcome {
    let status = match &args.status {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Failure::invalid(anyhow!(
                "--status: unknown status `{s}` (running, success, failed, suspended, canceled)"
            ))
        })?),
        None => None,
    };
    let store = engine::open_store(home, args.db.as_ref())?;
    let runs = store.list_runs(status).map_err(Failure::other)?;
    if args.json {
        println!("{}", serde_json::to_string(&runs).unwrap_or_default());
    } else {
        for r in &runs {
            println!(
                "{}  {:<9}  {:<24}  {} events",
                r.meta.run_id,
                r.status.as_str(),
                r.meta.workflow_id.as_str(),
                r.events
            );
        }
    }
    Ok(Code::Success)
}

fn print_event(seq: usize, event: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(event).unwrap_or_default());
        return;
    }
    let detail = match event {
        Event::StepStarted { path, attempt, .. } => format!("{path} attempt {attempt}"),
        Event::StepCompleted { path, .. } | Event::StepBailed { path, .. } => path.to_string(),
        Event::StepFailed { path, error, .. } => {
            format!("{path} [{}] {}", error.code, error.message)
        }
        Event::StepSuspended { path, labels, .. } => format!("{path} labels {labels:?}"),
        Event::Custom { path, event, .. } => format!("{path} {} {}", event.kind, event.data),
        Event::RunResumed { path, .. } => path.to_string(),
        Event::RunFailed { error, .. } => format!("[{}] {}", error.error.code, error.error.message),
        _ => String::new(),
    };
    println!("{seq:>5}  {:<15} {detail}", event.name());
}

/// Runs `weft events`: one event per line, optionally following the run.
pub fn events(home: &Home, args: EventsArgs) -> Outcome {
    let run = parse_run(&args.run_id)?;
    let store = engine::open_store(home, args.db.as_ref())?;
    let (_, events) = engine::load_run(&store, &run)?;
    let mut seen = 0;
    let mut settled = false;
    for event in &events {
        seen += 1;
        print_event(seen, event, args.json);
        settled = RunStatus::after(event).is_some_and(|s| s != RunStatus::Running);
    }
    while args.follow && !settled {
        // Another process appends; poll the store (a CLI follower, not a test wait).
        std::thread::sleep(Duration::from_millis(100));
        for event in store
            .events_after(&run, seen as u64)
            .map_err(Failure::other)?
        {
            seen += 1;
            print_event(seen, &event, args.json);
            if let Some(status) = RunStatus::after(&event) {
                settled = status != RunStatus::Running;
            }
        }
    }
    Ok(Code::Success)
}
