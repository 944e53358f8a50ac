//! The one driver: given a run's state and the time, it decides what happens
//! next — the events to record and the effects to perform — without doing
//! any I/O. Both runtimes call it; neither interprets the workflow itself.
//!
//! A runtime's loop is then only: call [`RunState::advance`], record the
//! events it returns (the default runtime in memory, the evented runtime in
//! its store, before anything takes effect), and perform its [`Effect`]s —
//! execute an attempt and apply the events it produced, or wake at a time
//! and advance again.

use crate::budget::Usage;
use crate::error::TransitionError;
use crate::event::Event;
use crate::id::Timestamp;
use crate::runner::StepTask;
use crate::state::{RunState, StepStatus, Wake, Work};

/// Something a runtime must do for a run, as decided by the driver.
//
// Nearly every effect is an `Execute`, consumed at once: boxing the task would
// add an allocation per attempt and save no memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Execute this attempt (its `step-started` is among the events decided
    /// with it), then apply the events the execution produced.
    Execute(StepTask),
    /// Nothing can happen before this time (a retry is due, or a sleep
    /// wakes, then): advance
    /// the run again at or after it.
    WakeAt(Timestamp),
}

/// What [`RunState::advance`] decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advance {
    /// Events already applied to the state, to record in this order.
    pub events: Vec<Event>,
    /// What to do next.
    pub effects: Vec<Effect>,
}

impl Advance {
    /// Records `event`, decided by the driver, unless it would take the run
    /// past a budget: the run then fails with `run-limit` instead, and the
    /// attempts this advance started are not executed (they end
    /// `canceled`). Returns whether `event` was recorded.
    fn decide(&mut self, state: &mut RunState, event: Event) -> Result<bool, TransitionError> {
        let cost = Usage::of(&event);
        // A failure the flow decided ends the run; its size is bounded by
        // the error caps.
        let exempt = matches!(event, Event::RunFailed { .. });
        if let Some(over) = state
            .workflow()
            .run_limits()
            .exceeded(state.usage(), cost)
            .filter(|_| !exempt)
        {
            let what = match (&event, event.path()) {
                (Event::StepStarted { attempt, .. }, Some(path)) => {
                    format!("starting attempt {attempt} of `{path}`")
                }
                (_, Some(path)) => format!("recording `{}` of `{path}`", event.name()),
                (_, None) => format!("recording `{}`", event.name()),
            };
            let failed = over.run_failed(&what, event.path().cloned(), event.at());
            state.apply(&failed)?;
            self.events.push(failed);
            self.effects
                .retain(|effect| !matches!(effect, Effect::Execute(_)));
            return Ok(false);
        }
        state.apply_costing(&event, cost)?;
        self.events.push(event);
        Ok(true)
    }
}

