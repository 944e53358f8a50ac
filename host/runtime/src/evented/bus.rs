//! The bus between the orchestrator and the step workers.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use weft_core::{Interrupt, RunId, StepPath, StepTask, StepView};

use crate::runtime::Registered;
use crate::worker::Executed;

/// One step attempt for a worker: everything needed to run it.
pub struct WorkItem {
    /// The workflow (a networked bus would send its id and manifest hash instead).
    pub workflow: Arc<Registered>,
    /// The attempt.
    pub task: StepTask,
    /// What the step may read of its run, as of dispatch.
    pub view: StepView,
    /// Fires when the attempt's report can no longer matter (the run was
    /// canceled, or this process stopped driving it): the attempt stops.
    pub interrupt: Interrupt,
}

/// A finished attempt, reported back to the orchestrator.
pub struct Done {
    /// The run.
    pub run: RunId,
    /// The execution.
    pub path: StepPath,
    /// The attempt.
    pub attempt: u32,
    /// The events and logs it produced.
    pub executed: Executed,
}

/// Carries work to step workers and their results back. The in-process
/// implementation uses channels; a networked one (workers in other
/// processes) implements the same three operations.
pub trait Bus: Send + Sync {
    /// Hands an attempt to some worker.
    fn dispatch(&self, item: WorkItem);
    /// Worker side: the next attempt to run; `None` once the bus is closed.
    fn next_work(&self) -> Option<WorkItem>;
    /// Worker side: reports a finished attempt.
    fn report(&self, done: Done);
    /// Whether attempts are waiting for a worker: the runtime is busy, and
    /// a finished attempt's report is better committed together with the
    /// others (group commit) than right away by the worker that ran it.
    fn backlog(&self) -> bool;
    /// Stops `workers` workers: each gets `None` from `next_work` once the
    /// work dispatched before is taken.
    fn close(&self, workers: usize);
}

/// The in-process bus: two channels.
pub struct InProcessBus {
    work_tx: Sender<Option<WorkItem>>,
    work_rx: Receiver<Option<WorkItem>>,
    done_tx: Sender<Done>,
}

impl InProcessBus {
    /// A bus whose reports arrive on the returned receiver.
    pub fn new() -> (Self, Receiver<Done>) {
        let (work_tx, work_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        (
            Self {
                work_tx,
                work_rx,
                done_tx,
            },
            done_rx,
        )
    }
}

impl Bus for InProcessBus {
    fn dispatch(&self, item: WorkItem) {
        // The receiver lives in `self`, so sending cannot fail.
        let _ = self.work_tx.send(Some(item));
    }

    fn next_work(&self) -> Option<WorkItem> {
        self.work_rx.recv().ok().flatten()
    }

    fn report(&self, done: Done) {
        let _ = self.done_tx.send(done);
    }

    fn backlog(&self) -> bool {
        !self.work_rx.is_empty()
    }

    fn close(&self, workers: usize) {
        for _ in 0..workers {
            let _ = self.work_tx.send(None);
        }
    }
}
