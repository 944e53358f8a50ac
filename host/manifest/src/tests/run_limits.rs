//! `run-limits`: limits on a run as a whole.

use std::fs;

use weft_core::{NodeKind, RunLimits};

use super::{Fixture, STEPS, position};

#[test]
fn run_limits_override_the_defaults_one_by_one() {
    let fx = Fixture::new();
    let plain = fx
        .toml(&format!(
            "id = \"wf\"\nflow = [{{ step = \"a\" }}]\n{STEPS}"
        ))
        .unwrap();
    assert_eq!(*plain.workflow().run_limits(), RunLimits::default());

    let text = format!(
        "id = \"wf\"\nflow = [{{ step = \"a\" }}]\n[run-limits]\nmax-bytes = 4096\nmax-attempts = 7\n{STEPS}"
    );
    let limited = fx.toml(&text).unwrap();
    assert_eq!(
        *limited.workflow().run_limits(),
        RunLimits {
            max_bytes: 4096,
            max_attempts: 7,
            ..RunLimits::default()
        }
    );
    // The same in JSON.
    let json = fx
        .json(
            r#"{"id": "wf", "flow": [{"step": "a"}], "run-limits": {"max-events": 9},
                "steps": {"a": {"component": "c.component"}}}"#,
        )
        .unwrap();
    assert_eq!(
        *json.workflow().run_limits(),
        RunLimits {
            max_events: 9,
            ..RunLimits::default()
        }
    );
}

#[test]
fn a_zero_run_limit_is_refused_at_its_field() {
    let fx = Fixture::new();
    let text = format!(
        "id = \"wf\"\nflow = [{{ step = \"a\" }}]\nrun-limits = {{ max-events = 0 }}\n{STEPS}"
    );
    let error = fx.toml(&text).unwrap_err();
    assert_eq!(error.field.as_deref(), Some("run-limits.max-events"));
    assert_eq!(error.location, Some(position(&text, "0 }", 0)));
    assert!(error.message.contains("must be at least 1"), "{error}");
}

#[test]
fn only_the_root_manifests_run_limits_apply() {
    // A nested workflow runs inside its parent's run: its own `run-limits`
    // are checked but the run's budget is the root's.
    let fx = Fixture::new();
    fs::write(
        fx.path("child.toml"),
        "id = \"child\"\nflow = [{ step = \"x\" }]\nrun-limits = { max-events = 5 }\n\
         [steps.x]\ncomponent = \"c.component\"\n",
    )
    .unwrap();
    let text = format!(
        "id = \"wf\"\nflow = [{{ workflow = \"child.toml\" }}]\nrun-limits = {{ max-bytes = 100000 }}\n{STEPS}"
    );
    let manifest = fx.toml(&text).unwrap();
    let root = manifest.workflow();
    assert_eq!(
        *root.run_limits(),
        RunLimits {
            max_bytes: 100_000,
            ..RunLimits::default()
        }
    );
    let NodeKind::Workflow { workflow: child } = &root.flow()[0].kind else {
        panic!("{:?}", root.flow()[0])
    };
    assert_eq!(child.run_limits().max_events, 5);

    fs::write(
        fx.path("bad-child.toml"),
        "id = \"child\"\nflow = [{ step = \"x\" }]\nrun-limits = { max-bytes = 0 }\n\
         [steps.x]\ncomponent = \"c.component\"\n",
    )
    .unwrap();
    let text = format!("id = \"wf\"\nflow = [{{ workflow = \"bad-child.toml\" }}]\n{STEPS}");
    let error = fx.toml(&text).unwrap_err();
    assert!(error.message.contains("run-limits.max-bytes"), "{error}");
}
