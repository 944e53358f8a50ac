//! [`WorkflowSteps`]: every component of a workflow, loaded up front, behind
//! the [`StepRunner`] trait the runtimes drive.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use weft_core::{
    FailureKind, Interrupt, Limits, StepError, StepId, StepReport, StepRunner, StepTask, StepView,
    Workflow,
};

use crate::cache::LoadedFrom;
use crate::component::{Compiled, StepComponent};
use crate::error::SandboxError;
use crate::sandbox::Sandbox;

/// The components of one workflow's steps, each with its step's limits.
/// Loading everything before the first run means a broken component fails
/// `weft run` at once, not halfway through a run.
#[derive(Debug, Default)]
pub struct WorkflowSteps {
    steps: HashMap<StepId, (Arc<StepComponent>, Limits)>,
}

impl WorkflowSteps {
    /// Loads the component of every step of `workflow` (components shared by
    /// several steps are compiled once), checking each against its step's
    /// grants and limits.
    ///
    /// # Errors
    /// The first step that cannot be loaded, as [`SandboxError::Step`] naming
    /// the step id and the component path.
    pub fn load(sandbox: &Sandbox, workflow: &Workflow) -> Result<Self, SandboxError> {
        Self::load_with(sandbox, workflow, |_, path| sandbox.prepare_file(path))
    }

    /// Loads the components of a pinned workflow by the SHA-256 of their
    /// bytes: `digest` gives it for a component path of `workflow` (the
    /// canonical path recorded when the workflow was locked). Each is taken
    /// from the compile cache if it is there, else from its path if the
    /// file there still has that digest.
    ///
    /// # Errors
    /// As [`WorkflowSteps::load`]; a component found in neither place, or
    /// without a recorded digest, is [`SandboxError::Pinned`] inside
    /// [`SandboxError::Step`] (naming the step, the path and the digest).
    pub fn load_pinned<'d>(
        sandbox: &Sandbox,
        workflow: &Workflow,
        digest: impl Fn(&str) -> Option<&'d str>,
    ) -> Result<Self, SandboxError> {
        Self::load_with(sandbox, workflow, |component, path| {
            let sha256 = digest(component).ok_or_else(|| SandboxError::Pinned {
                path: path.to_owned(),
                sha256: String::new(),
                problem: "the workflow's lock records no digest for it".to_owned(),
            })?;
            sandbox.prepare_pinned(path, sha256)
        })
    }

    fn load_with(
        sandbox: &Sandbox,
        workflow: &Workflow,
        prepare: impl Fn(&str, &Path) -> Result<(Arc<Compiled>, LoadedFrom), SandboxError>,
    ) -> Result<Self, SandboxError> {
        let mut steps = HashMap::new();
        // Each distinct file is read, hashed and prepared once, however many
        // steps name it (an 18 MB Python component takes tens of
        // milliseconds to hash).
        let mut files: HashMap<&str, Arc<Compiled>> = HashMap::new();
        for def in workflow.steps() {
            let wrap = |error| SandboxError::Step {
                step: def.id.clone(),
                component: def.component.clone(),
                error: Box::new(error),
            };
            sandbox.check_limits(&def.limits).map_err(wrap)?;
            let (compiled, loaded_from) = match files.get(def.component.as_str()) {
                Some(compiled) => (compiled.clone(), LoadedFrom::Memory),
                None => {
                    let (compiled, loaded_from) =
                        prepare(&def.component, Path::new(&def.component)).map_err(wrap)?;
                    files.insert(&def.component, compiled.clone());
                    (compiled, loaded_from)
                }
            };
            let component =
                sandbox.step_component(compiled, &def.component, &def.grants, loaded_from);
            steps.insert(def.id.clone(), (component, def.limits));
        }
        Ok(Self { steps })
    }

    /// Steps from components loaded by other means (e.g. with
    /// [`Sandbox::load_bytes`] in tests).
    pub fn from_components(
        steps: impl IntoIterator<Item = (StepId, Arc<StepComponent>, Limits)>,
    ) -> Self {
        Self {
            steps: steps
                .into_iter()
                .map(|(id, component, limits)| (id, (component, limits)))
                .collect(),
        }
    }

    /// The component and limits of a step.
    pub fn get(&self, step: &StepId) -> Option<(&Arc<StepComponent>, &Limits)> {
        self.steps
            .get(step)
            .map(|(component, limits)| (component, limits))
    }
}

impl StepRunner for WorkflowSteps {
    fn run(&self, task: &StepTask, view: &StepView) -> StepReport {
        self.run_until(task, view, &Interrupt::new())
    }

    fn run_until(&self, task: &StepTask, view: &StepView, interrupt: &Interrupt) -> StepReport {
        match self.steps.get(&task.step) {
            Some((component, limits)) => component.run_until(task, view, limits, interrupt),
            None => StepReport::failed(StepError::host(
                FailureKind::Host,
                format!("no component is loaded for step `{}`", task.step),
            )),
        }
    }
}
