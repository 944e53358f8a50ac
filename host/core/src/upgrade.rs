//! Re-pinning a run to another version of its workflow: whether the events
//! it recorded still apply to the new plan.
//!
//! The check is static: every address a recorded event names must exist in
//! the new workflow as a node of the same kind, a step node must run the
//! same step, and a branch must still have the arms it took. It does not
//! replay the run (replay is the runtime's job, and still decides the rest:
//! a changed schema may refuse the next input).

use crate::event::Event;
use crate::id::StepPath;
use crate::workflow::{NodeKind, Workflow};

/// Why a run cannot move to another workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The new workflow has another id.
    #[error("the run is of workflow `{run}`, the new manifest declares `{new}`")]
    OtherWorkflow {
        /// The run's workflow id.
        run: String,
        /// The new manifest's workflow id.
        new: String,
    },
    /// A recorded node does not fit the new workflow.
    #[error("node `{path}`: {reason}")]
    Node {
        /// The first incompatible address, in event order.
        path: String,
        /// What differs.
        reason: String,
    },
}

/// The addresses an event names.
fn paths(event: &Event) -> Vec<&StepPath> {
    match event {
        Event::RunSuspended { paths, .. } => paths.iter().collect(),
        other => other.path().into_iter().collect(),
    }
}

/// Checks that the events a run recorded on `old` apply to `new`. Without
/// `old` (a run recorded before weft kept its workflow), only what the
/// events themselves say is compared: addresses exist, and a started step is
/// the step the new workflow runs there.
///
/// # Errors
/// [`UpgradeError::OtherWorkflow`] when the ids differ;
/// [`UpgradeError::Node`] naming the first recorded address (in event
/// order) that `new` lacks, holds as another kind of node, runs another
/// step at, or (a branch) lacks an arm the run took.
pub fn check_upgrade(
    old: Option<&Workflow>,
    new: &Workflow,
    events: &[Event],
) -> Result<(), UpgradeError> {
    let run_workflow = events.iter().find_map(|e| match e {
        Event::RunStarted { workflow, .. } => Some(workflow),
        _ => None,
    });
    if let Some(id) = run_workflow.or(old.map(Workflow::id))
        && id != new.id()
    {
        return Err(UpgradeError::OtherWorkflow {
            run: id.to_string(),
            new: new.id().to_string(),
        });
    }
    let incompatible = |path: &StepPath, reason: String| UpgradeError::Node {
        path: path.to_string(),
        reason,
    };
    for event in events {
        for path in paths(event) {
            let Some(now) = new.node_at(path) else {
                return Err(incompatible(
                    path,
                    "the run recorded it, the new workflow has no such node".to_owned(),
                ));
            };
            if let (Event::StepStarted { step: a, .. }, NodeKind::Step { step: b }) =
                (event, &now.kind)
                && a != b
            {
                return Err(incompatible(
                    path,
                    format!("runs step `{a}` in the run, step `{b}` in the new workflow"),
                ));
            }
            if let Event::StepStarted { .. } = event
                && !matches!(now.kind, NodeKind::Step { .. })
            {
                return Err(incompatible(
                    path,
                    format!(
                        "a `step` node in the run, a `{}` node in the new workflow",
                        now.kind.name()
                    ),
                ));
            }
            if let Some(then) = old.and_then(|old| old.node_at(path)) {
                if then.kind.name() != now.kind.name() {
                    return Err(incompatible(
                        path,
                        format!(
                            "a `{}` node in the run, a `{}` node in the new workflow",
                            then.kind.name(),
                            now.kind.name()
                        ),
                    ));
                }
                if let (NodeKind::Step { step: a }, NodeKind::Step { step: b }) =
                    (&then.kind, &now.kind)
                    && a != b
                {
                    return Err(incompatible(
                        path,
                        format!("runs step `{a}` in the run, step `{b}` in the new workflow"),
                    ));
                }
            }
            if let (Event::BranchDecided { arms, .. }, NodeKind::Branch { arms: declared }) =
                (event, &now.kind)
                && let Some(arm) = arms.iter().find(|a| !declared.iter().any(|d| d.id == **a))
            {
                return Err(incompatible(
                    path,
                    format!("the run took arm `{arm}`, which the new workflow does not have"),
                ));
            }
        }
    }
    Ok(())
}
