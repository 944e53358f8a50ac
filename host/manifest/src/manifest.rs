//! [`Manifest`]: a manifest file loaded into a validated workflow.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use weft_core::{GraphError, Workflow, WorkflowBuilder};

use crate::error::{Location, ManifestError};
use crate::file::MAX_MANIFEST_BYTES;
use crate::format::ManifestFile;
use crate::lock::{Disk, Files, Recorder, WorkflowLock};
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
    /// The file must be a regular file (symlinks are followed) of at most
    /// [`crate::MAX_MANIFEST_BYTES`], in UTF-8.
    ///
    /// # Errors
    /// When the file cannot be read, is not a regular file, is too large, has
    /// another extension, is not UTF-8 (located at the first invalid byte),
    /// or is not a valid manifest (see [`Manifest::from_toml_str`]).
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Self::load_nested(path, &Disk, &mut Vec::new())
    }

    /// Loads the manifest at `path` like [`Manifest::load`] and records
    /// every file it read (the manifest, its schema files and nested
    /// manifests, as text) and every component it names, as a
    /// [`WorkflowLock`] whose component digests are still empty (the
    /// sandbox, which reads the components, fills them in with
    /// [`WorkflowLock::set_component_digest`]).
    ///
    /// # Errors
    /// As [`Manifest::load`].
    pub fn load_recording(path: &Path) -> Result<(Manifest, WorkflowLock), ManifestError> {
        let recorder = Recorder::default();
        let manifest = Self::load_nested(path, &recorder, &mut Vec::new())?;
        Ok((manifest, recorder.into_lock(path)))
    }

    /// Loads the workflow a [`WorkflowLock`] holds, reading nothing from
    /// disk: the manifest, schema files and nested manifests are the texts
    /// it recorded, and each component path is the canonical path it
    /// recorded (whether or not a file is still there).
    ///
    /// # Errors
    /// As [`Manifest::load`], for a lock this weft's manifest checks refuse.
    pub fn load_locked(lock: &WorkflowLock) -> Result<Manifest, ManifestError> {
        Self::load_nested(Path::new(&lock.manifest), lock, &mut Vec::new())
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
        Self::parse(Syntax::Toml, text, path, &Disk, &mut Vec::new())
    }

    /// Parses a JSON manifest: the same model as TOML, with identical keys.
    /// `path` is used in messages and to resolve relative files.
    ///
    /// # Errors
    /// As [`Manifest::from_toml_str`].
    pub fn from_json_str(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        Self::parse(Syntax::Json, text, path, &Disk, &mut Vec::new())
    }

    /// The validated workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    /// The manifest file, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest's text, exactly as read (e.g. to hash what was loaded).
    pub fn text(&self) -> &str {
        self.source.text()
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
        files: &dyn Files,
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
        let bytes = files
            .read(path, MAX_MANIFEST_BYTES)
            .map_err(|e| error(format!("cannot read the manifest: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|e| not_utf8(path, e.as_bytes(), e.utf8_error()))?;
        Self::parse(syntax, &text, path, files, stack)
    }

    fn parse(
        syntax: Syntax,
        text: &str,
        path: &Path,
        files: &dyn Files,
        stack: &mut Vec<Frame>,
    ) -> Result<Manifest, ManifestError> {
        let (source, file) = match syntax {
            Syntax::Toml => parse_toml(text, path)?,
            Syntax::Json => parse_json(text, path)?,
        };
        stack.push(Frame::new(path));
        let mut lowering = Lowering {
            file: path,
            files,
            source: &source,
            stack,
            iterating: false,
        };
        let builder = lowering.lower(&file);
        let run_limits = lowering.run_limits(&file.run_limits);
        stack.pop();
        // A nested manifest's `run-limits` are checked, but only the root's
        // apply: the nested workflow runs inside its parent's run.
        let workflow = build(builder?, path, &source)?.with_run_limits(run_limits?);
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
            files: &Disk,
            source: &source,
            stack: &mut stack,
            iterating: false,
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

/// A manifest that is not UTF-8, located at its first invalid byte.
fn not_utf8(path: &Path, bytes: &[u8], error: std::str::Utf8Error) -> ManifestError {
    let valid = error.valid_up_to();
    // Everything before the first invalid byte is text, so lines and
    // columns count as in any other error.
    let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
    let location = SourceMap::new(prefix).location(valid);
    let byte = bytes.get(valid).copied().unwrap_or_default();
    ManifestError::new(
        path,
        Some(location),
        None,
        format!("the manifest is not UTF-8 text (invalid byte 0x{byte:02x})"),
    )
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
    let root = toml::de::DeTable::parse(text).map_err(|e| toml_syntax_error(text, path, &e))?;
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

/// A TOML syntax error, located. The parser's messages need help in two
/// cases: a duplicate key does not say which key (its span does), and a
/// dotted key nested too deeply has no span at all.
fn toml_syntax_error(text: &str, path: &Path, e: &toml::de::Error) -> ManifestError {
    let map = SourceMap::new(text);
    let message = e.message();
    let (offset, message) = match e.span() {
        Some(span) if message == "duplicate key" => {
            let key = text.get(span.clone()).unwrap_or_default().trim();
            (Some(span.start), format!("duplicate key `{key}`"))
        }
        Some(span) => (Some(span.start), message.to_owned()),
        None if message == "recursion limit" => (
            deepest_dotted_key(text),
            "a dotted key nests too deeply (recursion limit)".to_owned(),
        ),
        None => (None, message.to_owned()),
    };
    ManifestError::new(
        path,
        offset.map(|offset| map.location(offset)),
        None,
        format!("invalid TOML: {message}"),
    )
}

/// The byte offset of the first of the dotted keys with the most parts
/// (`a.b.c` has three), found with the TOML parser's own tokens.
fn deepest_dotted_key(text: &str) -> Option<usize> {
    use toml_parser::parser::{Event, EventKind};

    let source = toml_parser::Source::new(text);
    let tokens = source.lex().into_vec();
    let mut events: Vec<Event> = Vec::new();
    let mut errors: Vec<toml_parser::ParseError> = Vec::new();
    toml_parser::parser::parse_document(&tokens, &mut events, &mut errors);

    let mut deepest: Option<(usize, usize)> = None;
    // The key being read: where it starts, how many parts so far, and
    // whether a `.` was just read.
    let mut current: Option<(usize, usize)> = None;
    let mut after_dot = false;
    for event in &events {
        match event.kind() {
            EventKind::SimpleKey => {
                current = match current {
                    Some((start, parts)) if after_dot => Some((start, parts + 1)),
                    _ => Some((event.span().start(), 1)),
                };
                after_dot = false;
                if let Some((start, parts)) = current
                    && deepest.is_none_or(|(_, most)| parts > most)
                {
                    deepest = Some((start, parts));
                }
            }
            EventKind::KeySep => after_dot = true,
            EventKind::Whitespace => {}
            _ => {
                current = None;
                after_dot = false;
            }
        }
    }
    deepest
        .filter(|&(_, parts)| parts > 1)
        .map(|(start, _)| start)
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
        let (stopped, message) = located(&e);
        let Some((entry, is_key)) = source.entry_at_offset(source.offset(e.line(), e.column()))
        else {
            return ManifestError::new(path, Some(stopped), None, message);
        };
        let unknown = message.starts_with("unknown field `");
        let (field, message) = name_field(entry, is_key, &message);
        // serde_json reports where it stopped reading (after a key, or at the
        // end of a value); point where TOML errors point instead: at the key
        // of an unknown field, else at the start of the key or value concerned.
        let location = match (&entry.key, &field) {
            (Some(key), _) if is_key => Some(source.location(key.start)),
            (_, Some(field)) if unknown => source.locate_key(field),
            _ => Some(source.location(entry.value.start)),
        };
        ManifestError::new(path, Some(location.unwrap_or(stopped)), field, message)
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
