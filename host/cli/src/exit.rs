//! Exit codes and the CLI's error type.

use std::fmt;
use std::process::ExitCode;

use weft_core::RunStatus;

/// The process exit code; distinct per outcome so scripts can branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The run succeeded (or validation passed).
    Success = 0,
    /// The run failed.
    Failed = 1,
    /// Invalid manifest, input, resume data or usage.
    Invalid = 2,
    /// The run is suspended.
    Suspended = 3,
    /// The run was canceled.
    Canceled = 4,
    /// Any other error (I/O, internal).
    Other = 5,
}

impl Code {
    /// The exit code a finished (or suspended) run maps to.
    pub fn of(status: RunStatus) -> Self {
        match status {
            RunStatus::Success => Self::Success,
            RunStatus::Failed => Self::Failed,
            RunStatus::Suspended => Self::Suspended,
            RunStatus::Canceled => Self::Canceled,
            RunStatus::Pending | RunStatus::Running => Self::Other,
        }
    }
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// A command that could not do its job: a message and the exit code to use.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: Code,
    /// What went wrong (with its context chain).
    pub error: anyhow::Error,
}

impl Failure {
    /// An invalid-input failure (exit code 2).
    pub fn invalid(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: Code::Invalid,
            error: error.into(),
        }
    }

    /// Any other failure (exit code 5).
    pub fn other(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: Code::Other,
            error: error.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// What a subcommand returns.
pub type Outcome = Result<Code, Failure>;
