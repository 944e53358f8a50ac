//! How far a run got: the progress of each composite node and the cursor of
//! each flow in progress, and how `apply` moves them on when something
//! starts or finishes.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::view::node_id;
use super::{NodeRecord, RunState};
use crate::id::{Repetition, StepId, StepPath, Timestamp};

/// The progress of a composite node, kept up to date by `apply` so that the
/// interpreter visits only what is unfinished.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Progress {
    Foreach {
        items: Vec<Arc<Value>>,
        /// Each item's output, once its body finished.
        outputs: Vec<Option<Arc<Value>>>,
        /// Items started (they start in order: items `..started`).
        started: usize,
        /// Items started and not finished.
        active: BTreeSet<usize>,
        /// Items finished.
        done: usize,
    },
    Parallel {
        /// Each node's output, in declaration order.
        outputs: Vec<Option<Arc<Value>>>,
    },
    Branch {
        /// The arms that run, in declaration order.
        arms: Vec<StepId>,
        /// Their outputs.
        outputs: Vec<Option<Arc<Value>>>,
    },
    Loop {
        /// The current iteration, from 1.
        iteration: u32,
        /// Its input.
        input: Arc<Value>,
        /// Its body's output, once finished.
        output: Option<Arc<Value>>,
        /// Whether the loop decided to stop.
        stopped: bool,
    },
    Map,
    /// A sleep that started; it wakes at `until`.
    Sleep {
        until: Timestamp,
    },
    /// A nested workflow that started.
    Workflow {
        /// Its flow's output, once the flow finished.
        output: Option<Arc<Value>>,
    },
}

/// Where a flow in progress resumes: its first unfinished node and that
/// node's input.
#[derive(Debug, Clone)]
pub(super) struct Cursor {
    pub(super) next: usize,
    pub(super) input: Arc<Value>,
}

impl RunState {
    /// A composite node starts: its record, with the state it forks from.
    pub(super) fn started_node(&mut self, path: &StepPath, input: &Arc<Value>, progress: Progress) {
        self.entered(path);
        let record = NodeRecord {
            path: path.clone(),
            input: Arc::clone(input),
            output: None,
            progress,
            fork: self.state_at(path),
        };
        self.nodes.insert(path.clone(), record);
    }

    /// Something starts at `path`: when that is inside a foreach item, the
    /// item has started.
    pub(super) fn entered(&mut self, path: &StepPath) {
        let Some((node, Repetition::Item(i))) = path.scope().and_then(|s| s.repetition()) else {
            return;
        };
        if let Some(Progress::Foreach {
            outputs,
            started,
            active,
            ..
        }) = self.nodes.get_mut(&node).map(|n| &mut n.progress)
        {
            let i = i as usize;
            if outputs.get(i).is_some_and(Option::is_none) {
                active.insert(i);
                *started = (*started).max(i + 1);
            }
        }
    }

    /// The node at `path` finished with `output`: its result becomes
    /// visible, its flow moves on, and a flow that finished hands its
    /// output to the node that runs it.
    pub(super) fn completed(&mut self, path: &StepPath, output: &Arc<Value>) {
        if path.scope().is_some() {
            self.scoped.insert(path.clone(), Arc::clone(output));
        } else {
            Arc::make_mut(&mut self.results).insert(node_id(path), Arc::clone(output));
        }
        let Some(place) = self.workflow.place(path) else {
            return;
        };
        let scope = path.scope();
        if place.parallel {
            let owner = scope.as_ref().and_then(|s| self.nodes.get_mut(s));
            if let Some(Progress::Parallel { outputs }) = owner.map(|n| &mut n.progress)
                && let Some(slot) = outputs.get_mut(place.index)
            {
                *slot = Some(Arc::clone(output));
            }
            return;
        }
        let cursor = Cursor {
            next: place.index + 1,
            input: Arc::clone(output),
        };
        let Some(scope) = scope else {
            self.cursors.insert(None, cursor);
            return;
        };
        if place.index + 1 < place.len {
            self.cursors.insert(Some(scope), cursor);
            return;
        }
        // The flow in `scope` finished: its owner takes it from here.
        self.cursors.remove(&Some(scope.clone()));
        if let Some(Progress::Workflow { output: slot }) =
            self.nodes.get_mut(&scope).map(|n| &mut n.progress)
        {
            *slot = Some(Arc::clone(output));
            return;
        }
        if let Some((node, repetition)) = scope.repetition() {
            match (
                repetition,
                self.nodes.get_mut(&node).map(|n| &mut n.progress),
            ) {
                (
                    Repetition::Item(i),
                    Some(Progress::Foreach {
                        outputs,
                        active,
                        done,
                        ..
                    }),
                ) => {
                    let i = i as usize;
                    if let Some(slot @ None) = outputs.get_mut(i) {
                        *slot = Some(Arc::clone(output));
                        active.remove(&i);
                        *done += 1;
                    }
                }
                (
                    Repetition::Round(n),
                    Some(Progress::Loop {
                        iteration,
                        output: slot,
                        ..
                    }),
                ) if n == *iteration => *slot = Some(Arc::clone(output)),
                _ => {}
            }
        } else if let Some(owner) = scope.scope() {
            let arm = scope.last();
            if let Some(Progress::Branch { arms, outputs }) =
                self.nodes.get_mut(&owner).map(|n| &mut n.progress)
                && let Some(i) = arms.iter().position(|a| a.as_str() == arm)
            {
                outputs[i] = Some(Arc::clone(output));
            }
        }
    }
}
