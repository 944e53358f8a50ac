//! What an execution sees through the host imports: the `step-result`s of
//! its scopes, its workflow input and its iteration, resolved lexically from
//! its address (its state comes from its concurrent branch: see `fork`).

use std::sync::Arc;

use serde_json::Value;

use super::RunState;
use super::progress::Progress;
use crate::id::{Repetition, StepId, StepPath};
use crate::runner::StepView;
use crate::workflow::{NodeKind, Workflow};

impl RunState {
    /// What the execution at `path` can read through the host imports.
    ///
    /// `step-result(id)` resolves lexically: a result of node `id` in the
    /// execution's own scope (the same foreach item) first, then in each
    /// enclosing scope out to the top level — never "whichever ran last".
    pub fn view(&self, path: &StepPath) -> StepView {
        // A nested workflow is a world of its own: its steps see its input
        // and its results only.
        let boundary = self.nested_at(path).map(|(node, _)| node);
        let mut results = match boundary {
            Some(_) => Arc::default(),
            None => Arc::clone(&self.results),
        };
        let mut scope = path.scope();
        let mut scopes = Vec::new();
        while let Some(s) = scope {
            scope = s.scope();
            let last = Some(&s) == boundary.as_ref();
            scopes.push(s);
            if last {
                break;
            }
        }
        // Outermost first, so that inner scopes override. A parallel's
        // nodes run at once: none sees another's result.
        for scope in scopes.iter().rev() {
            if self
                .nodes
                .get(scope)
                .is_some_and(|n| matches!(n.progress, Progress::Parallel { .. }))
            {
                continue;
            }
            let start = scope.children_start();
            let prefix = start.as_str();
            let inner = self
                .scoped
                .range(start.clone()..)
                .take_while(|(p, _)| p.as_str().starts_with(prefix))
                .filter(|(p, _)| !p.as_str()[prefix.len()..].contains('/'));
            for (p, output) in inner {
                Arc::make_mut(&mut results).insert(node_id(p), Arc::clone(output));
            }
        }
        StepView {
            workflow_input: self.workflow_input_at(path),
            state: self.state_at(path),
            results,
        }
    }

    /// The innermost nested workflow node `path` runs in (its address and
    /// workflow), if any.
    pub(crate) fn nested_at(&self, path: &StepPath) -> Option<(StepPath, &Arc<Workflow>)> {
        let mut scope = path.scope();
        while let Some(here) = scope {
            if let Some(NodeKind::Workflow { workflow }) =
                self.workflow.node_at(&here).map(|n| &n.kind)
            {
                return Some((here, workflow));
            }
            scope = here.scope();
        }
        None
    }

    /// The workflow input an execution at `path` sees: its nested
    /// workflow's input, else the run's.
    pub(crate) fn workflow_input_at(&self, path: &StepPath) -> Arc<Value> {
        self.nested_at(path)
            .and_then(|(node, _)| self.nodes.get(&node))
            .map_or_else(|| Arc::clone(&self.input), |n| Arc::clone(&n.input))
    }

    /// The innermost foreach item index or loop iteration number `path`
    /// runs in, within its own workflow (a nested workflow does not see
    /// the iteration of the node that runs it).
    pub(crate) fn iteration_at(&self, path: &StepPath) -> Option<u32> {
        let mut scope = path.scope();
        while let Some(here) = scope {
            if let Some((_, Repetition::Item(n) | Repetition::Round(n))) = here.repetition() {
                return Some(n);
            }
            if matches!(
                self.workflow.node_at(&here).map(|n| &n.kind),
                Some(NodeKind::Workflow { .. })
            ) {
                return None;
            }
            scope = here.scope();
        }
        None
    }
}

/// The node id of the last segment of `path` (without an iteration index):
/// the key of `step-result`.
pub(super) fn node_id(path: &StepPath) -> StepId {
    let last = path.as_str().rsplit('/').next().unwrap_or_default();
    let id = last.split(['[', '#']).next().unwrap_or_default();
    StepId::new(id).unwrap_or_else(|_| StepId::new("invalid").expect("valid literal id"))
}
