//! Events as rows: the `events` row of each event, and the `step_results`
//! projection it updates.
//!
//! Encoding (serializing payloads, deciding the projection update) happens
//! before the store takes its connection lock, so the write transaction only
//! executes prepared statements.

use rusqlite::{Transaction, params};
use serde::Serialize;
use serde_json::Value;
use weft_core::{Event, RunStatus, StepError, StepId, StepPath, StepStatus, StoreError, Timestamp};

use crate::sql::{backend_run, from_sql_ts, to_sql_ts};

/// One step execution as the `step_results` projection records it.
///
/// The projection follows the step events literally: `step-started` →
/// `running`, `step-completed` → `success` with the output, `step-failed` →
/// `failed` with the error, `step-suspended` → `suspended`, `step-bailed` →
/// `bailed` with the output, `step-retrying` → `retrying`, `run-resumed` →
/// `resumed`, `run-canceled` → every unfinished row (`running`, `retrying`,
/// `suspended`, `resumed`) `canceled`. (Logs written before `step-retrying`
/// existed show a failure that was retried as `failed` until the next
/// `step-started`.) The authoritative state is the event log replayed through
/// [`weft_core::RunState`]; this table serves inspection and queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// The execution's path.
    pub path: StepPath,
    /// The step it runs.
    pub step: StepId,
    /// Its status as the projection knows it.
    pub status: StepStatus,
    /// The current (or last) attempt, from 1.
    pub attempt: u32,
    /// The output (success and bailed).
    pub output: Option<Value>,
    /// The last attempt's error, until the next attempt starts.
    pub error: Option<StepError>,
    /// When the current attempt started.
    pub started_at: Timestamp,
    /// When the execution last ended (completed, failed, suspended, bailed).
    pub ended_at: Option<Timestamp>,
}

/// An event ready to be written.
pub(crate) struct EncodedEvent<'e> {
    /// The event's type name.
    pub(crate) name: &'static str,
    /// When it happened.
    pub(crate) at: i64,
    /// Its serde JSON.
    pub(crate) payload: String,
    /// The run's status after it, if it changes it.
    pub(crate) status: Option<RunStatus>,
    /// The projection update it causes.
    pub(crate) step: Option<StepUpdate<'e>>,
}

/// A change to one `step_results` row.
pub(crate) enum StepUpdate<'e> {
    /// An attempt starts: insert or reset the row.
    Started {
        path: &'e str,
        step: &'e str,
        attempt: u32,
    },
    /// The step ends with an output (completed or bailed).
    Output {
        path: &'e str,
        status: StepStatus,
        output: String,
    },
    /// The attempt failed.
    Failed { path: &'e str, error: String },
    /// The step suspended.
    Suspended { path: &'e str },
    /// The step was resumed.
    Resumed { path: &'e str },
    /// A retry of the failed step was decided.
    Retrying { path: &'e str },
    /// The run was canceled: its unfinished executions never finish.
    Canceled,
}

/// Serializes `event` of `run` and decides what it changes.
pub(crate) fn encode<'e>(run: &str, event: &'e Event) -> Result<EncodedEvent<'e>, StoreError> {
    let json = |what: &str, text: serde_json::Result<String>| {
        text.map_err(|e| {
            StoreError::Backend(format!(
                "run {run}: cannot serialize the {what} of a {} event: {e}",
                event.name()
            ))
        })
    };
    let step = match event {
        Event::StepStarted {
            path,
            step,
            attempt,
            ..
        } => Some(StepUpdate::Started {
            path: path.as_str(),
            step: step.as_str(),
            attempt: *attempt,
        }),
        Event::StepCompleted { path, output, .. } => Some(StepUpdate::Output {
            path: path.as_str(),
            status: StepStatus::Success,
            output: json("output", serde_json::to_string(output))?,
        }),
        Event::StepBailed { path, output, .. } => Some(StepUpdate::Output {
            path: path.as_str(),
            status: StepStatus::Bailed,
            output: json("output", serde_json::to_string(output))?,
        }),
        Event::StepFailed { path, error, .. } => Some(StepUpdate::Failed {
            path: path.as_str(),
            error: json("error", serde_json::to_string(error))?,
        }),
        Event::StepSuspended { path, .. } => Some(StepUpdate::Suspended {
            path: path.as_str(),
        }),
        Event::RunResumed { path, .. } => Some(StepUpdate::Resumed {
            path: path.as_str(),
        }),
        Event::StepRetrying { path, .. } => Some(StepUpdate::Retrying {
            path: path.as_str(),
        }),
        Event::RunCanceled { .. } | Event::RunCompleted { .. } | Event::RunFailed { .. } => {
            Some(StepUpdate::Canceled)
        }
        Event::RunStarted { .. }
        | Event::NodeStarted { .. }
        | Event::NodeCompleted { .. }
        | Event::SleepStarted { .. }
        | Event::BranchDecided { .. }
        | Event::LoopDecided { .. }
        | Event::Custom { .. }
        | Event::RunSuspended { .. } => None,
    };
    Ok(EncodedEvent {
        name: event.name(),
        at: to_sql_ts(event.at(), run)?,
        payload: json("event", serde_json::to_string(event))?,
        status: RunStatus::after(event),
        step,
    })
}

/// Applies `update` (caused by an event at `at`) to the projection.
///
/// Updates of a path that has no row (a step event before its
/// `step-started`, which the state machine rejects) change nothing: the
/// store records the log as given and does not validate transitions.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    run: &str,
    at: i64,
    update: &StepUpdate<'_>,
) -> Result<(), StoreError> {
    let err = || backend_run("update step_results", run);
    match update {
        StepUpdate::Started {
            path,
            step,
            attempt,
        } => {
            tx.prepare_cached(
                "INSERT INTO step_results (run_id, path, step, status, attempt, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (run_id, path) DO UPDATE SET
                     step = excluded.step, status = excluded.status, attempt = excluded.attempt,
                     error = NULL, started_at = excluded.started_at, ended_at = NULL",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run,
                    path,
                    step,
                    status_name(StepStatus::Running),
                    attempt,
                    at
                ])
            })
            .map_err(err())?;
        }
        StepUpdate::Output {
            path,
            status,
            output,
        } => {
            tx.prepare_cached(
                "UPDATE step_results SET status = ?3, output = ?4, ended_at = ?5
                 WHERE run_id = ?1 AND path = ?2",
            )
            .and_then(|mut s| s.execute(params![run, path, status_name(*status), output, at]))
            .map_err(err())?;
        }
        StepUpdate::Failed { path, error } => {
            tx.prepare_cached(
                "UPDATE step_results SET status = ?3, error = ?4, ended_at = ?5
                 WHERE run_id = ?1 AND path = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run,
                    path,
                    status_name(StepStatus::Failed),
                    error,
                    at
                ])
            })
            .map_err(err())?;
        }
        StepUpdate::Suspended { path } => {
            tx.prepare_cached(
                "UPDATE step_results SET status = ?3, ended_at = ?4 WHERE run_id = ?1 AND path = ?2",
            )
            .and_then(|mut s| s.execute(params![run, path, status_name(StepStatus::Suspended), at]))
            .map_err(err())?;
        }
        StepUpdate::Resumed { path } => {
            tx.prepare_cached(
                "UPDATE step_results SET status = ?3 WHERE run_id = ?1 AND path = ?2",
            )
            .and_then(|mut s| s.execute(params![run, path, status_name(StepStatus::Resumed)]))
            .map_err(err())?;
        }
        StepUpdate::Retrying { path } => {
            tx.prepare_cached(
                "UPDATE step_results SET status = ?3 WHERE run_id = ?1 AND path = ?2",
            )
            .and_then(|mut s| s.execute(params![run, path, status_name(StepStatus::Retrying)]))
            .map_err(err())?;
        }
        StepUpdate::Canceled => {
            tx.prepare_cached(
                "UPDATE step_results SET status = ?2, ended_at = ?3
                 WHERE run_id = ?1 AND status IN ('running', 'retrying', 'suspended', 'resumed')",
            )
            .and_then(|mut s| s.execute(params![run, status_name(StepStatus::Canceled), at]))
            .map_err(err())?;
        }
    }
    Ok(())
}

