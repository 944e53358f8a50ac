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
    /// What went wrong (with its context chain; printed by `Display`).
    pub error: anyhow::Error,
}

/// A run that does not exist: invalid input for the CLI (exit 2), 404 for
/// the API.
#[derive(Debug)]
pub struct Missing(pub String);

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no run `{}` in the store", self.0)
    }
}

impl std::error::Error for Missing {}

impl Failure {
    /// The run `run` does not exist.
    pub fn missing(run: &weft_core::RunId) -> Self {
        Self::invalid(Missing(run.to_string()))
    }

    /// Whether this is a missing run.
    pub fn is_missing(&self) -> bool {
        self.error.downcast_ref::<Missing>().is_some()
    }

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

/// One line: the error, then each cause (`: `-separated) whose text the line
/// does not already hold, escaped for the terminal (messages can quote
/// guest-controlled text).
///
/// Several library errors format their source into their own message *and*
/// report it as their `source` (`run X: {source}`); printing the whole chain
/// as `{:#}` does would then say everything twice. A cause that only repeats
/// what the line already says is skipped; one that adds something is kept.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        for cause in self.error.chain() {
            let text = cause.to_string();
            if line.is_empty() {
                line = text;
            } else if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
        }
        f.write_str(&crate::output::escape(&line))
    }
}

/// What a subcommand returns.
pub type Outcome = Result<Code, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that formats its source into its message and also reports
    /// it as its source, as `#[error("run {run}: {source}")]` does.
    #[derive(Debug)]
    struct Repeats {
        source: std::io::Error,
    }

    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "run r: {}", self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let source = std::io::Error::other("store: append_batch: disk full");
        let failure = Failure::other(anyhow::Error::new(Repeats { source }).context("cannot run"));
        assert_eq!(
            failure.to_string(),
            "cannot run: run r: store: append_batch: disk full"
        );
        let failure = Failure::other(
            anyhow::anyhow!("permission denied\u{1b}[2J").context("cannot read `x`"),
        );
        assert_eq!(
            failure.to_string(),
            "cannot read `x`: permission denied\\u{1b}[2J"
        );
    }
}