impl RunState {
    /// Decides everything that can happen at `now` without executing a step:
    /// attempts due now start (`step-started`, with an [`Effect::Execute`]),
    /// a run with nothing left to run finishes, suspends or fails, and a run
    /// waiting for a retry asks to be woken ([`Effect::WakeAt`]). The events
    /// are applied to `self` as they are decided.
    ///
    /// Calling it again without applying anything else decides nothing new.
    ///
    /// # Errors
    /// A [`TransitionError`] when the state machine refuses an event it
    /// decided itself: a bug, reported rather than hidden.
    pub fn advance(&mut self, now: Timestamp) -> Result<Advance, TransitionError> {
        let mut advance = Advance::default();
        let mut wake: Option<Timestamp> = None;
        loop {
            let mut progressed = false;
            for work in self.ready() {
                let event = match work {
                    Work::Execute(mut task) => {
                        if let Some(due) = task.not_before.filter(|due| *due > now) {
                            wake = Some(wake.map_or(due, |w| w.min(due)));
                            continue;
                        }
                        if !advance.decide(self, started(&mut task, now))? {
                            return Ok(advance);
                        }
                        advance.effects.push(Effect::Execute(task));
                        progressed = true;
                        continue;
                    }
                    Work::Wake { path, due, output } => {
                        if due > now {
                            wake = Some(wake.map_or(due, |w| w.min(due)));
                            continue;
                        }
                        Event::NodeCompleted {
                            path,
                            output,
                            at: now,
                        }
                    }
                    Work::Finish(finish) => finish.into_event(now),
                    decision => match recorded(decision, now) {
                        Some(event) => event,
                        None => continue,
                    },
                };
                if !advance.decide(self, event)? {
                    // Past a budget: the run has failed.
                    return Ok(advance);
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        if let Some(due) = wake {
            advance.effects.push(Effect::WakeAt(due));
        }
        Ok(advance)
    }

    /// Starts again every attempt recorded as in flight — same attempt
    /// number, same idempotency key (at-least-once delivery) — for a runtime
    /// taking over a run whose previous driver stopped; then advances.
    ///
    /// # Errors
    /// As [`RunState::advance`].
    pub fn redeliver(&mut self, now: Timestamp) -> Result<Advance, TransitionError> {
        let mut advance = Advance::default();
        for mut task in self.in_flight() {
            if !advance.decide(self, started(&mut task, now))? {
                return Ok(advance);
            }
            advance.effects.push(Effect::Execute(task));
        }
        let next = self.advance(now)?;
        advance.events.extend(next.events);
        advance.effects.extend(next.effects);
        Ok(advance)
    }

    /// When the run next needs attention if it only waits for timers: the
    /// earliest retry or sleep time among its ready work, or `None` when
    /// work is due now, an attempt is in flight, or the run is not running.
    /// What a runtime stores as the run's wake time ([`crate::Append::wake`]).
    pub fn next_wake(&self) -> Option<Timestamp> {
        if self.status() != crate::state::RunStatus::Running || !self.in_flight().is_empty() {
            return None;
        }
        let mut wake: Option<Timestamp> = None;
        for work in self.ready() {
            let due = match work {
                Work::Execute(task) => task.not_before?,
                Work::Wake { due, .. } => due,
                _ => return None,
            };
            wake = Some(wake.map_or(due, |w| w.min(due)));
        }
        wake
    }

    /// Records what an attempt's execution produced (the events
    /// [`crate::settle`] made of its report: its custom events, then its
    /// end), all of them when the run can hold them within its budgets
    /// ([`crate::RunLimits`]). Otherwise none of them: the attempt fails
    /// with `run-limit` instead (its custom events, output and state are not
    /// recorded) and so does the run, at the report's time; what was
    /// recorded before stays. Returns the events recorded, already applied.
    ///
    /// Call it only for a report the run expects
    /// ([`RunState::expects_report`]).
    ///
    /// # Errors
    /// A [`TransitionError`] when an event does not apply (the attempt is
    /// not in flight).
    pub fn settled(&mut self, events: Vec<Event>) -> Result<Vec<Event>, TransitionError> {
        let costs: Vec<Usage> = events.iter().map(Usage::of).collect();
        let cost = costs
            .iter()
            .fold(Usage::default(), |sum, cost| sum.plus(*cost));
        let Some(over) = self.workflow().run_limits().exceeded(self.usage(), cost) else {
            for (event, cost) in events.iter().zip(costs) {
                self.apply_costing(event, cost)?;
            }
            return Ok(events);
        };
        let Some(last) = events.last() else {
            return Ok(events);
        };
        let (path, at) = (last.path().cloned(), last.at());
        let Some(path) = path else {
            // Not an attempt's report (a bug in the caller): refused whole.
            return Err(TransitionError::Rejected {
                run: self
                    .run_id()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                event: last.name(),
                reason: "it is not an attempt's report".to_owned(),
            });
        };
        let attempt = self.step(&path).map_or(1, |record| record.attempt);
        let what = format!(
            "the report of attempt {attempt} of `{path}` ({} events, {} bytes)",
            cost.events, cost.bytes
        );
        let failed = Event::StepFailed {
            path: path.clone(),
            error: over.error(&what),
            measured: None,
            at,
        };
        let ended = over.run_failed(&what, Some(path), at);
        self.apply(&failed)?;
        self.apply(&ended)?;
        Ok(vec![failed, ended])
    }

    /// Whether a report of `attempt` at `path` would apply: the execution
    /// is in flight at that attempt. A report that would not is stale (a
    /// redelivered attempt finishing twice, or a run canceled meanwhile).
    pub fn expects_report(&self, path: &crate::id::StepPath, attempt: u32) -> bool {
        self.step(path)
            .is_some_and(|r| r.status == StepStatus::Running && r.attempt == attempt)
    }
}

/// The `step-started` event of `task` at `now`, which becomes the task's start.
/// The event that records a decision of the interpreter (a composite
/// node's start or completion, a retry), made at `now`.
fn recorded(work: Work, now: Timestamp) -> Option<Event> {
    Some(match work {
        Work::StartNode { path, input, items } => Event::NodeStarted {
            path,
            input,
            items,
            at: now,
        },
        Work::CompleteNode { path, output } => Event::NodeCompleted {
            path,
            output: output.into(),
            at: now,
        },
        Work::DecideBranch { path, input, arms } => Event::BranchDecided {
            path,
            input,
            arms,
            at: now,
        },
        Work::DecideLoop {
            path,
            iteration,
            again,
        } => Event::LoopDecided {
            path,
            iteration,
            again,
            at: now,
        },
        Work::Retry { path, attempt, due } => Event::StepRetrying {
            path,
            attempt,
            due,
            at: now,
        },
        Work::Sleep { path, input, wake } => Event::SleepStarted {
            path,
            input,
            until: match wake {
                Wake::After(millis) => now.plus_millis(millis),
                Wake::At(until) => until,
            },
            at: now,
        },
        Work::Execute(_) | Work::Wake { .. } | Work::Finish(_) => return None,
    })
}

fn started(task: &mut StepTask, now: Timestamp) -> Event {
    task.started_at = now;
    Event::StepStarted {
        path: task.path.clone(),
        step: task.step.clone(),
        attempt: task.attempt,
        input: std::sync::Arc::clone(&task.input),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::id::{RunId, StepId, StepPath};
    use crate::workflow::{Node, NodeKind, RetryPolicy, StepDef, WorkflowBuilder};
    use crate::{FailureKind, StepError};

    fn id(s: &str) -> StepId {
        StepId::new(s).unwrap()
    }

    fn state(retry: RetryPolicy) -> RunState {
        let mut def = StepDef::new(id("a"), "/c/a.wasm");
        def.retry = retry;
        let workflow = WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: json!({}),
            steps: [(id("a"), def)].into_iter().collect(),
            flow: vec![Node {
                id: id("a"),
                kind: NodeKind::Step { step: id("a") },
            }],
        }
        .build()
        .unwrap();
        let mut state = RunState::new(Arc::new(workflow));
        state
            .apply(&Event::RunStarted {
                run: RunId::new("r").unwrap(),
                workflow: id("wf"),
                input: json!(1),
                state: json!({}),
                at: Timestamp(0),
                origin: None,
            })
            .unwrap();
        state
    }

    fn names(advance: &Advance) -> Vec<&'static str> {
        advance.events.iter().map(Event::name).collect()
    }

    #[test]
    fn advance_starts_due_work_once_and_finishes_the_run() {
        let mut state = state(RetryPolicy::default());
        let first = state.advance(Timestamp(10)).unwrap();
        assert_eq!(names(&first), ["step-started"]);
        assert!(matches!(&first.effects[..], [Effect::Execute(t)] if t.attempt == 1));
        // The task carries its `step-started` time (the sandbox's wall clock).
        assert!(
            matches!(&first.effects[..], [Effect::Execute(t)] if t.started_at == Timestamp(10))
        );
        // Nothing new until the attempt reports.
        assert_eq!(state.advance(Timestamp(11)).unwrap(), Advance::default());
        let path = StepPath::root(&id("a"));
        assert!(state.expects_report(&path, 1));
        assert!(!state.expects_report(&path, 2));
        state
            .apply(&Event::StepCompleted {
                path: path.clone(),
                output: json!(2).into(),
                state: None,
                measured: None,
                at: Timestamp(12),
            })
            .unwrap();
        assert!(!state.expects_report(&path, 1));
        let last = state.advance(Timestamp(13)).unwrap();
        assert_eq!(names(&last), ["run-completed"]);
        assert!(last.effects.is_empty());
    }

    #[test]
    fn a_retry_not_yet_due_asks_to_be_woken_and_starts_when_due() {
        let mut state = state(RetryPolicy {
            max_retries: 1,
            delay_ms: 5,
            backoff: 1,
        });
        state.advance(Timestamp(0)).unwrap();
        state.apply(&failure(1_000)).unwrap();
        // The decision is recorded with its due time, then the run waits.
        let waiting = state.advance(Timestamp(2_000)).unwrap();
        assert_eq!(names(&waiting), ["step-retrying"]);
        assert!(matches!(
            waiting.events[0],
            Event::StepRetrying {
                attempt: 2,
                due: Timestamp(6_000),
                ..
            }
        ));
        assert_eq!(waiting.effects, [Effect::WakeAt(Timestamp(6_000))]);
        let again = state.advance(Timestamp(3_000)).unwrap();
        assert!(again.events.is_empty());
        assert_eq!(again.effects, [Effect::WakeAt(Timestamp(6_000))]);
        let due = state.advance(Timestamp(6_000)).unwrap();
        assert_eq!(names(&due), ["step-started"]);
        assert!(matches!(&due.effects[..], [Effect::Execute(t)] if t.attempt == 2));
        assert!(
            matches!(&due.effects[..], [Effect::Execute(t)] if t.started_at == Timestamp(6_000))
        );
    }

    fn failure(at: u64) -> Event {
        Event::StepFailed {
            path: StepPath::root(&id("a")),
            error: StepError {
                kind: FailureKind::Step,
                code: "later".into(),
                message: "try again".into(),
                details: None,
                retryable: true,
                causes: Vec::new(),
            },
            measured: None,
            at: Timestamp(at),
        }
    }

    #[test]
    fn replay_reads_the_recorded_retry_decision_not_the_policy() {
        let mut decided = state(RetryPolicy {
            max_retries: 3,
            delay_ms: 5,
            backoff: 1,
        });
        decided.advance(Timestamp(0)).unwrap();
        decided.apply(&failure(1_000)).unwrap();
        let retry = decided.advance(Timestamp(1_000)).unwrap().events;
        // The same log replayed where the policy now allows no retry at all.
        let mut replayed = state(RetryPolicy::default());
        replayed.advance(Timestamp(0)).unwrap();
        replayed.apply(&failure(1_000)).unwrap();
        for event in &retry {
            replayed.apply(event).unwrap();
        }
        let record = replayed.step(&StepPath::root(&id("a"))).unwrap();
        assert_eq!(record.status, StepStatus::Retrying);
        assert_eq!(record.retry_at, Some(Timestamp(6_000)));
    }

    #[test]
    fn logs_from_before_step_retrying_still_replay() {
        let mut state = state(RetryPolicy {
            max_retries: 1,
            delay_ms: 0,
            backoff: 1,
        });
        state.advance(Timestamp(0)).unwrap();
        state.apply(&failure(1)).unwrap();
        // The old form: the next attempt starts right after the failure.
        state
            .apply(&Event::StepStarted {
                path: StepPath::root(&id("a")),
                step: id("a"),
                attempt: 2,
                input: json!(1).into(),
                at: Timestamp(2),
            })
            .unwrap();
        assert!(state.expects_report(&StepPath::root(&id("a")), 2));
    }

    #[test]
    fn redeliver_starts_in_flight_attempts_again_with_the_same_attempt() {
        let mut state = state(RetryPolicy::default());
        state.advance(Timestamp(0)).unwrap();
        let again = state.redeliver(Timestamp(5)).unwrap();
        assert_eq!(names(&again), ["step-started"]);
        assert!(matches!(&again.effects[..], [Effect::Execute(t)] if t.attempt == 1));
    }
}
