//! Unit tests: each node kind, defaults merging, and how errors are located.
//! Error messages as a whole are covered by the snapshot tests in
//! `tests/manifest-errors/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use weft_core::{
    Expr, Grant, Limits, LoopKind, Node, NodeKind, RetryPolicy, StepDef, WorkflowBuilder,
};

use crate::{Location, Manifest, ManifestError};

mod run_limits;

/// A directory with a placeholder component `c.component`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("c.component"), b"\0asm").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `flow` (TOML array items) with steps `a` and `b`, lowered but not built.
    fn flow(&self, flow: &str) -> Result<Vec<Node>, ManifestError> {
        self.builder(&format!("id = \"wf\"\nflow = [\n{flow}\n]\n{STEPS}"))
            .map(|b| b.flow)
    }

    fn builder(&self, text: &str) -> Result<WorkflowBuilder, ManifestError> {
        Manifest::toml_builder(text, &self.path("wf.toml"))
    }

    fn toml(&self, text: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_toml_str(text, &self.path("wf.toml"))
    }

    fn json(&self, text: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_json_str(text, &self.path("wf.json"))
    }
}

const STEPS: &str =
    "[steps.a]\ncomponent = \"c.component\"\n[steps.b]\ncomponent = \"c.component\"\n";

/// The location of the `nth` (0-based) occurrence of `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> Location {
    let (offset, _) = text
        .match_indices(needle)
        .nth(nth)
        .expect("the needle is in the text");
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The location of `needle` in a node written on the third line by [`Fixture::flow`].
fn in_node(node: &str, needle: &str) -> Location {
    Location {
        line: 3,
        ..position(node, needle, 0)
    }
}

fn expr(s: &str) -> Expr {
    Expr::compile(s).unwrap()
}

fn ids(nodes: &[Node]) -> Vec<&str> {
    nodes.iter().map(|n| n.id.as_str()).collect()
}

fn steps_of(nodes: &[Node]) -> Vec<&str> {
    nodes
        .iter()
        .map(|n| match &n.kind {
            NodeKind::Step { step } => step.as_str(),
            other => other.name(),
        })
        .collect()
}

