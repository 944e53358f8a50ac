//! Time travel (`weft rerun RUN --from PATH`): a NEW run that takes over an
//! old run's recorded results of everything before an address and executes
//! from that address on. The old run is not changed.
//!
//! "Before" is the plan's order, the same in every runtime and whatever
//! order things happened in: at the first segment where an address and
//! `from` differ, the one whose node comes first in its flow (or whose arm
//! comes first in its branch, or whose item index or iteration number is
//! lower) is before. The new run's log starts with its own `run-started`
//! (the old run's input and initial state, and an [`Origin`]), followed by
//! the old run's events of the addresses before `from`, in their order, and
//! by the decisions of the nodes enclosing `from` that led to it (a
//! foreach's fan-out, a branch's choice, a loop's earlier iterations) — but
//! not their completions, which are decided again.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::error::TransitionError;
use crate::event::{Event, Origin};
use crate::id::{RunId, StepPath, Timestamp};
use crate::state::{RunState, RunStatus, StepStatus};
use crate::workflow::{NodeKind, Workflow};

/// Why a rerun cannot start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RerunError {
    /// The old run is still running: its results are not settled.
    #[error(
        "run {run} is still running: it can be rerun once it has finished, failed, suspended or been canceled"
    )]
    Running {
        /// The old run.
        run: String,
    },
    /// `from` names no node of the workflow.
    #[error("run {run}: the workflow has no node at `{path}`")]
    UnknownPath {
        /// The old run.
        run: String,
        /// The address asked for.
        path: String,
    },
    /// The old run never got to `from` (e.g. a branch arm it did not take).
    #[error("run {run} never reached `{path}`: there is nothing to rerun from there")]
    NotReached {
        /// The old run.
        run: String,
        /// The address asked for.
        path: String,
    },
    /// The old run's events do not replay on this workflow.
    #[error("run {run}: {source}")]
    Replay {
        /// The old run.
        run: String,
        /// Why.
        source: TransitionError,
    },
}

/// How an address relates to the address a rerun starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// Comes first in the plan: its recorded results are taken over.
    Before,
    /// Encloses `from`: its decisions up to `from` are taken over.
    Encloses,
    /// `from` itself, inside it, or after it: executed again.
    After,
}

/// The first events of a new run `run` that reruns the run recorded in
/// `old` from `from` (given `input` instead of what precedes it, if any),
/// to be created and then driven like any run.
///
/// # Errors
/// A [`RerunError`]: the old run is running, `from` is no node of the
/// workflow or was never reached, or the old events do not replay.
pub fn rerun(
    workflow: &Arc<Workflow>,
    old: &[Event],
    run: RunId,
    from: StepPath,
    input: Option<Value>,
    at: Timestamp,
) -> Result<Vec<Event>, RerunError> {
    let name = match old.first() {
        Some(Event::RunStarted { run, .. }) => run.to_string(),
        _ => "-".to_owned(),
    };
    let replay = |events: &[Event]| {
        RunState::replay(Arc::clone(workflow), events).map_err(|source| RerunError::Replay {
            run: name.clone(),
            source,
        })
    };
    let state = replay(old)?;
    if state.status() == RunStatus::Running {
        return Err(RerunError::Running { run: name });
    }
    if !workflow.has_path(&from) {
        return Err(RerunError::UnknownPath {
            run: name,
            path: from.to_string(),
        });
    }
    let inside = format!("{from}/");
    let reached = old.iter().any(|e| {
        e.path()
            .is_some_and(|p| *p == from || p.as_str().starts_with(&inside))
    });
    if !reached {
        return Err(RerunError::NotReached {
            run: name,
            path: from.to_string(),
        });
    }
    let Some(Event::RunStarted {
        run: old_run,
        workflow: id,
        input: workflow_input,
        state: initial,
        ..
    }) = old.first()
    else {
        return Err(RerunError::NotReached {
            run: name,
            path: from.to_string(),
        });
    };
    let mut events = vec![Event::RunStarted {
        run,
        workflow: id.clone(),
        input: workflow_input.clone(),
        state: initial.clone(),
        at,
        origin: Some(Origin {
            run: old_run.clone(),
            from: from.clone(),
            input,
        }),
    }];
    for event in &old[1..] {
        let Some(path) = event.path() else {
            // Run-level events (suspended, finished) are decided again.
            continue;
        };
        let keep = match relation(workflow, path, &from) {
            Relation::Before => true,
            Relation::Encloses => match event {
                Event::NodeStarted { .. } | Event::BranchDecided { .. } => true,
                Event::LoopDecided { iteration, .. } => {
                    round_at(path, &from).is_some_and(|round| *iteration < round)
                }
                _ => false,
            },
            Relation::After => false,
        };
        if keep {
            events.push(event.clone());
        }
    }
    // What is taken over must replay: it did in the old run, in this order.
    // An attempt that was in flight when the old run ended (a cancel while
    // parallel parts ran) has no result to take over: that address runs
    // again from its start, like everything after `from`.
    let taken = replay(&events)?;
    let unfinished: HashSet<&StepPath> = taken
        .steps()
        .filter(|r| r.status == StepStatus::Running)
        .map(|r| &r.path)
        .collect();
    if !unfinished.is_empty() {
        let unfinished: HashSet<StepPath> = unfinished.into_iter().cloned().collect();
        events.retain(|e| e.path().is_none_or(|p| !unfinished.contains(p)));
        replay(&events)?;
    }
    Ok(events)
}

