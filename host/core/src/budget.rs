//! Per-run budgets: limits on a run as a whole, over all its attempts.
//!
//! A step's [`crate::Limits`] bound one attempt; a run could still grow
//! without bound (a foreach whose items each emit a thousand 64 KiB events,
//! a step retried again and again). [`RunLimits`] bound what one run
//! records: its events, their bytes, its attempts.
//!
//! **What is counted** ([`Usage`]): every event the run records, as
//! [`crate::RunState::apply`] applies it, so a replay of the log counts the
//! same: one per event; its bytes, the length of its JSON text as the store
//! writes it (serde JSON: what holds its outputs, states, errors, payloads
//! and custom events); and one attempt per `step-started` (a first attempt,
//! a retry, a resumed step's new attempt, a redelivery after a crash).
//!
//! **Where it is decided**: in the driver only (`driver.rs`), so both
//! runtimes fail a run at the same point. No event the driver records takes
//! the run past a budget:
//! - a decision of [`crate::RunState::advance`] (an attempt's start, a
//!   retry, a node's start or completion, the run's completion) that would
//!   is not recorded: the run fails with `run-failed`, kind
//!   [`crate::FailureKind::RunLimit`], instead;
//! - an attempt's report ([`crate::RunState::settled`]) is recorded whole or
//!   not at all: one that would take the run past a budget is replaced by a
//!   `step-failed` of kind `run-limit` (its custom events, output and state
//!   are not recorded) and the run fails with it.
//!
//! Only those two events (and a `run-failed` the flow decided, bounded by
//! the error caps) may go past: a run holds at most `max-events + 2` events
//! and `max-bytes` plus the size of those two. Attempts still in flight when
//! the run fails (concurrent foreach items, parallel nodes, branch arms) end
//! `canceled`, and their reports are dropped: nothing of theirs is stored.

use serde::{Deserialize, Serialize};

use crate::error::{FailureKind, RunError, StepError};
use crate::event::Event;
use crate::id::{StepPath, Timestamp};

/// Limits on a run as a whole (`run-limits` in a manifest). A nested
/// workflow runs inside its parent's run (one log), so it counts against
/// the parent's budgets; only the root workflow's limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RunLimits {
    /// Most events the run records.
    pub max_events: u64,
    /// Most bytes the run records: the JSON text of all its events.
    pub max_bytes: u64,
    /// Most attempts the run starts (`step-started` events).
    pub max_attempts: u64,
}

impl Default for RunLimits {
    /// 1,000,000 events, 256 MiB and 500,000 attempts: five times what a
    /// 100,000-item foreach records (about 200,000 events, 25 MB and
    /// 100,000 attempts), while a run of huge events stops at 256 MiB.
    fn default() -> Self {
        Self {
            max_events: 1_000_000,
            max_bytes: 256 << 20,
            max_attempts: 500_000,
        }
    }
}

/// What a run has recorded, counted as its events apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Events.
    pub events: u64,
    /// Bytes: the length of each event's JSON text.
    pub bytes: u64,
    /// Attempts: `step-started` events.
    pub attempts: u64,
}

impl Usage {
    /// What recording `event` costs.
    pub fn of(event: &Event) -> Self {
        Self {
            events: 1,
            bytes: json_len(event),
            attempts: u64::from(matches!(event, Event::StepStarted { .. })),
        }
    }

    /// What recording all of `events` costs.
    pub fn of_all<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        events
            .into_iter()
            .fold(Self::default(), |sum, event| sum.plus(Self::of(event)))
    }

    /// Both together.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            events: self.events.saturating_add(other.events),
            bytes: self.bytes.saturating_add(other.bytes),
            attempts: self.attempts.saturating_add(other.attempts),
        }
    }
}

/// The length of `event`'s JSON text, as the store writes it, measured
/// without building the text.
fn json_len(event: &Event) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing an event into a counter cannot fail: every map key is
    // text and the counter never refuses bytes.
    let _ = serde_json::to_writer(&mut counter, event);
    counter.0
}

/// One of a run's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    /// `run-limits.max-events`.
    MaxEvents,
    /// `run-limits.max-bytes`.
    MaxBytes,
    /// `run-limits.max-attempts`.
    MaxAttempts,
}

impl Budget {
    /// The manifest field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            Self::MaxEvents => "run-limits.max-events",
            Self::MaxBytes => "run-limits.max-bytes",
            Self::MaxAttempts => "run-limits.max-attempts",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::MaxEvents => "events",
            Self::MaxBytes => "bytes of events",
            Self::MaxAttempts => "attempts",
        }
    }
}

/// Recording something would take a run past one of its budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// Which budget.
    pub budget: Budget,
    /// Its value.
    pub limit: u64,
    /// What the run had recorded.
    pub used: u64,
    /// What it would have recorded.
    pub would_be: u64,
}

