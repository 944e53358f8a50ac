//! `weft status`, `weft runs` and `weft events`: inspecting stored runs.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use weft_core::{Clock as _, Event, RunFilter, RunId, RunIndex, RunStatus, Store, Timestamp};
use weft_manifest::Manifest;
use weft_store_postgres::PostgresStore;
use weft_store_sqlite::SqliteStore;

use weft_runtime::SystemClock;

use crate::client::Client;
use crate::engine;
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;
use crate::load::{locked_manifest, run_lock};
use crate::output::{self, escape};
use crate::paged;
use crate::remote;

/// How long `weft events --follow` waits for a new event of a running run
/// before saying on stderr that the run may have no driver.
const FOLLOW_NOTE_AFTER_MICROS: u64 = 5_000_000;

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
    /// Only runs of this workflow (its id)
    #[arg(long, value_name = "ID")]
    workflow: Option<String>,
    /// At most this many runs (the newest)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
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

/// Opens the store ([`engine::store_location`]) for reading only:
/// inspecting runs never writes, so it works on a database this process
/// cannot write, and never creates one. `None` when there is no store yet.
fn open_read_only(home: &Home, db: Option<&PathBuf>) -> Result<Option<Box<dyn Store>>, Failure> {
    let path = engine::store_location(home, db);
    if let Some(url) = engine::postgres_url(&path) {
        return PostgresStore::open_read_only(url)
            .map(|store| store.map(|store| Box::new(store) as Box<dyn Store>))
            .map_err(Failure::other);
    }
    match path.try_exists() {
        Ok(false) => Ok(None),
        // The store's own error names the path; an unreadable directory
        // makes `try_exists` fail, and opening says why.
        Ok(true) | Err(_) => SqliteStore::open_read_only(&path)
            .map(|store| Some(Box::new(store) as Box<dyn Store>))
            .map_err(Failure::other),
    }
}

/// The read-only store holding `run`; no store at all is a missing run.
fn store_of(home: &Home, db: Option<&PathBuf>, run: &RunId) -> Result<Box<dyn Store>, Failure> {
    open_read_only(home, db)?.ok_or_else(|| Failure::missing(run))
}

/// Runs `weft status`: the run's result, rebuilt from its events. The
/// events are read a page at a time and folded into the run's state as
/// they come (and read again, page by page, to print the custom events), so
/// the memory it takes is bounded by the run's state, not its log.
pub fn status(home: &Home, server: Option<&Client>, args: StatusArgs) -> Outcome {
    let run = parse_run(&args.run_id)?;
    if let Some(client) = server {
        if args.db.is_some() {
            return Err(remote::local_only("--db"));
        }
        let result = remote::fetch(client, run.as_str())?;
        if args.json {
            output::json(&result);
        } else {
            remote::report(client, &result, false);
        }
        return Ok(Code::Success);
    }
    let store = store_of(home, args.db.as_ref(), &run)?;
    let result = stored_result(&*store, &run)?;
    if args.json {
        output::json(&result);
    } else {
        output::summary(&result, &mut |visit| {
            paged::each_stored(&*store, &run, visit)
        });
    }
    Ok(Code::Success)
}

/// A stored run's result, rebuilt from its events a page at a time (the
/// memory it takes is bounded by the run's state, not its log). A pinned
/// run replays on its locked workflow, whatever is on disk now.
///
/// # Errors
/// A missing run; a workflow that does not load; store failures.
pub fn stored_result(
    store: &dyn weft_core::Store,
    run: &RunId,
) -> Result<weft_core::RunResult, Failure> {
    let (_, state) = paged::replay(store, run, |meta| {
        let manifest = match run_lock(store, meta)? {
            Some(lock) => locked_manifest(run, &lock)?,
            None => {
                Manifest::load(std::path::Path::new(&meta.manifest)).map_err(Failure::invalid)?
            }
        };
        Ok(Arc::clone(manifest.workflow()))
    })?;
    let mut result = state.result();
    result.held_by = store.holder(run).map_err(Failure::other)?;
    Ok(result)
}

/// Runs `weft runs`: the stored runs, newest first.
pub fn runs(home: &Home, server: Option<&Client>, args: RunsArgs) -> Outcome {
    let status = match &args.status {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            Failure::invalid(anyhow!(
                "--status: unknown status `{s}` (running, success, failed, suspended, canceled)"
            ))
        })?),
        None => None,
    };
    let workflow = match &args.workflow {
        Some(id) => Some(
            weft_core::StepId::new(id)
                .context("--workflow")
                .map_err(Failure::invalid)?,
        ),
        None => None,
    };
    let filter = RunFilter {
        status,
        workflow,
        ..RunFilter::default()
    };
    let runs = match server {
        Some(_) if args.db.is_some() => return Err(remote::local_only("--db")),
        Some(client) => listed_remote(client, &args, args.limit)?,
        None => match open_read_only(home, args.db.as_ref())? {
            Some(store) => listed(&*store, &filter, args.limit)?,
            None => Vec::new(),
        },
    };
    output::print(|out| {
        if args.json {
            serde_json::to_writer(&mut *out, &runs)?;
            return writeln!(out);
        }
        for r in &runs {
            let held = r
                .held_by
                .as_ref()
                .map(|owner| format!("  held by {}", escape(owner)))
                .unwrap_or_default();
            writeln!(
                out,
                "{}  {:<9}  {:<24}  {} events{held}",
                escape(r.meta.run_id.as_str()),
                r.status.as_str(),
                r.meta.workflow_id.as_str(),
                r.events
            )?;
        }
        Ok(())
    })?;
    Ok(Code::Success)
}

