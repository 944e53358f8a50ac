//! Tests of the manifest: error snapshots and a TOML/JSON round trip.
//!
//! # Error snapshots
//! Every `tests/manifest-errors/<name>.toml` and `<name>.json` must fail to
//! load with exactly the one-line message in `tests/manifest-errors/<name>.err`
//! (a trailing newline in the `.err` file is ignored). Subdirectories hold
//! support files (placeholder components, schema files, nested manifests)
//! and are not cases themselves.
//!
//! The harness loads each case by its absolute path and then strips the
//! workspace root (`<root>/`) from the message, so snapshots hold paths
//! relative to the workspace root (`tests/manifest-errors/x.toml:3:5: ...`)
//! whatever the current directory and wherever the checkout lives.
//!
//! Run with `UPDATE_SNAPSHOTS=1` to (re)write the `.err` files from the
//! current messages; review the diff before committing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use weft_core::{Node, NodeKind, Schema, StepDef, Workflow};
use weft_manifest::{Location, Manifest};

/// The workspace root, canonical (so it prefixes the canonical paths in
/// messages too): the nearest ancestor of the package running these tests
/// that holds `tests/manifest-errors`, whichever package declares the binary.
fn root() -> PathBuf {
    let package =
        fs::canonicalize(env!("CARGO_MANIFEST_DIR")).expect("the package directory exists");
    package
        .ancestors()
        .find(|dir| dir.join("tests/manifest-errors").is_dir())
        .expect("tests/manifest-errors is above the package directory")
        .to_path_buf()
}

fn cases_dir() -> PathBuf {
    root().join("tests/manifest-errors")
}

#[test]
fn manifest_error_snapshots() {
    let root = root();
    let prefix = format!("{}/", root.display());
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");

    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("tests/manifest-errors exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("toml" | "json")
                )
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 18,
        "expected the error cases in {}",
        cases_dir().display()
    );

    let mut stems = BTreeSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        let stem = case
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_owned();
        assert!(
            stems.insert(stem.clone()),
            "two cases share the name `{stem}`: rename one"
        );
        let snapshot = case.with_file_name(format!("{stem}.err"));

        let actual = match Manifest::load(case) {
            Ok(_) => {
                failures.push(format!(
                    "{}: loaded, but every case must fail",
                    case.display()
                ));
                continue;
            }
            Err(e) => e.to_string().replace(&prefix, ""),
        };
        assert!(
            !actual.contains('\n'),
            "{}: the message is not one line: {actual}",
            case.display()
        );

        if update {
            fs::write(&snapshot, format!("{actual}\n")).expect("snapshot written");
            continue;
        }
        match fs::read_to_string(&snapshot) {
            Ok(expected) => {
                let expected = expected.strip_suffix('\n').unwrap_or(&expected);
                if expected != actual {
                    failures.push(format!(
                        "{}:\n  expected: {expected}\n  actual:   {actual}",
                        snapshot.display()
                    ));
                }
            }
            Err(_) => failures.push(format!(
                "{}: no snapshot (run with UPDATE_SNAPSHOTS=1); message: {actual}",
                snapshot.display()
            )),
        }
    }

    // A snapshot whose case was deleted or renamed is stale.
    for entry in fs::read_dir(cases_dir()).expect("tests/manifest-errors exists") {
        let path = entry.expect("readable directory entry").path();
        if path.extension().is_some_and(|e| e == "err")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            && !stems.contains(stem)
        {
            failures.push(format!(
                "{}: no `.toml` or `.json` case has this name",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} snapshot failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A valid manifest using every step-level feature, as TOML.
const ROUND_TRIP_TOML: &str = r#"
id = "order-approval"
description = "validates, reserves and charges an order"
input-schema = "schemas/order.json"
output-schema = { type = "object" }
state-schema = { type = "object", properties = { reservations = { type = "integer" } } }
initial-state = { reservations = 0 }

[[flow]]
step = "validate"

[[flow]]
step = "charge"

[[flow]]
step = "charge"
id = "charge-again"

[defaults]
retry = { max-retries = 2, delay-ms = 100, backoff = 2 }
limits = { deadline-ms = 5000, fuel = 1000000 }
grants = ["stdio"]

[steps.validate]
component = "components/ok.component"
description = "checks the order"
input-schema = { type = "object", required = ["order_id"] }
output-schema = "schemas/order.json"

[steps.charge]
component = "./components/other.component"
suspend-schema = { type = "object" }
resume-schema = { type = "object", required = ["approved"] }
retry = { max-retries = 5 }
limits = { memory-bytes = 1048576 }
grants = ["clocks", "random"]
"#;

/// The same manifest as JSON.
const ROUND_TRIP_JSON: &str = r#"{
  "id": "order-approval",
  "description": "validates, reserves and charges an order",
  "input-schema": "schemas/order.json",
  "output-schema": { "type": "object" },
  "state-schema": { "type": "object", "properties": { "reservations": { "type": "integer" } } },
  "initial-state": { "reservations": 0 },
  "flow": [
    { "step": "validate" },
    { "step": "charge" },
    { "step": "charge", "id": "charge-again" }
  ],
  "defaults": {
    "retry": { "max-retries": 2, "delay-ms": 100, "backoff": 2 },
    "limits": { "deadline-ms": 5000, "fuel": 1000000 },
    "grants": ["stdio"]
  },
  "steps": {
    "validate": {
      "component": "components/ok.component",
      "description": "checks the order",
      "input-schema": { "type": "object", "required": ["order_id"] },
      "output-schema": "schemas/order.json"
    },
    "charge": {
      "component": "./components/other.component",
      "suspend-schema": { "type": "object" },
      "resume-schema": { "type": "object", "required": ["approved"] },
      "retry": { "max-retries": 5 },
      "limits": { "memory-bytes": 1048576 },
      "grants": ["clocks", "random"]
    }
  }
}"#;

fn source(schema: Option<&Schema>) -> Option<&serde_json::Value> {
    schema.map(Schema::source)
}

/// What a step is, minus the compiled validators (which have no equality).
fn step_shape(s: &StepDef) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        (
            s.id.as_str(),
            s.component.as_str(),
            s.description.as_deref(),
        ),
        (
            source(s.input_schema.as_ref()),
            source(s.output_schema.as_ref()),
            source(s.state_schema.as_ref()),
            source(s.suspend_schema.as_ref()),
            source(s.resume_schema.as_ref()),
        ),
        (s.retry, s.limits, s.grants.clone()),
    )
}