/// The stored name of a step status: its serde name.
pub(crate) fn status_name(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Running => "running",
        StepStatus::Retrying => "retrying",
        StepStatus::Success => "success",
        StepStatus::Failed => "failed",
        StepStatus::Suspended => "suspended",
        StepStatus::Resumed => "resumed",
        StepStatus::Bailed => "bailed",
        StepStatus::Canceled => "canceled",
    }
}

/// Parses a stored step status name.
fn parse_status(name: &str) -> Option<StepStatus> {
    [
        StepStatus::Running,
        StepStatus::Retrying,
        StepStatus::Success,
        StepStatus::Failed,
        StepStatus::Suspended,
        StepStatus::Resumed,
        StepStatus::Bailed,
        StepStatus::Canceled,
    ]
    .into_iter()
    .find(|s| status_name(*s) == name)
}

/// Reads the projection of `run`, ordered by the start of each execution's
/// current attempt, then by path.
pub(crate) fn read(tx: &Transaction<'_>, run: &str) -> Result<Vec<StepResult>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT path, step, status, attempt, output, error, started_at, ended_at
             FROM step_results WHERE run_id = ?1 ORDER BY started_at, path",
        )
        .map_err(backend_run("read step_results", run))?;
    let rows = stmt
        .query_map([run], |row| {
            Ok(RawStep {
                path: row.get(0)?,
                step: row.get(1)?,
                status: row.get(2)?,
                attempt: row.get(3)?,
                output: row.get(4)?,
                error: row.get(5)?,
                started_at: row.get(6)?,
                ended_at: row.get(7)?,
            })
        })
        .map_err(backend_run("read step_results", run))?;
    let mut steps = Vec::new();
    for raw in rows {
        let raw = raw.map_err(backend_run("read step_results", run))?;
        steps.push(raw.decode(run)?);
    }
    Ok(steps)
}

/// A `step_results` row as stored.
struct RawStep {
    path: String,
    step: String,
    status: String,
    attempt: i64,
    output: Option<String>,
    error: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
}

impl RawStep {
    fn decode(self, run: &str) -> Result<StepResult, StoreError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Backend(format!(
                "run {run}: step_results row `{}` has an invalid {what}: {e}",
                self.path
            ))
        };
        let path = StepPath::parse(&self.path).map_err(|e| bad("path", &e))?;
        let step = StepId::new(&self.step).map_err(|e| bad("step id", &e))?;
        let status = parse_status(&self.status)
            .ok_or_else(|| bad("status", &format!("`{}` is not a step status", self.status)))?;
        let attempt = u32::try_from(self.attempt).map_err(|e| bad("attempt", &e))?;
        let output = match &self.output {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| bad("output", &e))?),
            None => None,
        };
        let error = match &self.error {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| bad("error", &e))?),
            None => None,
        };
        let started_at = from_sql_ts(self.started_at, "start time", run)?;
        let ended_at = match self.ended_at {
            Some(at) => Some(from_sql_ts(at, "end time", run)?),
            None => None,
        };
        Ok(StepResult {
            path,
            step,
            status,
            attempt,
            output,
            error,
            started_at,
            ended_at,
        })
    }
}