/// One event as a line: its JSON, or for humans its number, type and the
/// details that matter, guest-controlled text escaped.
pub(crate) fn write_event(
    out: &mut dyn Write,
    seq: u64,
    event: &Event,
    json: bool,
) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, event)?;
        return writeln!(out);
    }
    let detail = match event {
        Event::StepStarted { path, attempt, .. } => format!("{path} attempt {attempt}"),
        Event::StepCompleted { path, .. } | Event::StepBailed { path, .. } => path.to_string(),
        Event::StepFailed { path, error, .. } => {
            format!(
                "{path} [{}] {}",
                escape(&error.code),
                escape(&error.message)
            )
        }
        Event::StepSuspended { path, labels, .. } => {
            format!("{path} labels {}", escape(&labels.join(", ")))
        }
        Event::StepRetrying {
            path,
            attempt,
            due,
            at,
        } => format!(
            "{path} attempt {attempt} in {} ms",
            due.micros_since(*at).div_ceil(1000)
        ),
        Event::Custom { path, event, .. } => {
            format!(
                "{path} {} {}",
                escape(&event.kind),
                escape(&event.data.to_string())
            )
        }
        Event::RunResumed { path, .. } | Event::NodeCompleted { path, .. } => path.to_string(),
        Event::NodeStarted {
            path,
            items: Some(items),
            ..
        } => format!("{path} ({items} items)"),
        Event::NodeStarted { path, .. } => path.to_string(),
        Event::SleepStarted { path, until, .. } => format!("{path} until {}", until.rfc3339()),
        Event::BranchDecided { path, arms, .. } if arms.is_empty() => {
            format!("{path}: no arm")
        }
        Event::BranchDecided { path, arms, .. } => format!(
            "{path}: {}",
            arms.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::LoopDecided {
            path,
            iteration,
            again,
            ..
        } => format!(
            "{path} after iteration {iteration}: {}",
            if *again { "again" } else { "stop" }
        ),
        Event::RunStarted {
            origin: Some(origin),
            ..
        } => format!("rerun of {} from {}", origin.run, origin.from),
        Event::RunFailed { error, .. } => format!(
            "[{}] {}",
            escape(&error.error.code),
            escape(&error.error.message)
        ),
        Event::RunCanceled {
            reason: Some(reason),
            ..
        } => escape(reason).into_owned(),
        _ => String::new(),
    };
    writeln!(out, "{seq:>5}  {:<15} {detail}", event.name())
}

/// Prints `events` numbered from `*seen + 1`. Returns whether stdout is
/// still open, and whether the run has settled (finished or suspended).
fn print_events(
    events: &[Event],
    seen: &mut u64,
    settled: &mut bool,
    json: bool,
) -> Result<bool, Failure> {
    let first = *seen;
    for event in events {
        if let Some(status) = RunStatus::after(event) {
            *settled = status != RunStatus::Running;
        }
    }
    *seen += events.len() as u64;
    output::print(|out| {
        for (n, event) in (first + 1..).zip(events) {
            write_event(out, n, event, json)?;
        }
        Ok(())
    })
}

/// Runs `weft events`: one event per line, optionally following the run.
/// The log is read and printed a page at a time (bounded memory, whatever
/// the run's size).
///
/// `--follow` polls the store until the run finishes, fails, suspends or is
/// canceled. When no new event has come for [`FOLLOW_NOTE_AFTER_MICROS`]
/// and no live process holds the run's lease (its driver died), it says so
/// on stderr, once, and keeps waiting (`weft recover` continues such a run);
/// a run whose driver is alive may simply have a slow step.
pub fn events(home: &Home, server: Option<&Client>, args: EventsArgs) -> Outcome {
    let run = parse_run(&args.run_id)?;
    if let Some(client) = server {
        return events_remote(client, &run, &args);
    }
    let store = store_of(home, args.db.as_ref(), &run)?;
    let mut seen = 0;
    let mut settled = false;
    let mut open = true;
    let mut last_at = Timestamp(0);
    let mut pages = paged::Pages::new(&*store, &run, 0);
    while open && let Some((_, page)) = pages.next_page()? {
        if let Some(event) = page.last() {
            last_at = event.at();
        }
        open = print_events(&page, &mut seen, &mut settled, args.json)?;
    }
    let clock = SystemClock;
    let mut noted = false;
    while args.follow && open && !settled {
        if !noted
            && clock.now().micros_since(last_at) >= FOLLOW_NOTE_AFTER_MICROS
            && orphaned(&*store, &run)?
        {
            noted = true;
            eprintln!(
                "note: run {} is running but has had no new event for {} s, and no weft process \
                 holds it (its driver crashed or was killed): `weft recover` continues it. \
                 Still following (Ctrl-C to stop).",
                escape(run.as_str()),
                clock.now().micros_since(last_at) / 1_000_000
            );
        }
        // Another process appends; poll the store (a CLI follower, not a test wait).
        std::thread::sleep(Duration::from_millis(100));
        let mut pages = paged::Pages::new(&*store, &run, seen);
        while open && let Some((_, page)) = pages.next_page()? {
            if let Some(event) = page.last() {
                last_at = event.at();
            }
            open = print_events(&page, &mut seen, &mut settled, args.json)?;
        }
    }
    Ok(Code::Success)
}

