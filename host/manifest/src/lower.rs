//! From the written model ([`crate::format`]) to a [`WorkflowBuilder`]:
//! files resolved, schemas compiled, defaults merged, nodes checked and
//! nested workflows loaded. Errors are located through the [`SourceMap`].

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;
use weft_core::{
    Arm, Expr, ExprError, Grant, Limits, LoopKind, Node, NodeKind, RunLimits, Schema, StepDef,
    StepId, WorkflowBuilder,
};

use crate::error::ManifestError;
use crate::file::MAX_SCHEMA_BYTES;
use crate::format::{Defaults, ManifestFile, NodeSpec, RunLimitsSpec, SchemaRef, StepSpec};
use crate::lock::Files;
use crate::manifest::Manifest;
use crate::source::SourceMap;

/// The kind keys of a node, in the order messages list them.
const KINDS: [&str; 10] = [
    "step",
    "parallel",
    "branch",
    "dowhile",
    "dountil",
    "foreach",
    "map",
    "sleep-ms",
    "sleep-until",
    "workflow",
];

/// The variables every expression may read: the node's input, the
/// workflow's (`workflow.input`), the state, and the results of the steps
/// before it (`steps.<node-id>`, resolved lexically).
const VARIABLES: [&str; 4] = ["input", "workflow", "state", "steps"];

/// Where an expression is written, which decides the variables it may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    /// A branch arm's `when`, a `map` value, a `sleep-until`.
    Node,
    /// A loop's `while` or `until`: also `output` (the body's output) and
    /// `iteration` (the 1-based number of the iteration just run).
    LoopCondition,
}

/// A manifest being loaded, as a link of the chain of nested workflows.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The file's identity: its canonical path (absolute path when it does not exist).
    pub identity: PathBuf,
    /// The file as shown in messages.
    pub shown: PathBuf,
}

impl Frame {
    pub(crate) fn new(path: &Path) -> Self {
        let identity = fs::canonicalize(path).unwrap_or_else(|_| absolute(path));
        Self {
            identity,
            shown: path.to_path_buf(),
        }
    }
}

/// `path` made absolute against the current directory, with `.` and `..`
/// removed lexically (symlinks kept as they appear). Only for messages,
/// identities and layouts (a deploy bundle's); files are opened by the path
/// as joined.
pub fn absolute(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Lowers one manifest file.
pub(crate) struct Lowering<'a> {
    /// The manifest file, as given.
    pub file: &'a Path,
    /// Where its schema files, components and nested manifests are found.
    pub files: &'a dyn Files,
    /// Its fields' locations.
    pub source: &'a SourceMap,
    /// The manifests being loaded, outermost first; the last one is `file`.
    pub stack: &'a mut Vec<Frame>,
    /// Whether the nodes being lowered are inside the body of a loop or a
    /// `foreach` (at any depth), where expressions may read `iteration`.
    pub iterating: bool,
}