/// A flow as `(node id, step id)` pairs (the round trip only uses step nodes).
fn flow_shape(flow: &[Node]) -> Vec<(String, String)> {
    flow.iter()
        .map(|node| match &node.kind {
            NodeKind::Step { step } => (node.id.to_string(), step.to_string()),
            other => panic!("unexpected `{}` node", other.name()),
        })
        .collect()
}

fn assert_same_workflow(a: &Workflow, b: &Workflow) {
    assert_eq!(a.id(), b.id());
    assert_eq!(a.description(), b.description());
    assert_eq!(source(a.input_schema()), source(b.input_schema()));
    assert_eq!(source(a.output_schema()), source(b.output_schema()));
    assert_eq!(source(a.state_schema()), source(b.state_schema()));
    assert_eq!(a.initial_state(), b.initial_state());
    let steps_a: Vec<_> = a.steps().map(step_shape).collect();
    let steps_b: Vec<_> = b.steps().map(step_shape).collect();
    assert_eq!(steps_a, steps_b);
    assert_eq!(flow_shape(a.flow()), flow_shape(b.flow()));
}

#[test]
fn toml_and_json_manifests_build_equal_workflows() {
    let dir = cases_dir();
    let toml = Manifest::from_toml_str(ROUND_TRIP_TOML, &dir.join("round-trip.toml")).unwrap();
    let json = Manifest::from_json_str(ROUND_TRIP_JSON, &dir.join("round-trip.json")).unwrap();
    assert_same_workflow(toml.workflow(), json.workflow());

    let wf = toml.workflow();
    assert_eq!(wf.id().as_str(), "order-approval");
    assert_eq!(wf.initial_state(), &json!({ "reservations": 0 }));
    assert_eq!(
        source(wf.input_schema()),
        Some(
            &json!({ "type": "object", "required": ["order_id"], "properties": { "order_id": { "type": "string" } } })
        )
    );
    assert_eq!(
        flow_shape(wf.flow()),
        [
            ("validate", "validate"),
            ("charge", "charge"),
            ("charge-again", "charge")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    let steps: Vec<&StepDef> = wf.steps().collect();
    let component = fs::canonicalize(dir.join("components/other.component")).unwrap();
    assert_eq!(steps[1].component, component.to_str().unwrap());
    assert!(Path::new(&steps[0].component).is_absolute());
    // Defaults apply where a step says nothing; a step's retry and grants
    // replace them; its limits override them field by field.
    assert_eq!(steps[0].retry.max_retries, 2);
    assert_eq!(steps[1].retry.max_retries, 5);
    assert_eq!(steps[1].retry.delay_ms, 0);
    assert_eq!(steps[0].grants, [weft_core::Grant::Stdio]);
    assert_eq!(
        steps[1].grants,
        [weft_core::Grant::Clocks, weft_core::Grant::Random]
    );
    assert_eq!(
        (steps[1].limits.deadline_ms, steps[1].limits.fuel),
        (5000, Some(1_000_000))
    );
    assert_eq!(steps[1].limits.memory_bytes, 1_048_576);
    assert_eq!(
        steps[0].limits.memory_bytes,
        weft_core::Limits::default().memory_bytes
    );
}

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

#[test]
fn fields_are_located_in_both_syntaxes() {
    let dir = cases_dir();
    let toml = Manifest::from_toml_str(ROUND_TRIP_TOML, &dir.join("round-trip.toml")).unwrap();
    let json = Manifest::from_json_str(ROUND_TRIP_JSON, &dir.join("round-trip.json")).unwrap();
    for (manifest, text) in [(&toml, ROUND_TRIP_TOML), (&json, ROUND_TRIP_JSON)] {
        assert_eq!(
            manifest.locate("flow[2].id"),
            Some(position(text, "\"charge-again\"", 0))
        );
        let component = position(text, "\"./components/other.component\"", 0);
        assert_eq!(manifest.locate("steps.charge.component"), Some(component));
        assert_eq!(
            manifest.locate("defaults.limits.fuel"),
            Some(position(text, "1000000", 0))
        );
        assert_eq!(manifest.locate("steps.nope"), None);
    }
    // `[[flow]]` tables are located at their header.
    assert_eq!(
        toml.locate("flow[1]"),
        Some(position(ROUND_TRIP_TOML, "[[flow]]", 1))
    );
    assert_eq!(
        json.locate("flow[1]"),
        Some(position(ROUND_TRIP_JSON, "{ \"step\": \"charge\" }", 0))
    );

    // How the CLI reports a component the sandbox rejects.
    let error = toml.error_at("steps.charge.component", "not a component: bad magic");
    let location = position(ROUND_TRIP_TOML, "\"./components/other.component\"", 0);
    assert_eq!(error.location, Some(location));
    assert_eq!(error.field.as_deref(), Some("steps.charge.component"));
    let shown = error
        .to_string()
        .replace(&format!("{}/", root().display()), "");
    assert_eq!(
        shown,
        format!(
            "tests/manifest-errors/round-trip.toml:{location}: `steps.charge.component`: not a component: bad magic"
        )
    );
}

#[test]
fn load_picks_the_syntax_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "id = \"wf\"\nflow = [{ step = \"a\" }]\n[steps.a]\ncomponent = \"a.component\"\n";
    let json =
        r#"{"id": "wf", "flow": [{"step": "a"}], "steps": {"a": {"component": "a.component"}}}"#;
    fs::write(dir.path().join("a.component"), b"\0asm").unwrap();
    fs::write(dir.path().join("wf.toml"), toml).unwrap();
    fs::write(dir.path().join("wf.json"), json).unwrap();
    fs::write(dir.path().join("wf.yaml"), toml).unwrap();
    fs::write(dir.path().join("as-json.toml"), json).unwrap();

    for name in ["wf.toml", "wf.json"] {
        let manifest = Manifest::load(&dir.path().join(name)).unwrap();
        assert_eq!(manifest.path(), dir.path().join(name));
        let step = manifest.workflow().steps().next().unwrap();
        assert_eq!(
            Path::new(&step.component),
            fs::canonicalize(dir.path().join("a.component")).unwrap()
        );
    }

    let error = Manifest::load(&dir.path().join("wf.yaml")).unwrap_err();
    assert_eq!(
        error.message,
        "unsupported manifest file extension (expected `.toml` or `.json`)"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}: {}",
            dir.path().join("wf.yaml").display(),
            error.message
        )
    );
    let error = Manifest::load(&dir.path().join("as-json.toml")).unwrap_err();
    assert!(error.message.starts_with("invalid TOML: "), "{error}");
    let error = Manifest::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(
        error.message.starts_with("cannot read the manifest: "),
        "{error}"
    );
    assert_eq!(error.location, None);
}
