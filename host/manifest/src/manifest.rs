//! [`Manifest`]: a manifest file loaded into a validated workflow.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use weft_core::{GraphError, Workflow, WorkflowBuilder};

use crate::error::{Location, ManifestError};
use crate::format::ManifestFile;
use crate::lower::{Frame, Lowering};
use crate::source::{Entry, SourceMap, child_path};

/// A loaded manifest: the validated [`Workflow`] it declares, and what is
/// needed to point at its fields in messages.
#[derive(Clone)]
pub struct Manifest {
    workflow: Arc<Workflow>,
    path: PathBuf,
    source: SourceMap,
}

/// The syntax of a manifest file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Toml,
    Json,
}

impl Manifest {
    /// Loads the manifest at `path`: TOML for `.toml`, JSON for `.json`.
    /// Relative files it names (components, schema files, nested workflows)
    /// are resolved against `path`'s directory.
    ///
    /// # Errors
    /// When the file cannot be read, has another extension, or is not a valid
    /// manifest (see [`Manifest::from_toml_str`]).
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Self::load_nested(path, &mut Vec::new())
    }

    /// Parses a TOML manifest. `path` is used in messages and to resolve the
    /// relative files the manifest names; it need not exist.
    ///
    /// # Errors
    /// On a syntax error, an unknown or mistyped field, an invalid id, a
    /// missing component, schema or nested workflow file, an invalid JSON
    /// Schema, an `initial-state` failing `state-schema`, a malformed node, a
    /// nested workflow cycle, or a graph the core rejects
    /// ([`weft_core::GraphError`]) — each located at the field concerned.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        Self::parse(Syntax::Toml, text, path, &mut Vec::new())
    }

    /// Parses a JSON manifest: the same model as TOML, with identical keys.
    /// `path` is used in messages and to resolve relative files.
    ///
    /// # Errors
    /// As [`Manifest::from_toml_str`].
    pub fn from_json_str(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        Self::parse(Syntax::Json, text, path, &mut Vec::new())
    }

    /// The validated workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    /// The manifest file, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the value of a field starts, for a field path such as
    /// `steps.charge.component`, `flow[2]` or `flow[1].branch[0].flow[0].step`
    /// (the paths [`weft_core::GraphError::at`] uses). `None` when the manifest
    /// does not write that field.
    pub fn locate(&self, field: &str) -> Option<Location> {
        self.source.locate(field)
    }

    /// An error about `field`, located at it when the manifest writes it; its
    /// message reads ``"`{field}`: {message}"``. The CLI uses this to report,
    /// e.g., a component that fails to load at the step's `component` field.
    pub fn error_at(&self, field: &str, message: impl Into<String>) -> ManifestError {
        let message = message.into();
        ManifestError::new(
            &self.path,
            self.locate(field),
            Some(field.to_owned()),
            format!("`{field}`: {message}"),
        )
    }

    /// Loads `path` as a workflow nested in the manifests on `stack`.
    pub(crate) fn load_nested(
        path: &Path,
        stack: &mut Vec<Frame>,
    ) -> Result<Manifest, ManifestError> {
        let error = |message: String| ManifestError::new(path, None, None, message);
        let syntax = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Syntax::Toml,
            Some("json") => Syntax::Json,
            _ => {
                return Err(error(
                    "unsupported manifest file extension (expected `.toml` or `.json`)".to_owned(),
                ));
            }
        };
        let text = fs::read_to_string(path)
            .map_err(|e| error(format!("cannot read the manifest: {e}")))?;
        Self::parse(syntax, &text, path, stack)
    }

    fn parse(
        syntax: Syntax,
        text: &str,
        path: &Path,
        stack: &mut Vec<Frame>,
    ) -> Result<Manifest, ManifestError> {
        let (source, file) = match syntax {
            Syntax::Toml => parse_toml(text, path)?,
            Syntax::Json => parse_json(text, path)?,
        };
        stack.push(Frame::new(path));
        let builder = Lowering {
            file: path,
            source: &source,
            stack,
        }
        .lower(&file);
        stack.pop();
        let workflow = build(builder?, path, &source)?;
        Ok(Manifest {
            workflow: Arc::new(workflow),
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses and lowers a TOML manifest without building the graph, so tests
    /// can look at node kinds the core does not execute yet.
    #[cfg(test)]
    pub(crate) fn toml_builder(text: &str, path: &Path) -> Result<WorkflowBuilder, ManifestError> {
        let (source, file) = parse_toml(text, path)?;
        let mut stack = vec![Frame::new(path)];
        Lowering {
            file: path,
            source: &source,
            stack: &mut stack,
        }
        .lower(&file)
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .field("workflow", &self.workflow)
            .finish_non_exhaustive()
    }
}

/// Checks the graph, locating the core's errors by their field path.
fn build(
    builder: WorkflowBuilder,
    path: &Path,
    source: &SourceMap,
) -> Result<Workflow, ManifestError> {
    builder.build().map_err(|e: GraphError| {
        let at = e.at();
        ManifestError::new(
            path,
            source.locate(at),
            Some(at.to_owned()),
            format!("`{at}`: {e}"),
        )
    })
}

fn parse_toml(text: &str, path: &Path) -> Result<(SourceMap, ManifestFile), ManifestError> {
    let root = toml::de::DeTable::parse(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| SourceMap::new(text).location(span.start));
        ManifestError::new(
            path,
            location,
            None,
            format!("invalid TOML: {}", e.message()),
        )
    })?;
    let source = SourceMap::from_toml(text, &root);
    let file = <ManifestFile as Deserialize>::deserialize(toml::de::Deserializer::from(root))
        .map_err(|e| {
            let Some(span) = e.span() else {
                return ManifestError::new(path, None, None, e.message());
            };
            let (field, message) = match source.entry_at_span(&span) {
                Some((entry, is_key)) => name_field(entry, is_key, e.message()),
                None => (None, e.message().to_owned()),
            };
            ManifestError::new(path, Some(source.location(span.start)), field, message)
        })?;
    Ok((source, file))
}