impl RunLimits {
    /// The first budget (events, bytes, attempts) that recording `cost` on
    /// top of `used` would go past, if any.
    pub fn exceeded(&self, used: Usage, cost: Usage) -> Option<Exceeded> {
        let after = used.plus(cost);
        [
            (
                Budget::MaxEvents,
                self.max_events,
                used.events,
                after.events,
            ),
            (Budget::MaxBytes, self.max_bytes, used.bytes, after.bytes),
            (
                Budget::MaxAttempts,
                self.max_attempts,
                used.attempts,
                after.attempts,
            ),
        ]
        .into_iter()
        .find(|(_, limit, _, would_be)| would_be > limit)
        .map(|(budget, limit, used, would_be)| Exceeded {
            budget,
            limit,
            used,
            would_be,
        })
    }
}

impl Exceeded {
    /// The `run-limit` error saying that `what` would take the run past
    /// this budget, with the budget, its value and the run's figures as
    /// details.
    pub fn error(&self, what: &str) -> StepError {
        let limit = match (self.budget, unit(self.limit)) {
            (Budget::MaxBytes, Some(unit)) => format!("{} ({unit})", self.limit),
            _ => self.limit.to_string(),
        };
        let message = format!(
            "the run's budget is spent: {what} would take the run to {} {}, past its `{}` \
             of {limit} (it had recorded {}); everything recorded before is kept. Raise \
             `{}` in the workflow's manifest for runs that need more",
            self.would_be,
            self.budget.unit(),
            self.budget.field(),
            self.used,
            self.budget.field(),
        );
        StepError::host(FailureKind::RunLimit, message).with_details(serde_json::json!({
            "budget": self.budget,
            "limit": self.limit,
            "used": self.used,
            "would-be": self.would_be,
        }))
    }

    /// The `run-failed` event ending the run at this budget, at `at`,
    /// naming the execution `step` whose event did not fit, if any.
    pub fn run_failed(&self, what: &str, step: Option<StepPath>, at: Timestamp) -> Event {
        Event::RunFailed {
            error: RunError {
                step,
                error: self.error(what),
            },
            at,
        }
    }
}

/// `n` bytes in the largest binary unit that divides it, for messages
/// (`None` when none does).
fn unit(n: u64) -> Option<String> {
    [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|(shift, _)| n >= 1 << shift && n.is_multiple_of(1 << shift))
        .map(|(shift, unit)| format!("{} {unit}", n >> shift))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::CustomEvent;
    use crate::id::StepPath;

    fn custom(data: serde_json::Value) -> Event {
        Event::Custom {
            path: StepPath::parse("a").unwrap(),
            event: CustomEvent {
                kind: "k".into(),
                data,
            },
            at: Timestamp(7),
        }
    }

    #[test]
    fn an_event_costs_its_stored_json_text() {
        let event = custom(json!({"text": "x".repeat(1000)}));
        let usage = Usage::of(&event);
        assert_eq!(usage.events, 1);
        assert_eq!(usage.attempts, 0);
        assert_eq!(
            usage.bytes,
            serde_json::to_string(&event).unwrap().len() as u64
        );
        let started = Event::StepStarted {
            path: StepPath::parse("a").unwrap(),
            step: crate::StepId::new("a").unwrap(),
            attempt: 1,
            input: json!(null).into(),
            at: Timestamp(1),
        };
        assert_eq!(Usage::of(&started).attempts, 1);
        assert_eq!(
            Usage::of_all([&event, &started]),
            Usage::of(&event).plus(Usage::of(&started))
        );
    }

    #[test]
    fn the_first_budget_passed_is_named_with_its_figures() {
        let limits = RunLimits {
            max_events: 10,
            max_bytes: 4 << 20,
            max_attempts: 3,
        };
        let used = Usage {
            events: 9,
            bytes: 4 << 20,
            attempts: 3,
        };
        let fits = Usage {
            events: 1,
            bytes: 0,
            attempts: 0,
        };
        assert_eq!(limits.exceeded(used, fits), None);
        let over = limits.exceeded(used, fits.plus(fits)).unwrap();
        assert_eq!(
            (over.budget, over.limit, over.used, over.would_be),
            (Budget::MaxEvents, 10, 9, 11)
        );
        let big = Usage {
            events: 1,
            bytes: 1,
            attempts: 0,
        };
        let over = limits.exceeded(used, big).unwrap();
        assert_eq!(over.budget, Budget::MaxBytes);
        let error = over.error("step `a`'s report");
        assert_eq!(error.kind, FailureKind::RunLimit);
        assert_eq!(error.code, "run-limit");
        assert!(!error.retryable);
        assert!(
            error
                .message
                .contains("`run-limits.max-bytes` of 4194304 (4 MiB)"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("step `a`'s report"),
            "{}",
            error.message
        );
        assert_eq!(
            error.details,
            Some(
                json!({"budget": "max-bytes", "limit": 4 << 20, "used": 4 << 20, "would-be": (4 << 20) + 1})
            )
        );
    }
}
