//! The parity harness through the HTTP API: the sequential scenarios that
//! do not sleep (a server runs on real time; the harness's manual clock
//! makes sleeps free) are deployed to one `weft serve`, started, resumed,
//! canceled and rerun through its routes, and must agree with the default
//! runtime after the start and after every action exactly as the evented
//! runtime must ([`super::parity`]): outcome, status, output, error, state,
//! suspended steps, step records and the whole event sequence.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use weft_core::{Event, Node, NodeKind, ResumeTarget, RunId};
use weft_sandbox::{Sandbox, WorkflowSteps};

use crate::parity::{
    Action, Observed, RUN_ID, Scenario, action, catch, compare_runs, load, normalize, run_default,
    run_parallel, sandbox, scenario_paths, wake_times,
};
use crate::serve::Server;
use crate::support::{cache_dir, root};

/// Whether a flow sleeps anywhere (nested workflows included).
fn sleeps(nodes: &[Node]) -> bool {
    nodes.iter().any(|node| match &node.kind {
        NodeKind::Sleep { .. } | NodeKind::SleepUntil { .. } => true,
        NodeKind::Parallel { nodes } => sleeps(nodes),
        NodeKind::Branch { arms, .. } => arms.iter().any(|arm| sleeps(&arm.flow)),
        NodeKind::Foreach { body, .. } | NodeKind::Loop { body, .. } => sleeps(body),
        NodeKind::Workflow { workflow } => sleeps(workflow.flow()),
        NodeKind::Step { .. } | NodeKind::Map { .. } => false,
    })
}

/// The events of `run` through the API, a page at a time.
fn events(server: &Server, run: &str) -> Vec<Event> {
    let mut all = Vec::new();
    loop {
        let (status, page) = server.get(&format!(
            "/v1/runs/{run}/events?after={}&limit=1000",
            all.len()
        ));
        assert_eq!(status, 200, "{page}");
        let batch: Vec<Event> = serde_json::from_value(page["events"].clone()).unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// What a request did: its outcome, and the run it answered with.
fn answer(server: &Server, status: u16, body: Value) -> Result<Value, String> {
    match status {
        200 | 201 => Ok(body),
        202 => panic!(
            "the run did not settle within the wait: {body}\n{}",
            server.log()
        ),
        _ => Err(body["detail"].as_str().unwrap_or_default().to_owned()),
    }
}

fn observe(server: &Server, outcome: Result<(), String>, result: &Value, run: &str) -> Observed {
    Observed {
        outcome: outcome.map(|()| Value::Null),
        result: normalize(result.clone()),
        events: wake_times(&events(server, run))
            .into_iter()
            .map(normalize)
            .collect(),
    }
}

/// Runs the scenario through the API as run `id`.
fn run_api(server: &Server, s: &Scenario, id: &RunId) -> Vec<Observed> {
    // The manifest as the harness rewrote it (components resolved), beside
    // a copy of the scenarios' nested workflows, which it names relative to
    // itself; two levels below the repository like `tests/scenarios/`, so
    // that their components (`../../../guest-examples/…`) resolve alike.
    let dir = tempfile::Builder::new()
        .prefix("parity-api-")
        .tempdir_in(root().join("target"))
        .unwrap();
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(&manifest, s.manifest.text()).unwrap();
    let children = dir.path().join("children");
    std::fs::create_dir(&children).unwrap();
    for entry in std::fs::read_dir(root().join("tests/scenarios/children")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), children.join(entry.file_name())).unwrap();
    }
    let deployed = server.deploy(&manifest);
    let (status, body) = server.post(
        "/v1/runs?wait=120s",
        &json!({
            "workflow": deployed["id"], "version": deployed["digest"],
            "input": s.input, "run_id": id.as_str(),
        }),
    );
    let mut result = answer(server, status, body).expect("the scenario's run starts");
    let mut seen = vec![observe(server, Ok(()), &result, id.as_str())];
    let mut current = id.to_string();
    for (i, a) in s.actions.iter().enumerate() {
        let (path, body) = match action(a) {
            Action::Resume(target, data) => {
                let mut body = json!({ "data": data });
                match target {
                    ResumeTarget::Path(path) => body["step"] = path.to_string().into(),
                    ResumeTarget::Label(label) => body["label"] = label.into(),
                    ResumeTarget::All => body["all"] = true.into(),
                    ResumeTarget::Only => {}
                }
                (format!("/v1/runs/{current}/resume?wait=120s"), body)
            }
            Action::Cancel(reason) => (
                format!("/v1/runs/{current}/cancel"),
                json!({ "reason": reason }),
            ),
            Action::Rerun(from, input) => {
                let mut body =
                    json!({ "from": from.to_string(), "run_id": format!("{id}-rerun-{i}") });
                if let Some(input) = input {
                    body["input"] = input;
                }
                (format!("/v1/runs/{current}/rerun?wait=120s"), body)
            }
        };
        let (status, body) = server.post(&path, &body);
        let outcome = answer(server, status, body).map(|run| {
            if let Some(new) = run["run_id"].as_str() {
                current = new.to_owned();
            }
            result = run;
        });
        seen.push(observe(server, outcome.map(drop), &result, &current));
    }
    seen
}

#[test]
fn sequential_scenarios_agree_through_the_api() {
    let paths: Vec<_> = scenario_paths(&root().join("tests/scenarios"))
        .into_iter()
        .filter(|path| {
            let s = load(path);
            s.seeds.is_none() && !sleeps(s.manifest.workflow().flow())
        })
        .collect();
    assert!(paths.len() >= 20, "only {} scenarios", paths.len());
    let home = tempfile::tempdir().unwrap();
    // The server compiles into the same cache as the harness's sandbox.
    std::os::unix::fs::symlink(cache_dir(), home.path().join("cache")).unwrap();
    let server = Server::start(home.path(), &[]);
    let sandbox = sandbox();
    let failures = run_parallel(
        &paths,
        |path| path.display().to_string(),
        |path| check(&server, &sandbox, path),
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed through the API:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}

fn check(server: &Server, sandbox: &Sandbox, path: &Path) -> Result<(), String> {
    catch(|| {
        let s = load(path);
        let steps = Arc::new(WorkflowSteps::load(sandbox, s.manifest.workflow()).unwrap());
        // One server holds every scenario's run: each has its own id.
        let stem = path.file_stem().unwrap().to_string_lossy();
        let id = RunId::new(&format!("{RUN_ID}-{stem}")).unwrap();
        let default = run_default(&s, steps, &id);
        let api = run_api(server, &s, &id);
        // The scenario's own expectations are checked on the default
        // runtime by `parity.rs` (they name the run id `parity-run`).
        compare_runs(&s, "the default runtime", "the API", &default, &api);
    })
}
