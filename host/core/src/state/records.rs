//! The records a run keeps: the run's and each execution's status, one
//! record per step execution and one per composite node.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::progress::Progress;
use crate::error::StepError;
use crate::event::Event;
use crate::id::{StepId, StepPath, Timestamp};

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Not started yet (no `run-started` applied).
    Pending,
    /// Started and not finished; steps may be running.
    Running,
    /// Finished with an output.
    Success,
    /// Finished with an error.
    Failed,
    /// Waiting for a resume.
    Suspended,
    /// Canceled; nothing more runs.
    Canceled,
}

impl RunStatus {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Suspended => "suspended",
            Self::Canceled => "canceled",
        }
    }

    /// The status a run has after `event`, if the event changes it.
    pub fn after(event: &Event) -> Option<Self> {
        match event {
            Event::RunStarted { .. } | Event::RunResumed { .. } => Some(Self::Running),
            Event::RunSuspended { .. } => Some(Self::Suspended),
            Event::RunCompleted { .. } => Some(Self::Success),
            Event::RunFailed { .. } => Some(Self::Failed),
            Event::RunCanceled { .. } => Some(Self::Canceled),
            _ => None,
        }
    }

    /// Parses a kebab-case status name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Success,
            Self::Failed,
            Self::Suspended,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// Whether the run can never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Canceled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of one step execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// An attempt is in flight.
    Running,
    /// The last attempt failed retryably; another attempt is due.
    Retrying,
    /// Completed with an output.
    Success,
    /// Failed for good.
    Failed,
    /// Suspended, waiting for a resume.
    Suspended,
    /// Resumed; will run again with the resume payload.
    Resumed,
    /// Bailed: the workflow ends with its output.
    Bailed,
    /// The run ended while this execution was unfinished (canceled while in
    /// flight; canceled, failed or completed by a bail while it waited for a
    /// retry or a resume): it will never finish.
    Canceled,
}

/// The record of one step execution (one path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The execution's path.
    pub path: StepPath,
    /// The step it runs. (qualified inside a nested workflow: `charge-flow/charge`).
    #[serde(deserialize_with = "StepId::deserialize_qualified")]
    pub step: StepId,
    /// Its status.
    pub status: StepStatus,
    /// The current (or last) attempt, from 1.
    pub attempt: u32,
    /// Its input.
    pub input: Arc<Value>,
    /// Its output (success and bailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Arc<Value>>,
    /// The last attempt's error (failed, or retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// When the current attempt started.
    pub started_at: Timestamp,
    /// When the execution last ended (completed, failed, suspended, bailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// When the next attempt is due (retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    /// The payload it suspended with (kept after the resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_payload: Option<Value>,
    /// Its resume labels while suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The payload it was resumed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_payload: Option<Value>,
}

/// A composite node that started (or a map that computed its output).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Its address.
    pub path: StepPath,
    /// Its input.
    pub input: Arc<Value>,
    /// Its output, once completed.
    pub output: Option<Arc<Value>>,
    /// How far it got.
    pub(crate) progress: Progress,
    /// The state as of its start: each branch of a concurrent node (a
    /// parallel's node, a branch's arm, a foreach's item) starts from it.
    pub(crate) fork: Arc<Value>,
}

impl NodeRecord {
    /// A foreach's items (its input array, split once when it started).
    pub fn items(&self) -> &[Arc<Value>] {
        match &self.progress {
            Progress::Foreach { items, .. } => items,
            _ => &[],
        }
    }
}
