//! Requests from outside a run, turned into the events that perform them:
//! resuming suspended steps and canceling the run, each validated against
//! the run's state first.

use serde_json::Value;

use super::{RunState, RunStatus, StepStatus};
use crate::error::ResumeError;
use crate::event::Event;
use crate::id::{StepPath, Timestamp};

/// Which suspended step a resume is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeTarget {
    /// The only suspended step (an error if there are several).
    Only,
    /// A step path.
    Path(StepPath),
    /// A resume label.
    Label(String),
    /// Every suspended step, with the same payload.
    All,
}

impl RunState {
    /// Turns a resume request into the `run-resumed` events to append (one,
    /// or one per suspended address for [`ResumeTarget::All`]), after
    /// checking the run is suspended — or running with suspended addresses,
    /// which only the runtime driving it may resume (see
    /// [`RunState::resume_stored`]) — resolving the target and validating
    /// the payload against each step's resume schema.
    ///
    /// # Errors
    /// A [`ResumeError`] naming the run, the step and what is wrong.
    pub fn resume(
        &self,
        target: &ResumeTarget,
        payload: Value,
        at: Timestamp,
    ) -> Result<Vec<Event>, ResumeError> {
        let run = self
            .run
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        let suspended = self.suspended_paths();
        // A running run with suspended addresses (a suspended parallel node
        // while others run) can be resumed by the runtime driving it.
        let resumable = match self.status {
            RunStatus::Suspended => true,
            RunStatus::Running => !suspended.is_empty(),
            _ => false,
        };
        if !resumable {
            return Err(ResumeError::NotSuspended {
                run,
                status: self.status.to_string(),
            });
        }
        let list = |paths: &[StepPath]| {
            paths
                .iter()
                .map(StepPath::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let paths = match target {
            ResumeTarget::All => suspended.clone(),
            ResumeTarget::Only => match suspended.as_slice() {
                [only] => vec![only.clone()],
                _ => {
                    return Err(ResumeError::Ambiguous {
                        run,
                        suspended: list(&suspended),
                    });
                }
            },
            ResumeTarget::Path(path) => vec![{
                if !self.steps.contains_key(path) && !self.workflow.has_path(path) {
                    return Err(ResumeError::UnknownStep {
                        run,
                        path: path.to_string(),
                        suspended: list(&suspended),
                    });
                }
                if !suspended.contains(path) {
                    return Err(ResumeError::NotSuspendedStep {
                        run,
                        path: path.to_string(),
                        suspended: list(&suspended),
                    });
                }
                path.clone()
            }],
            ResumeTarget::Label(label) => {
                let mut matching = self
                    .steps
                    .values()
                    .filter(|r| r.status == StepStatus::Suspended && r.labels.contains(label));
                match (matching.next(), matching.next()) {
                    (Some(r), None) => vec![r.path.clone()],
                    (Some(_), Some(_)) => {
                        return Err(ResumeError::Ambiguous {
                            run,
                            suspended: list(&suspended),
                        });
                    }
                    (None, _) => {
                        let mut known: Vec<&str> = self
                            .steps
                            .values()
                            .filter(|r| r.status == StepStatus::Suspended)
                            .flat_map(|r| r.labels.iter().map(String::as_str))
                            .collect();
                        known.sort_unstable();
                        known.dedup();
                        return Err(ResumeError::UnknownLabel {
                            run,
                            label: label.clone(),
                            known: known.join(", "),
                        });
                    }
                }
            }
        };
        let mut events = Vec::with_capacity(paths.len());
        for path in paths {
            let step = &self.steps[&path].step;
            if let Some(schema) = self
                .workflow
                .step(step)
                .and_then(|s| s.resume_schema.as_ref())
            {
                schema
                    .validate(&payload)
                    .map_err(|e| ResumeError::InvalidPayload {
                        run: run.clone(),
                        path: path.to_string(),
                        message: e.message,
                    })?;
            }
            events.push(Event::RunResumed {
                path,
                payload: payload.clone(),
                at,
            });
        }
        Ok(events)
    }

    /// [`RunState::resume`] for a runtime that does not drive the run (it
    /// loaded it from the store): the run must be suspended, since a running
    /// run is being driven by someone else.
    ///
    /// # Errors
    /// As [`RunState::resume`].
    pub fn resume_stored(
        &self,
        target: &ResumeTarget,
        payload: Value,
        at: Timestamp,
    ) -> Result<Vec<Event>, ResumeError> {
        if self.status != RunStatus::Suspended {
            return Err(ResumeError::NotSuspended {
                run: self
                    .run
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                status: self.status.to_string(),
            });
        }
        self.resume(target, payload, at)
    }

    /// The `run-canceled` event that cancels this run, after checking it is
    /// running or suspended.
    ///
    /// # Errors
    /// [`ResumeError::NotCancelable`] when the run has not started or has finished.
    pub fn cancel(&self, reason: Option<String>, at: Timestamp) -> Result<Event, ResumeError> {
        if matches!(self.status, RunStatus::Running | RunStatus::Suspended) {
            Ok(Event::RunCanceled { reason, at })
        } else {
            Err(ResumeError::NotCancelable {
                run: self
                    .run
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                status: self.status.to_string(),
            })
        }
    }
}