#[test]
fn step_nodes_default_their_id_to_the_step() {
    let fx = Fixture::new();
    let flow = fx
        .flow(r#"{ step = "a" }, { step = "a", id = "a-again" }"#)
        .unwrap();
    assert_eq!(ids(&flow), ["a", "a-again"]);
    assert_eq!(steps_of(&flow), ["a", "a"]);
}

#[test]
fn other_nodes_default_their_id_to_kind_and_position() {
    let fx = Fixture::new();
    let flow = fx
        .flow(
            r#"{ step = "a" }, { sleep-ms = 5 }, { parallel = [{ step = "a" }, { sleep-ms = 1 }] },
               { sleep-ms = 7, id = "nap" }"#,
        )
        .unwrap();
    assert_eq!(ids(&flow), ["a", "sleep-ms-2", "parallel-3", "nap"]);
    let NodeKind::Parallel { nodes } = &flow[2].kind else {
        panic!("{:?}", flow[2])
    };
    assert_eq!(ids(nodes), ["a", "sleep-ms-2"]);
}

#[test]
fn parses_parallel_and_branch() {
    let fx = Fixture::new();
    let flow = fx
        .flow(
            r#"{ parallel = [{ step = "a" }, { step = "b" }] },
               { branch = [
                   { when = "input.total > 100", flow = [{ step = "a" }] },
                   { flow = [{ step = "b" }, { step = "a" }] },
               ] }"#,
        )
        .unwrap();
    let NodeKind::Parallel { nodes } = &flow[0].kind else {
        panic!("{:?}", flow[0])
    };
    assert_eq!(steps_of(nodes), ["a", "b"]);
    let NodeKind::Branch { arms } = &flow[1].kind else {
        panic!("{:?}", flow[1])
    };
    assert_eq!(flow[1].id.as_str(), "branch-2");
    assert_eq!(arms.len(), 2);
    assert_eq!(arms[0].when, Some(expr("input.total > 100")));
    assert_eq!(arms[0].id.as_str(), "a");
    assert_eq!(steps_of(&arms[0].flow), ["a"]);
    assert_eq!(arms[1].when, None);
    assert_eq!(arms[1].id.as_str(), "arm-2");
    assert_eq!(steps_of(&arms[1].flow), ["b", "a"]);
}

#[test]
fn parses_loops() {
    let fx = Fixture::new();
    let flow = fx
        .flow(
            r#"{ dowhile = [{ step = "a" }], while = "output.done == false", max-iterations = 100 },
               { dountil = [{ step = "b" }], until = "output.done" }"#,
        )
        .unwrap();
    match &flow[0].kind {
        NodeKind::Loop {
            kind,
            body,
            condition,
            max_iterations,
        } => {
            assert_eq!(*kind, LoopKind::DoWhile);
            assert_eq!(steps_of(body), ["a"]);
            assert_eq!(*condition, expr("output.done == false"));
            assert_eq!(*max_iterations, Some(100));
        }
        other => panic!("{other:?}"),
    }
    match &flow[1].kind {
        NodeKind::Loop {
            kind,
            body,
            condition,
            max_iterations,
        } => {
            assert_eq!(*kind, LoopKind::DoUntil);
            assert_eq!(steps_of(body), ["b"]);
            assert_eq!(*condition, expr("output.done"));
            assert_eq!(*max_iterations, None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ids(&flow), ["dowhile-1", "dountil-2"]);
}

#[test]
fn parses_foreach_map_and_sleeps() {
    let fx = Fixture::new();
    let flow = fx
        .flow(
            r#"{ foreach = [{ step = "a" }], concurrency = 4 },
               { foreach = [{ step = "b" }] },
               { map = { total = "steps.validate.total_cents", customer = "input.customer" } },
               { sleep-ms = 500 },
               { sleep-until = "timestamp('2026-12-01T00:00:00Z')" }"#,
        )
        .unwrap();
    assert!(
        matches!(&flow[0].kind, NodeKind::Foreach { body, concurrency: 4 } if steps_of(body) == ["a"])
    );
    assert!(matches!(
        &flow[1].kind,
        NodeKind::Foreach { concurrency: 1, .. }
    ));
    let NodeKind::Map { fields } = &flow[2].kind else {
        panic!("{:?}", flow[2])
    };
    let fields: Vec<_> = fields.iter().map(|(k, v)| (k.as_str(), v.text())).collect();
    assert_eq!(
        fields,
        [
            ("total", "steps.validate.total_cents"),
            ("customer", "input.customer")
        ]
    );
    assert!(matches!(flow[3].kind, NodeKind::Sleep { duration_ms: 500 }));
    assert!(
        matches!(&flow[4].kind, NodeKind::SleepUntil { until } if until.text() == "timestamp('2026-12-01T00:00:00Z')")
    );
    assert_eq!(
        ids(&flow),
        [
            "foreach-1",
            "foreach-2",
            "map-3",
            "sleep-ms-4",
            "sleep-until-5"
        ]
    );
}

#[test]
fn loads_nested_workflows_relative_to_the_manifest() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("sub")).unwrap();
    fs::write(
        fx.path("sub/child.toml"),
        "id = \"child\"\nflow = [{ step = \"x\" }]\n[steps.x]\ncomponent = \"../c.component\"\n",
    )
    .unwrap();
    let flow = fx.flow(r#"{ workflow = "sub/child.toml" }"#).unwrap();
    assert_eq!(ids(&flow), ["workflow-1"]);
    let NodeKind::Workflow { workflow } = &flow[0].kind else {
        panic!("{:?}", flow[0])
    };
    assert_eq!(workflow.id().as_str(), "child");
    let component = fs::canonicalize(fx.path("c.component")).unwrap();
    assert_eq!(
        workflow.steps().next().unwrap().component,
        component.to_str().unwrap()
    );
}

#[test]
fn a_manifest_including_itself_is_a_cycle() {
    let fx = Fixture::new();
    let text =
        format!("id = \"wf\"\nflow = [{{ step = \"a\" }}, {{ workflow = \"wf.toml\" }}]\n{STEPS}");
    fs::write(fx.path("wf.toml"), &text).unwrap();
    let error = Manifest::load(&fx.path("wf.toml")).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[1].workflow"));
    assert_eq!(error.location, Some(position(&text, "\"wf.toml\"", 0)));
    let shown = fx.path("wf.toml").display().to_string();
    assert!(
        error
            .message
            .ends_with(&format!("workflow cycle: {shown} -> {shown}")),
        "{error}"
    );
}

fn step<'a>(builder: &'a WorkflowBuilder, id: &str) -> &'a StepDef {
    builder
        .steps
        .values()
        .find(|s| s.id.as_str() == id)
        .unwrap()
}