/// The runs passing `filter`, newest first: at most `limit`, else every
/// one (page by page).
fn listed(
    store: &dyn RunIndex,
    filter: &RunFilter,
    limit: Option<usize>,
) -> Result<Vec<weft_core::RunSummary>, Failure> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let want = limit.map_or(1_000, |l| l.saturating_sub(all.len()).min(1_000));
        if want == 0 {
            return Ok(all);
        }
        let page = store
            .runs(filter, after.as_ref(), want)
            .map_err(Failure::other)?;
        all.extend(page.runs);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// `weft runs --server`: the server's runs, newest first, a page at a
/// time up to `limit`.
fn listed_remote(
    client: &Client,
    args: &RunsArgs,
    limit: Option<usize>,
) -> Result<Vec<weft_core::RunSummary>, Failure> {
    let mut query = String::new();
    if let Some(status) = &args.status {
        query.push_str(&format!("&status={}", remote::encode(status)));
    }
    if let Some(workflow) = &args.workflow {
        query.push_str(&format!("&workflow={}", remote::encode(workflow)));
    }
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = limit.map_or(1_000, |l| l.saturating_sub(all.len()).min(1_000));
        if want == 0 {
            return Ok(all);
        }
        let after = cursor
            .as_deref()
            .map(|c| format!("&cursor={}", remote::encode(c)))
            .unwrap_or_default();
        let page = client
            .get(&format!("/v1/runs?limit={want}{query}{after}"))?
            .ok()?;
        let runs: Vec<weft_core::RunSummary> = serde_json::from_value(page["runs"].clone())
            .map_err(|e| {
                Failure::other(anyhow!("the server's list of runs does not parse: {e}"))
            })?;
        all.extend(runs);
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

/// `weft events --server`: the server's pages, or with `--follow` its
/// event stream until the run settles.
fn events_remote(client: &Client, run: &RunId, args: &EventsArgs) -> Outcome {
    if args.db.is_some() {
        return Err(remote::local_only("--db"));
    }
    if args.follow {
        let mut watcher = crate::watch::Watcher::new(args.json, true).quiet();
        remote::follow(client, run.as_str(), 0, &mut watcher)?;
        watcher.finish()?;
        return Ok(Code::Success);
    }
    let mut seq = 0;
    output::print(|out| {
        remote::each_event(client, run.as_str(), &mut |event| {
            seq += 1;
            write_event(out, seq, event, args.json)
        })
    })?;
    Ok(Code::Success)
}

/// Whether no live process holds `run` (it is running with no lease, or an
/// expired one): the store's `claimable` query, read-only.
fn orphaned(store: &dyn weft_core::EventStore, run: &RunId) -> Result<bool, Failure> {
    Ok(store
        .claimable(Timestamp(u64::MAX))
        .map_err(Failure::other)?
        .iter()
        .any(|c| c.run == *run))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use weft_core::{Event, StepId, StepPath, Timestamp};

    use super::write_event;

    fn line(event: &Event) -> String {
        let mut out = Vec::new();
        write_event(&mut out, 7, event, false).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decisions_of_the_interpreter_read_as_lines() {
        let path = |p: &str| StepPath::parse(p).unwrap();
        let at = Timestamp(0);
        let started = Event::NodeStarted {
            path: path("items"),
            input: Arc::new(json!([1, 2, 3])),
            items: Some(3),
            at,
        };
        assert_eq!(line(&started), "    7  node-started    items (3 items)\n");
        let branch = Event::BranchDecided {
            path: path("route"),
            input: Arc::new(json!({})),
            arms: vec![StepId::new("high").unwrap(), StepId::new("vip").unwrap()],
            at,
        };
        assert_eq!(line(&branch), "    7  branch-decided  route: high, vip\n");
        let looped = Event::LoopDecided {
            path: path("items[2]/again"),
            iteration: 4,
            again: false,
            at,
        };
        assert_eq!(
            line(&looped),
            "    7  loop-decided    items[2]/again after iteration 4: stop\n"
        );
    }
}
