//! The pure model of weft: workflow graphs, run events and the one state machine.
//!
//! Both runtimes drive this crate's [`RunState`]: a run's state changes only by
//! [`RunState::apply`]ing an [`Event`], and what happens next is decided by one
//! sans-IO driver, [`RunState::advance`], which returns the events to record and
//! the [`Effect`]s to perform. The default runtime keeps events in memory; the
//! evented runtime persists them first. Same events in, same state out.
//!
//! What this crate deliberately does NOT contain: wasmtime, async runtimes,
//! SQLite, the filesystem or the wall clock. Time enters through the [`Clock`]
//! trait and through the timestamps carried by events; steps run behind the
//! [`StepRunner`] trait.

mod budget;
mod driver;
mod error;
mod event;
mod expr;
mod id;
mod rerun;
mod runner;
mod schema;
mod settle;
mod state;
mod store;
pub use store::rows;
mod upgrade;
mod workflow;

pub use budget::{Budget, Exceeded, RunLimits, Usage};
pub use driver::{Advance, Effect};
pub use error::{
    ErrorCause, FailureKind, GraphError, ResumeError, RunError, StepError, TransitionError,
};
pub use event::{CustomEvent, Event, Origin};
pub use expr::{Expr, ExprError};
pub use id::{IdError, Repetition, RunId, StepId, StepPath, Timestamp};
pub use rerun::{RerunError, rerun};
pub use runner::{
    Clock, Interrupt, LogLevel, LogLine, ManualClock, Measured, StepOutcome, StepReport,
    StepRunner, StepTask, StepView,
};
pub use schema::{Schema, SchemaError};
pub use settle::{check_input, settle};
pub use state::{
    Finish, NodeRecord, ResumeTarget, RunResult, RunState, RunStatus, StepRecord, StepStatus,
    SuspendedStep, Timer, TimerKind, Wake, Work,
};
pub use store::{
    Append, Claimable, Deployment, EventStore, Lease, Owner, Pin, RunCursor, RunFilter, RunIndex,
    RunMeta, RunPage, RunSummary, Store, StoreError, Takeover, WorkflowRegistry,
};
pub use upgrade::{UpgradeError, check_upgrade};
pub use workflow::{
    Arm, Grant, InputError, Limits, LoopKind, Node, NodeKind, RetryPolicy, StepDef, Workflow,
    WorkflowBuilder,
};