#[test]
fn steps_inherit_defaults() {
    let fx = Fixture::new();
    let builder = fx
        .builder(
            r#"
id = "wf"
flow = [{ step = "plain" }]

[defaults]
retry = { max-retries = 2, delay-ms = 100, backoff = 2 }
limits = { deadline-ms = 5000, fuel = 1000000, max-events = 10, max-error-causes = 4 }
grants = ["stdio"]

[steps.plain]
component = "c.component"

[steps.own]
component = "c.component"
retry = { max-retries = 5 }
limits = { deadline-ms = 50, memory-bytes = 1024, max-labels = 2 }
grants = ["clocks", "random", "clocks"]
"#,
        )
        .unwrap();
    let defaults = Limits::default();

    let plain = step(&builder, "plain");
    assert_eq!(
        plain.retry,
        RetryPolicy {
            max_retries: 2,
            delay_ms: 100,
            backoff: 2
        }
    );
    assert_eq!(
        plain.limits,
        Limits {
            deadline_ms: 5000,
            fuel: Some(1_000_000),
            max_events: 10,
            max_error_causes: 4,
            ..defaults
        }
    );
    assert_eq!(plain.grants, [Grant::Stdio]);

    // retry and grants replace the defaults; limits override them one by one.
    let own = step(&builder, "own");
    assert_eq!(
        own.retry,
        RetryPolicy {
            max_retries: 5,
            ..RetryPolicy::default()
        }
    );
    assert_eq!(
        own.limits,
        Limits {
            deadline_ms: 50,
            memory_bytes: 1024,
            fuel: Some(1_000_000),
            max_events: 10,
            max_error_causes: 4,
            max_labels: 2,
            ..defaults
        }
    );
    assert_eq!(own.grants, [Grant::Clocks, Grant::Random]);
}

#[test]
fn without_defaults_steps_get_the_core_defaults() {
    let fx = Fixture::new();
    let builder = fx
        .builder(&format!(
            "id = \"wf\"\nflow = [{{ step = \"a\" }}]\n{STEPS}"
        ))
        .unwrap();
    let a = step(&builder, "a");
    assert_eq!(a.retry, RetryPolicy::default());
    assert_eq!(a.limits, Limits::default());
    assert!(a.grants.is_empty());
    assert_eq!(builder.initial_state, json!({}));
    assert!(builder.input_schema.is_none());
}

#[test]
fn schemas_come_inline_or_from_files() {
    let fx = Fixture::new();
    fs::write(
        fx.path("in.json"),
        r#"{"type": "object", "required": ["n"]}"#,
    )
    .unwrap();
    let builder = fx
        .builder(&format!(
            "id = \"wf\"\ninput-schema = \"in.json\"\nstate-schema = true\nflow = [{{ step = \"a\" }}]\n{STEPS}\
             output-schema = {{ type = \"integer\", minimum = 1 }}\n"
        ))
        .unwrap();
    let input = builder.input_schema.as_ref().unwrap();
    assert_eq!(
        input.source(),
        &json!({"type": "object", "required": ["n"]})
    );
    assert!(input.validate(&json!({"n": 1})).is_ok());
    assert!(input.validate(&json!({})).is_err());
    assert_eq!(
        builder.state_schema.as_ref().unwrap().source(),
        &json!(true)
    );
    let b = step(&builder, "b");
    assert_eq!(
        b.output_schema.as_ref().unwrap().source(),
        &json!({"type": "integer", "minimum": 1})
    );
}

