//! The one error type of this crate: a message about a manifest, located.

use std::fmt;
use std::path::PathBuf;

/// A position in a manifest's text. Both numbers are 1-based; the column
/// counts characters (Unicode scalar values) from the start of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The line, starting at 1.
    pub line: usize,
    /// The column, starting at 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A manifest that cannot be loaded, or an error about one of its fields.
///
/// It displays on one line as `{file}:{line}:{column}: {message}`, or
/// `{file}: {message}` when the location is unknown. The file is shown
/// exactly as it was given to [`crate::Manifest::load`] (nested manifests:
/// the including manifest's directory joined with the path written there).
/// When the error is about a field, `message` names it (e.g.
/// ``"`flow[1].step`: unknown step `chrage` (declared steps: validate, charge)"``)
/// and `field` holds its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", .file.display(), LocationSuffix(*.location))]
pub struct ManifestError {
    /// The manifest file the error is about.
    pub file: PathBuf,
    /// Where in that file, when known.
    pub location: Option<Location>,
    /// The field path the error is about (e.g. `steps.charge.component`), when known.
    pub field: Option<String>,
    /// What is wrong: one line, lowercase, naming the field when there is one.
    pub message: String,
}

impl ManifestError {
    /// An error with `message` flattened to one line.
    pub(crate) fn new(
        file: impl Into<PathBuf>,
        location: Option<Location>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let message: String = message.into();
        let message = if message.contains(['\n', '\r']) {
            message
                .split(['\n', '\r'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            message
        };
        Self {
            file: file.into(),
            location,
            field,
            message,
        }
    }
}

/// Renders `:{line}:{column}` after the file name, or nothing.
struct LocationSuffix(Option<Location>);

impl fmt::Display for LocationSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(location) => write!(f, ":{location}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_on_one_line() {
        let e = ManifestError::new(
            "wf.toml",
            Some(Location {
                line: 12,
                column: 10,
            }),
            Some("flow[1].step".into()),
            "`flow[1].step`: unknown step `chrage`\n(declared steps: validate)",
        );
        assert_eq!(
            e.to_string(),
            "wf.toml:12:10: `flow[1].step`: unknown step `chrage` (declared steps: validate)"
        );
        let e = ManifestError::new("wf.json", None, None, "cannot read the manifest");
        assert_eq!(e.to_string(), "wf.json: cannot read the manifest");
    }
}
