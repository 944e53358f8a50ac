//! Forks and merges of the workflow state: each branch of a concurrent node
//! (a parallel's node, a branch's arm, a foreach's item) reads and writes
//! its own copy, forked when the node started and merged back when it
//! completes.

use std::sync::Arc;

use serde_json::Value;

use super::progress::Progress;
use super::{NodeRecord, RunState};
use crate::id::{Repetition, StepPath};
use crate::workflow::NodeKind;

impl RunState {
    pub(super) fn commit_state(&mut self, path: &StepPath, state: &Option<Value>) {
        if let Some(state) = state {
            self.write_state(path, Arc::new(state.clone()));
        }
    }

    /// The concurrent branch `path` runs in, innermost first: its scope (a
    /// parallel's node, a branch's arm `route/high`, a foreach's item
    /// `items[3]`) and the concurrent node's record.
    fn branch_of(&self, path: &StepPath) -> Option<(StepPath, &NodeRecord)> {
        let mut at = Some(path.clone());
        while let Some(here) = at {
            match here.repetition() {
                Some((node, Repetition::Item(_))) => {
                    return self.nodes.get(&node).map(|r| (here, r));
                }
                // A loop's iterations run one after the other in the loop's
                // own branch: go on from the loop node.
                Some((node, Repetition::Round(_))) => {
                    at = Some(node);
                    continue;
                }
                None => {}
            }
            let parent = here.scope();
            if let Some(record) = parent.as_ref().and_then(|p| self.nodes.get(p))
                && matches!(
                    record.progress,
                    Progress::Parallel { .. } | Progress::Branch { .. }
                )
            {
                return Some((here, record));
            }
            at = parent;
        }
        None
    }

    /// The state an execution at `path` sees: the state of its concurrent
    /// branch (as of the fork, plus the branch's own writes), else the run's.
    pub(super) fn state_at(&self, path: &StepPath) -> Arc<Value> {
        match self.branch_of(path) {
            Some((scope, record)) => self.forks.get(&scope).unwrap_or(&record.fork).clone(),
            None => Arc::clone(&self.state),
        }
    }

    fn write_state(&mut self, path: &StepPath, state: Arc<Value>) {
        match self.branch_of(path).map(|(scope, _)| scope) {
            Some(scope) => {
                self.forks.insert(scope, state);
            }
            None => self.state = state,
        }
    }

    /// A concurrent node at `path` completes: the states its branches wrote
    /// merge into the enclosing state in declaration (item) order. Each
    /// branch's changes are the top-level keys it added, changed or removed
    /// relative to the fork; a branch whose state is not an object replaces
    /// the whole state.
    pub(super) fn merge(&mut self, path: &StepPath) {
        let Some(record) = self.nodes.get(path) else {
            return;
        };
        let scopes: Vec<StepPath> = match (&record.progress, self.workflow.node_at(path)) {
            (Progress::Foreach { items, .. }, _) => (0..items.len())
                .map(|i| path.iteration(u32::try_from(i).unwrap_or(u32::MAX)))
                .collect(),
            (Progress::Branch { arms, .. }, _) => arms.iter().map(|a| path.child(a)).collect(),
            (Progress::Parallel { .. }, Some(node)) => match &node.kind {
                NodeKind::Parallel { nodes } => nodes.iter().map(|n| path.child(&n.id)).collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        if scopes.iter().all(|s| !self.forks.contains_key(s)) {
            return;
        }
        let fork = Arc::clone(&record.fork);
        let mut merged = Value::clone(&fork);
        for scope in &scopes {
            if let Some(written) = self.forks.remove(scope) {
                merge_changes(&mut merged, &fork, &written);
            }
        }
        self.write_state(path, Arc::new(merged));
    }
}

/// Applies to `merged` the top-level changes `written` makes to `fork`.
fn merge_changes(merged: &mut Value, fork: &Value, written: &Value) {
    match (merged, fork, written) {
        (Value::Object(merged), Value::Object(fork), Value::Object(written)) => {
            for (key, value) in written {
                if fork.get(key) != Some(value) {
                    merged.insert(key.clone(), value.clone());
                }
            }
            for key in fork.keys() {
                if !written.contains_key(key) {
                    merged.remove(key);
                }
            }
        }
        (merged, fork, written) => {
            if fork != written {
                *merged = written.clone();
            }
        }
    }
}