#[test]
fn node_shape_errors_are_located() {
    let fx = Fixture::new();
    let cases = [
        (
            r#"{ step = "a", map = { x = "y" } }"#,
            "flow[0]",
            "map",
            "found `step` and `map`",
        ),
        (
            r#"{ map = { x = "y" }, step = "a" }"#,
            "flow[0]",
            "step",
            "found `map` and `step`",
        ),
        (
            r#"{ step = "a", until = "x" }"#,
            "flow[0].until",
            "until",
            "`until` belongs to `dountil` nodes",
        ),
        (
            r#"{ dowhile = [{ step = "a" }], while = "x", max-iterations = 0 }"#,
            "flow[0].max-iterations",
            "0 }",
            "must be at least 1",
        ),
        (
            r#"{ foreach = [{ step = "a" }], concurrency = 0 }"#,
            "flow[0].concurrency",
            "0 }",
            "at least 1",
        ),
        (
            r#"{ foreach = [{ step = "a" }], max-iterations = 3 }"#,
            "flow[0].max-iterations",
            "max-iterations",
            "`dowhile` and `dountil`",
        ),
        (
            r#"{ dountil = [{ step = "a" }] }"#,
            "flow[0]",
            "{",
            "needs an `until` condition",
        ),
        (
            r#"{ dowhile = [{ step = "a" }], while = " " }"#,
            "flow[0].while",
            "\" \"",
            "the expression is empty",
        ),
        (
            r#"{ branch = [{ flow = [{ step = "a", concurrency = 2 }] }] }"#,
            "flow[0].branch[0].flow[0].concurrency",
            "concurrency",
            "belongs to `foreach` nodes, not to `step` nodes",
        ),
    ];
    for (node, field, at, message) in cases {
        let error = fx.flow(node).unwrap_err();
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
        assert_eq!(error.location, Some(in_node(node, at)), "{error}");
        assert!(
            error.message.starts_with(&format!("`{field}`: ")),
            "{error}"
        );
        assert!(error.message.contains(message), "{error}");
    }
}