impl Lowering<'_> {
    /// An error about `field`, located at its value.
    pub(crate) fn error(&self, field: &str, message: impl std::fmt::Display) -> ManifestError {
        ManifestError::new(
            self.file,
            self.source.locate(field),
            Some(field.to_owned()),
            format!("`{field}`: {message}"),
        )
    }

    /// An error about `field` where the key itself is the problem, located at the key.
    fn key_error(&self, field: &str, message: impl std::fmt::Display) -> ManifestError {
        ManifestError::new(
            self.file,
            self.source.locate_key(field),
            Some(field.to_owned()),
            format!("`{field}`: {message}"),
        )
    }

    /// A path written in the manifest, resolved against the manifest's directory.
    fn resolve(&self, written: &str) -> PathBuf {
        let dir = self.file.parent().unwrap_or(Path::new(""));
        // Collecting components drops interior `.` segments (`dir/./x` → `dir/x`).
        dir.join(written).components().collect()
    }

    /// Checks the model and returns the workflow's parts, not yet built.
    ///
    /// # Errors
    /// The first problem found, located.
    pub(crate) fn lower(&mut self, file: &ManifestFile) -> Result<WorkflowBuilder, ManifestError> {
        let input_schema = self.schema(file.input_schema.as_ref(), "input-schema")?;
        let output_schema = self.schema(file.output_schema.as_ref(), "output-schema")?;
        let state_schema = self.schema(file.state_schema.as_ref(), "state-schema")?;
        let initial_state = file
            .initial_state
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()));
        if let Some(schema) = &state_schema
            && let Err(e) = schema.validate(&initial_state)
        {
            return Err(match file.initial_state {
                Some(_) => self.error("initial-state", format!("fails `state-schema`: {e}")),
                None => self.error(
                    "state-schema",
                    format!("the default `initial-state` ({{}}) fails it: {e}"),
                ),
            });
        }

        let mut steps = IndexMap::with_capacity(file.steps.len());
        for (id, spec) in &file.steps {
            steps.insert(id.clone(), self.step(id, spec, &file.defaults)?);
        }
        let flow = self.nodes(&file.flow, "flow")?;

        Ok(WorkflowBuilder {
            id: file.id.clone(),
            description: file.description.clone(),
            input_schema,
            output_schema,
            state_schema,
            initial_state,
            steps,
            flow,
        })
    }

    /// The run limits `spec` names over weft's defaults, each at least 1.
    ///
    /// # Errors
    /// A limit of 0, located at it.
    pub(crate) fn run_limits(&self, spec: &RunLimitsSpec) -> Result<RunLimits, ManifestError> {
        let named = [
            (spec.max_events, "max-events"),
            (spec.max_bytes, "max-bytes"),
            (spec.max_attempts, "max-attempts"),
        ];
        if let Some((_, key)) = named.iter().find(|(value, _)| *value == Some(0)) {
            return Err(self.error(
                &format!("run-limits.{key}"),
                "must be at least 1 (a run with no budget could not start)",
            ));
        }
        Ok(spec.over(RunLimits::default()))
    }

    fn schema(
        &self,
        schema: Option<&SchemaRef>,
        field: &str,
    ) -> Result<Option<Schema>, ManifestError> {
        let source = match schema {
            None => return Ok(None),
            Some(SchemaRef::Inline(source)) => source.clone(),
            Some(SchemaRef::File(written)) => self.schema_file(written, field)?,
        };
        match Schema::compile(source) {
            Ok(schema) => Ok(Some(schema)),
            Err(e) => Err(self.error(field, &e.message)),
        }
    }

    /// Reads the JSON of a schema file named by `field`.
    fn schema_file(&self, written: &str, field: &str) -> Result<Value, ManifestError> {
        let path = self.resolve(written);
        let shown = absolute(&path);
        let shown = shown.display();
        let bytes = self.files.read(&path, MAX_SCHEMA_BYTES).map_err(|e| {
            let message = match e.kind() {
                io::ErrorKind::NotFound => {
                    format!("schema file `{written}` not found (resolved to `{shown}`)")
                }
                _ => format!("cannot read schema file `{written}` (resolved to `{shown}`): {e}"),
            };
            self.error(field, message)
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            let message =
                format!("schema file `{written}` (resolved to `{shown}`) is not valid JSON: {e}");
            self.error(field, message)
        })
    }

    fn step(
        &self,
        id: &StepId,
        spec: &StepSpec,
        defaults: &Defaults,
    ) -> Result<StepDef, ManifestError> {
        let at = format!("steps.{id}");
        let schema = |schema: &Option<SchemaRef>, name: &str| {
            self.schema(schema.as_ref(), &format!("{at}.{name}"))
        };
        let mut grants: Vec<Grant> = Vec::new();
        for grant in spec
            .grants
            .as_ref()
            .or(defaults.grants.as_ref())
            .into_iter()
            .flatten()
        {
            if !grants.contains(grant) {
                grants.push(*grant);
            }
        }
        Ok(StepDef {
            id: id.clone(),
            component: self.component(&spec.component, &format!("{at}.component"))?,
            description: spec.description.clone(),
            input_schema: schema(&spec.input_schema, "input-schema")?,
            output_schema: schema(&spec.output_schema, "output-schema")?,
            state_schema: schema(&spec.state_schema, "state-schema")?,
            suspend_schema: schema(&spec.suspend_schema, "suspend-schema")?,
            resume_schema: schema(&spec.resume_schema, "resume-schema")?,
            retry: spec.retry.or(defaults.retry).unwrap_or_default(),
            limits: spec.limits.over(defaults.limits.over(Limits::default())),
            grants,
        })
    }

    /// The component's absolute, canonical path.
    fn component(&self, written: &str, field: &str) -> Result<String, ManifestError> {
        let path = self.resolve(written);
        let shown = absolute(&path);
        let canonical = self.files.component(&path).map_err(|problem| {
            self.error(
                field,
                format!(
                    "component file `{written}` {problem} (resolved to `{}`)",
                    shown.display()
                ),
            )
        })?;
        canonical.into_os_string().into_string().map_err(|path| {
            self.error(
                field,
                format!("component path `{}` is not valid UTF-8", path.display()),
            )
        })
    }

    fn nodes(&mut self, specs: &[NodeSpec], at: &str) -> Result<Vec<Node>, ManifestError> {
        let mut nodes = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            nodes.push(self.node(spec, &format!("{at}[{i}]"), i + 1)?);
        }
        Ok(nodes)
    }

    fn node(&mut self, spec: &NodeSpec, at: &str, ordinal: usize) -> Result<Node, ManifestError> {
        let present = [
            spec.step.is_some(),
            spec.parallel.is_some(),
            spec.branch.is_some(),
            spec.dowhile.is_some(),
            spec.dountil.is_some(),
            spec.foreach.is_some(),
            spec.map.is_some(),
            spec.sleep_ms.is_some(),
            spec.sleep_until.is_some(),
            spec.workflow.is_some(),
        ];
        let mut found: Vec<&str> = KINDS
            .iter()
            .zip(present)
            .filter(|(_, here)| *here)
            .map(|(k, _)| *k)
            .collect();
        found.sort_by_key(|kind| self.source.key_offset(&format!("{at}.{kind}")));
        let all = KINDS.map(|k| format!("`{k}`")).join(", ");
        let kind = match found.as_slice() {
            [] => {
                return Err(self.error(at, format!("a node has exactly one of {all}; found none")));
            }
            [kind] => *kind,
            [.., last] => {
                let listed: Vec<String> = found.iter().map(|k| format!("`{k}`")).collect();
                let (init, tail) = listed.split_at(listed.len() - 1);
                let mut error = self.error(
                    at,
                    format!(
                        "a node has exactly one of {all}; found {} and {}",
                        init.join(", "),
                        tail[0]
                    ),
                );
                error.location = self.source.locate_key(&format!("{at}.{last}"));
                return Err(error);
            }
        };

        let modifiers: [(bool, &str, &[&str]); 4] = [
            (spec.while_.is_some(), "while", &["dowhile"]),
            (spec.until.is_some(), "until", &["dountil"]),
            (
                spec.max_iterations.is_some(),
                "max-iterations",
                &["dowhile", "dountil"],
            ),
            (spec.concurrency.is_some(), "concurrency", &["foreach"]),
        ];
        for (here, modifier, owners) in modifiers {
            if here && !owners.contains(&kind) {
                let owners = owners
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                return Err(self.key_error(
                    &format!("{at}.{modifier}"),
                    format!("`{modifier}` belongs to {owners} nodes, not to `{kind}` nodes"),
                ));
            }
        }
        if spec.max_iterations == Some(0) {
            return Err(self.error(&format!("{at}.max-iterations"), "must be at least 1"));
        }

        let kind = self.kind(spec, kind, at)?;
        let id = match (&spec.id, &kind) {
            (Some(id), _) => id.clone(),
            (None, NodeKind::Step { step }) => step.clone(),
            (None, other) => {
                let id = format!("{}-{ordinal}", other.name());
                StepId::new(&id).map_err(|e| self.error(at, e))?
            }
        };
        Ok(Node { id, kind })
    }

    /// Builds the node's kind; `kind` is the one kind key the node has.
    fn kind(&mut self, spec: &NodeSpec, kind: &str, at: &str) -> Result<NodeKind, ManifestError> {
        let body = |name: &str| format!("{at}.{name}");
        if let Some(step) = &spec.step {
            return Ok(NodeKind::Step { step: step.clone() });
        }
        if let Some(nodes) = &spec.parallel {
            return Ok(NodeKind::Parallel {
                nodes: self.nodes(nodes, &body("parallel"))?,
            });
        }
        if let Some(branch) = &spec.branch {
            let mut arms = Vec::with_capacity(branch.len());
            let mut otherwise: Option<usize> = None;
            for (j, arm) in branch.iter().enumerate() {
                let arm_at = format!("{at}.branch[{j}]");
                let when = match &arm.when {
                    Some(when) => Some(self.expr(when, &format!("{arm_at}.when"), Site::Node)?),
                    None => {
                        if let Some(first) = otherwise {
                            let other = format!("{at}.branch[{first}]");
                            let message = format!(
                                "a branch has at most one arm without `when` (the other is `{other}`)"
                            );
                            return Err(self.error(&arm_at, message));
                        }
                        otherwise = Some(j);
                        None
                    }
                };
                let flow = self.nodes(&arm.flow, &format!("{arm_at}.flow"))?;
                let id = match (&arm.id, flow.as_slice()) {
                    (Some(id), _) => id.clone(),
                    (None, [only]) => only.id.clone(),
                    (None, _) => StepId::new(&format!("arm-{}", j + 1))
                        .map_err(|e| self.error(&arm_at, e))?,
                };
                if let Some(other) = arms.iter().position(|a: &Arm| a.id == id) {
                    let field = match arm.id {
                        Some(_) => format!("{arm_at}.id"),
                        None => arm_at.clone(),
                    };
                    return Err(self.error(
                        &field,
                        format!("arm id `{id}` is also the id of `{at}.branch[{other}]`; give one of them another `id`"),
                    ));
                }
                arms.push(Arm { id, when, flow });
            }
            return Ok(NodeKind::Branch { arms });
        }
        let looped = match (&spec.dowhile, &spec.dountil) {
            (Some(nodes), _) => Some((LoopKind::DoWhile, nodes, &spec.while_, "while")),
            (None, Some(nodes)) => Some((LoopKind::DoUntil, nodes, &spec.until, "until")),
            (None, None) => None,
        };
        if let Some((loop_kind, nodes, condition, name)) = looped {
            let Some(condition) = condition else {
                let article = if name == "until" { "an" } else { "a" };
                return Err(self.error(
                    at,
                    format!("a `{kind}` node needs {article} `{name}` condition"),
                ));
            };
            return Ok(NodeKind::Loop {
                kind: loop_kind,
                body: self.body(nodes, &body(kind))?,
                condition: self.expr(condition, &body(name), Site::LoopCondition)?,
                max_iterations: spec.max_iterations,
            });
        }
        if let Some(nodes) = &spec.foreach {
            let concurrency = spec.concurrency.unwrap_or(1);
            if concurrency == 0 {
                return Err(self.error(&body("concurrency"), "must be at least 1"));
            }
            return Ok(NodeKind::Foreach {
                body: self.body(nodes, &body("foreach"))?,
                concurrency,
            });
        }
        if let Some(map) = &spec.map {
            let mut fields = IndexMap::with_capacity(map.len());
            for (name, expr) in map {
                let field = format!("{at}.map.{name}");
                fields.insert(name.clone(), self.expr(expr, &field, Site::Node)?);
            }
            return Ok(NodeKind::Map { fields });
        }
        if let Some(duration_ms) = spec.sleep_ms {
            return Ok(NodeKind::Sleep { duration_ms });
        }
        if let Some(until) = &spec.sleep_until {
            return Ok(NodeKind::SleepUntil {
                until: self.expr(until, &body("sleep-until"), Site::Node)?,
            });
        }
        // The caller checked that the node has exactly one kind key: this is `workflow`.
        let written = spec.workflow.as_deref().unwrap_or_default();
        Ok(NodeKind::Workflow {
            workflow: self.nested(written, &body("workflow"))?,
        })
    }

    /// Lowers the body of a loop or a `foreach`: its expressions (at any
    /// depth) may read `iteration`.
    fn body(&mut self, specs: &[NodeSpec], at: &str) -> Result<Vec<Node>, ManifestError> {
        let outer = std::mem::replace(&mut self.iterating, true);
        let nodes = self.nodes(specs, at);
        self.iterating = outer;
        nodes
    }

    /// Compiles the expression `text` written at `field`, checking the
    /// variables it reads against those available at `site`.
    fn expr(&self, text: &str, field: &str, site: Site) -> Result<Expr, ManifestError> {
        if text.trim().is_empty() {
            return Err(self.error(field, "the expression is empty"));
        }
        let mut allowed = VARIABLES.to_vec();
        if site == Site::LoopCondition {
            allowed.push("output");
        }
        if site == Site::LoopCondition || self.iterating {
            allowed.push("iteration");
        }
        Expr::compile(text)
            .and_then(|expr| expr.check_variables(&allowed).map(|()| expr))
            .map_err(|e| self.expr_error(field, text, &e))
    }

    /// An error inside the expression at `field`, located in the manifest at
    /// the error's own line and column within the expression. That works
    /// for every string form (see `SourceMap::locate_in_string`: an escape
    /// counts as the character it stands for and is located at its
    /// backslash; in a multi-line string, the expression's lines are the
    /// manifest's); when the value cannot be mapped, the error is located
    /// at the start of the value.
    fn expr_error(&self, field: &str, text: &str, error: &ExprError) -> ManifestError {
        let location = self
            .source
            .locate_in_string(field, text, error.line, error.column)
            .or_else(|| self.source.locate(field));
        ManifestError::new(
            self.file,
            location,
            Some(field.to_owned()),
            format!("`{field}`: {}", error.message),
        )
    }

    /// Loads a nested workflow manifest, refusing cycles.
    fn nested(
        &mut self,
        written: &str,
        field: &str,
    ) -> Result<Arc<weft_core::Workflow>, ManifestError> {
        let path = self.resolve(written);
        let frame = Frame::new(&path);
        if self.stack.iter().any(|f| f.identity == frame.identity) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .chain(std::iter::once(&frame))
                .map(|f| f.shown.display().to_string())
                .collect();
            return Err(self.error(field, format!("workflow cycle: {}", chain.join(" -> "))));
        }
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml" | "json")
        ) {
            let message = format!("nested workflow `{written}` is not a `.toml` or `.json` file");
            return Err(self.error(field, message));
        }
        if !self.files.is_file(&path) {
            return Err(self.error(
                field,
                format!(
                    "nested workflow `{written}` not found (resolved to `{}`)",
                    absolute(&path).display()
                ),
            ));
        }
        Ok(Manifest::load_nested(&path, self.files, self.stack)?
            .workflow()
            .clone())
    }
}