fn parse_json(text: &str, path: &Path) -> Result<(SourceMap, ManifestFile), ManifestError> {
    let located = |e: &serde_json::Error| {
        // serde_json appends " at line L column C" to its messages.
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
        (
            Location {
                line: e.line(),
                column: e.column(),
            },
            message,
        )
    };
    serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
        let (location, message) = located(&e);
        ManifestError::new(
            path,
            Some(location),
            None,
            format!("invalid JSON: {message}"),
        )
    })?;
    let source = SourceMap::from_json(text);
    let file = serde_json::from_str::<ManifestFile>(text).map_err(|e| {
        let (location, message) = located(&e);
        let (field, message) = match source.entry_at_offset(source.offset(e.line(), e.column())) {
            Some((entry, is_key)) => name_field(entry, is_key, &message),
            None => (None, message),
        };
        ManifestError::new(path, Some(location), field, message)
    })?;
    Ok((source, file))
}

/// Rewrites a serde message to name the field it is about: ``unknown field `x`,
/// expected ...`` becomes ``unknown field `x` in `steps.validate`, expected ...``;
/// other messages are prefixed with the field path.
fn name_field(entry: &Entry, is_key: bool, message: &str) -> (Option<String>, String) {
    let message = message.to_owned();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let (field, table) = if is_key {
            (entry.path.clone(), &entry.parent)
        } else {
            (child_path(&entry.path, name), &entry.path)
        };
        let place = if table.is_empty() {
            " at the top level".to_owned()
        } else {
            format!(" in `{table}`")
        };
        return (Some(field), format!("unknown field `{name}`{place}{tail}"));
    }
    if entry.path.is_empty() {
        return (None, message);
    }
    (
        Some(entry.path.clone()),
        format!("`{}`: {message}", entry.path),
    )
}