#[test]
fn serde_errors_name_their_field() {
    let fx = Fixture::new();
    let node = r#"{ parallel = [{ step = "a", stpe = "b" }] }"#;
    let error = fx.flow(node).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].parallel[0].stpe"));
    assert_eq!(error.location, Some(in_node(node, "stpe")));
    assert!(error.message.starts_with(
        "unknown field `stpe` in `flow[0].parallel[0]`, expected one of `step`, `id`"
    ));

    let error = fx.flow(r#"{ sleep-ms = "long" }"#).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].sleep-ms"));
    assert_eq!(
        error.message,
        "`flow[0].sleep-ms`: invalid type: string \"long\", expected u64"
    );

    let error = fx.flow(r#"{ step = "a", id = "" }"#).unwrap_err();
    assert_eq!(
        error.message,
        "`flow[0].id`: invalid id ``: ids must not be empty"
    );

    // Tables are tables: serde's positional form (`["a"]` for `{ step = "a" }`)
    // is refused, and messages name tables as the author knows them.
    let error = fx.flow(r#"["a"]"#).unwrap_err();
    assert_eq!(
        error.message,
        "`flow[0]`: invalid type: sequence, expected a node table"
    );
    let error = fx
        .builder(&format!("id = \"wf\"\nflow = []\n{STEPS}retry = [1, 2, 3]"))
        .unwrap_err();
    assert_eq!(
        error.message,
        "`steps.b.retry`: invalid type: sequence, expected a retry table"
    );
    let error = fx.flow(r#""a""#).unwrap_err();
    assert_eq!(
        error.message,
        "`flow[0]`: invalid type: string \"a\", expected a node table"
    );
    let error = fx
        .builder("id = \"wf\"\nflow = []\nsteps = { a = 3 }")
        .unwrap_err();
    assert_eq!(
        error.message,
        "`steps.a`: invalid type: integer `3`, expected a step table"
    );
    let error = fx
        .builder("id = \"wf\"\nflow = []\ndefaults = { grants = [3] }")
        .unwrap_err();
    assert_eq!(
        error.field.as_deref(),
        Some("defaults.grants[0]"),
        "{error}"
    );
    assert!(!error.message.contains("Grant"), "{error}");
    let error = Manifest::from_json_str("[]", &fx.path("wf.json")).unwrap_err();
    assert_eq!(
        error.message,
        "invalid type: sequence, expected a manifest table"
    );
}

#[test]
fn json_semantic_errors_are_located() {
    let fx = Fixture::new();
    let text = "{\n  \"id\": \"wf\",\n  \"flow\": [{\"step\": \"a\", \"while\": \"x\"}],\n  \"steps\": {\"a\": {\"component\": \"c.component\"}}\n}";
    let error = Manifest::from_json_str(text, &fx.path("wf.json")).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].while"));
    assert_eq!(error.location, Some(position(text, "\"while\"", 0)));

    let text = r#"{"id": "wf", "flow": [{"step": "a"}], "steps": {"a": {"component": 3}}}"#;
    let error = Manifest::from_json_str(text, &fx.path("wf.json")).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("steps.a.component"));
    assert_eq!(
        error.message,
        "`steps.a.component`: invalid type: integer `3`, expected a string"
    );
    // serde_json points at the last character of the offending value.
    assert_eq!(error.location, Some(position(text, "3}", 0)));
}

#[test]
fn error_at_locates_fields_it_knows() {
    let fx = Fixture::new();
    let text = format!("id = \"wf\"\nflow = [{{ step = \"a\" }}]\n{STEPS}");
    let manifest = fx.toml(&text).unwrap();
    let error = manifest.error_at("steps.b.component", "bad magic");
    assert_eq!(error.location, Some(position(&text, "\"c.component\"", 1)));
    assert_eq!(error.message, "`steps.b.component`: bad magic");
    let error = manifest.error_at("steps.b.retry", "nope");
    assert_eq!(
        (error.location, error.field.as_deref()),
        (None, Some("steps.b.retry"))
    );
    assert_eq!(
        error.to_string(),
        format!("{}: `steps.b.retry`: nope", fx.path("wf.toml").display())
    );
    assert_eq!(manifest.path(), Path::new(&fx.path("wf.toml")));
}

#[test]
fn expression_errors_are_located_inside_the_expression() {
    let fx = Fixture::new();
    // A basic string: the value's column + 1 (the quote) + the column in the
    // expression - 1.
    let node = r#"{ branch = [{ when = "input.total >", flow = [{ step = "a" }] }] }"#;
    let error = fx.flow(node).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].branch[0].when"));
    assert_eq!(error.location, Some(in_node(node, "\", flow")), "{error}");
    assert_eq!(
        error.message,
        "`flow[0].branch[0].when`: syntax error: mismatched input '<EOF>' expecting an expression"
    );

    // A literal string.
    let node = r#"{ map = { total = 'input.a +* 2' } }"#;
    let error = fx.flow(node).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].map.total"));
    assert_eq!(error.location, Some(in_node(node, "* 2")), "{error}");

    // Escapes count as the character they stand for.
    let node = r#"{ sleep-until = "timestamp(\"2026\") + foo" }"#;
    let error = fx.flow(node).unwrap_err();
    assert_eq!(error.location, Some(in_node(node, "foo")), "{error}");
    assert_eq!(
        error.message,
        "`flow[0].sleep-until`: unknown variable `foo` (available here: input, workflow, state, steps)"
    );

    // A multi-line string: the expression's second line is the manifest's next line.
    let text = format!(
        "id = \"wf\"\nflow = [\n  {{ dowhile = [{{ step = \"a\" }}], while = '''\n    output.n > 1 &&\n      (output.m < 2''' }},\n]\n{STEPS}"
    );
    let error = fx.builder(&text).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].while"));
    assert_eq!(error.location, Some(position(&text, "'''", 1)), "{error}");
    assert_eq!(
        error.message,
        "`flow[0].while`: syntax error: missing ')' at '<EOF>'"
    );

    // JSON.
    let text = "{\n  \"id\": \"wf\",\n  \"flow\": [\n    {\"map\": {\"x\": \"input.a == \\\"\\u00e9\\\" && nope\"}}\n  ],\n  \"steps\": {\"a\": {\"component\": \"c.component\"}}\n}";
    let error = Manifest::from_json_str(text, &fx.path("wf.json")).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("flow[0].map.x"));
    assert_eq!(error.location, Some(position(text, "nope", 0)), "{error}");
    assert!(error.message.contains("unknown variable `nope`"), "{error}");

    // An empty expression stays an error of its own.
    let error = fx.flow(r#"{ map = { x = "" } }"#).unwrap_err();
    assert_eq!(error.message, "`flow[0].map.x`: the expression is empty");
}