/// A segment's node (or arm) id and its item index or iteration number.
fn split(segment: &str) -> (&str, Option<u32>) {
    if let Some(rest) = segment.strip_suffix(']')
        && let Some((id, index)) = rest.split_once('[')
    {
        return (id, index.parse().ok());
    }
    if let Some((id, round)) = segment.split_once('#') {
        return (id, round.parse().ok());
    }
    (segment, None)
}

/// How address `x` relates to `from` in the plan's order.
fn relation(workflow: &Workflow, x: &StepPath, from: &StepPath) -> Relation {
    let xs: Vec<&str> = x.as_str().split('/').collect();
    let fs: Vec<&str> = from.as_str().split('/').collect();
    for (i, (a, b)) in xs.iter().zip(&fs).enumerate() {
        if a == b {
            continue;
        }
        let ((a_id, a_rep), (b_id, b_rep)) = (split(a), split(b));
        if a_id == b_id {
            return match (a_rep, b_rep) {
                (Some(a), Some(b)) if a < b => Relation::Before,
                // `x` is the foreach or loop node whose repetition holds `from`.
                (None, Some(_)) if i + 1 == xs.len() => Relation::Encloses,
                _ => Relation::After,
            };
        }
        let pattern: Vec<&str> = xs[..i].iter().map(|s| split(s).0).collect();
        return match (
            position(workflow, &pattern, a_id),
            position(workflow, &pattern, b_id),
        ) {
            (Some(a), Some(b)) if a < b => Relation::Before,
            _ => Relation::After,
        };
    }
    if xs.len() < fs.len() {
        Relation::Encloses
    } else {
        Relation::After
    }
}

/// The position of node (or arm) `id` in the flow (or branch) at `parent`
/// (node ids without repetitions; empty: the top level).
fn position(workflow: &Workflow, parent: &[&str], id: &str) -> Option<usize> {
    let mut joined = parent.join("/");
    if !joined.is_empty() {
        joined.push('/');
    }
    joined.push_str(id);
    let node = StepPath::parse(&joined).ok()?;
    if let Some(place) = workflow.place(&node) {
        return Some(place.index);
    }
    // Not a node: an arm of the branch at `parent`.
    let branch = StepPath::parse(&parent.join("/")).ok()?;
    match &workflow.node_at(&branch)?.kind {
        NodeKind::Branch { arms } => arms.iter().position(|a| a.id.as_str() == id),
        _ => None,
    }
}

/// The iteration number of loop `node` that `from` runs in.
fn round_at(node: &StepPath, from: &StepPath) -> Option<u32> {
    let depth = node.as_str().split('/').count();
    let segment = from.as_str().split('/').nth(depth - 1)?;
    split(segment).1
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::id::StepId;
    use crate::workflow::{Node, StepDef, WorkflowBuilder};

    fn id(s: &str) -> StepId {
        StepId::new(s).unwrap()
    }

    fn path(s: &str) -> StepPath {
        StepPath::parse(s).unwrap()
    }

    #[test]
    fn an_attempt_in_flight_when_the_old_run_ended_runs_again() {
        let step = |name: &str| Node {
            id: id(name),
            kind: NodeKind::Step { step: id(name) },
        };
        let workflow = Arc::new(
            WorkflowBuilder {
                id: id("wf"),
                description: None,
                input_schema: None,
                output_schema: None,
                state_schema: None,
                initial_state: json!({}),
                steps: ["a", "b", "c"]
                    .into_iter()
                    .map(|s| (id(s), StepDef::new(id(s), "/c/s.wasm")))
                    .collect(),
                flow: vec![Node {
                    id: id("both"),
                    kind: NodeKind::Parallel {
                        nodes: vec![step("a"), step("b"), step("c")],
                    },
                }],
            }
            .build()
            .unwrap(),
        );
        let at = Timestamp(1);
        let started = |p: &str, s: &str| Event::StepStarted {
            path: path(p),
            step: id(s),
            attempt: 1,
            input: Arc::new(json!(1)),
            at,
        };
        // Canceled while `both/a` and `both/c` ran; `both/b` had completed.
        let old = vec![
            Event::RunStarted {
                run: RunId::new("old").unwrap(),
                workflow: id("wf"),
                input: json!(1),
                state: json!({}),
                at,
                origin: None,
            },
            Event::NodeStarted {
                path: path("both"),
                input: Arc::new(json!(1)),
                items: None,
                at,
            },
            started("both/a", "a"),
            started("both/b", "b"),
            started("both/c", "c"),
            Event::StepCompleted {
                path: path("both/b"),
                output: Arc::new(json!("b")),
                state: None,
                measured: None,
                at,
            },
            Event::RunCanceled { reason: None, at },
        ];
        let new = rerun(
            &workflow,
            &old,
            RunId::new("new").unwrap(),
            path("both/c"),
            None,
            Timestamp(2),
        )
        .unwrap();
        let taken: Vec<(&str, &str)> = new[1..]
            .iter()
            .map(|e| (e.name(), e.path().map_or("", StepPath::as_str)))
            .collect();
        // `both/b`'s result is taken over; `both/a` had none: it runs again.
        assert_eq!(
            taken,
            [
                ("node-started", "both"),
                ("step-started", "both/b"),
                ("step-completed", "both/b")
            ]
        );
        let mut state = RunState::replay(Arc::clone(&workflow), &new).unwrap();
        let next = state.advance(Timestamp(3)).unwrap();
        let paths: Vec<&str> = next
            .events
            .iter()
            .filter_map(|e| match e {
                Event::StepStarted { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(paths, ["both/a", "both/c"]);
    }
}