#[test]
fn variables_available_depend_on_where_the_expression_is() {
    let fx = Fixture::new();
    let accepted = [
        // Everywhere.
        r#"{ map = { a = "input.a", b = "workflow.input.b", c = "state.c", d = "steps.a.d" } }"#,
        // Loop conditions: the body's output and the iteration just run.
        r#"{ dowhile = [{ step = "a" }], while = "output.more && iteration < 10" }"#,
        r#"{ dountil = [{ step = "a" }], until = "output.done || iteration == 3" }"#,
        // Inside a loop's or a foreach's body, at any depth: the iteration.
        r#"{ foreach = [{ map = { i = "iteration" } }] }"#,
        r#"{ foreach = [{ parallel = [{ branch = [{ when = "iteration > 1", flow = [{ step = "a" }] }] }] }] }"#,
        r#"{ dowhile = [{ sleep-until = "timestamp(input.at[iteration])" }], while = "true" }"#,
        // Names bound by macros are theirs.
        r#"{ map = { doubled = "input.items.map(output, output * 2)" } }"#,
    ];
    for node in accepted {
        fx.flow(node)
            .unwrap_or_else(|e| panic!("{node}: refused: {e}"));
    }

    let refused = [
        (
            r#"{ map = { x = "output.total" } }"#,
            "flow[0].map.x",
            "output.total",
            "unknown variable `output` (available here: input, workflow, state, steps)",
        ),
        (
            r#"{ branch = [{ when = "iteration > 1", flow = [{ step = "a" }] }] }"#,
            "flow[0].branch[0].when",
            "iteration >",
            "unknown variable `iteration` (available here: input, workflow, state, steps)",
        ),
        (
            r#"{ foreach = [{ map = { x = "output" } }] }"#,
            "flow[0].foreach[0].map.x",
            "output\"",
            "unknown variable `output` (available here: input, workflow, state, steps, iteration)",
        ),
        (
            r#"{ dowhile = [{ step = "a" }], while = "outptu.more" }"#,
            "flow[0].while",
            "outptu",
            "unknown variable `outptu` (available here: input, workflow, state, steps, output, iteration)",
        ),
    ];
    for (node, field, at, message) in refused {
        let error = fx.flow(node).unwrap_err();
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
        assert_eq!(error.location, Some(in_node(node, at)), "{error}");
        assert_eq!(error.message, format!("`{field}`: {message}"));
    }

    // A nested workflow is a scope of its own: no `iteration` there, even
    // when the node running it is in a foreach body.
    let child = "id = \"child\"\nflow = [{ map = { i = \"iteration\" } }]\n";
    fs::write(fx.path("child.toml"), child).unwrap();
    let error = fx
        .flow(r#"{ foreach = [{ workflow = "child.toml" }] }"#)
        .unwrap_err();
    assert_eq!(error.file, fx.path("child.toml"));
    assert_eq!(error.field.as_deref(), Some("flow[0].map.i"));
}

#[test]
fn a_lock_holds_every_file_read_and_loads_without_them() {
    let fx = Fixture::new();
    fs::write(fx.path("in.json"), r#"{"type": "object"}"#).unwrap();
    let text =
        format!("id = \"wf\"\ninput-schema = \"in.json\"\nflow = [{{ step = \"a\" }}]\n{STEPS}");
    let manifest_path = fx.path("wf.toml");
    fs::write(&manifest_path, &text).unwrap();
    let (loaded, mut lock) = Manifest::load_recording(&manifest_path).unwrap();
    assert_eq!(lock.manifest, manifest_path.to_string_lossy());
    assert_eq!(
        lock.files.keys().cloned().collect::<Vec<_>>(),
        vec![
            fx.path("in.json").to_string_lossy().into_owned(),
            manifest_path.to_string_lossy().into_owned()
        ]
    );
    let component = fs::canonicalize(fx.path("c.component")).unwrap();
    let component = component.to_str().unwrap();
    assert_eq!(lock.component_digest(component), Some(""));
    lock.set_component_digest(component, "ab");
    assert_eq!(lock.component_digest(component), Some("ab"));

    // The JSON round-trips and its digest is stable.
    let again = crate::WorkflowLock::from_json(&lock.to_json()).unwrap();
    assert_eq!(again, lock);
    assert_eq!(again.digest(), lock.digest());

    // Without any file on disk, the lock loads the same workflow.
    drop(fx);
    let locked = Manifest::load_locked(&lock).unwrap();
    assert_eq!(locked.text(), loaded.text());
    assert_eq!(
        format!("{:?}", locked.workflow()),
        format!("{:?}", loaded.workflow())
    );
    assert_eq!(
        locked.workflow().steps().next().unwrap().component,
        component
    );

    let err = crate::WorkflowLock::from_json(
        r#"{"format": 9, "manifest": "", "files": {}, "components": {}}"#,
    )
    .unwrap_err();
    assert!(err.contains("lock format 9"), "{err}");
}
