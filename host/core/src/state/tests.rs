//! The interpreter driven without a runtime: attempts "finish" in an order
//! chosen by the test, so that every completion order of concurrent parts
//! can be checked to give one result.

mod budget;
mod concurrent;
mod control;
mod nested;
mod order;
mod sleep;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::event::Event;
use crate::expr::Expr;
use crate::id::{RunId, StepId, StepPath, Timestamp};
use crate::runner::StepTask;
use crate::state::{RunResult, RunState};
use crate::workflow::{Arm, LoopKind, Node, NodeKind, StepDef, Workflow, WorkflowBuilder};

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn step(name: &str) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Step { step: id(name) },
    }
}

fn parallel(name: &str, nodes: Vec<Node>) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Parallel { nodes },
    }
}

fn foreach(name: &str, body: Vec<Node>, concurrency: u32) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Foreach { body, concurrency },
    }
}

fn expr(text: &str) -> Expr {
    Expr::compile(text).unwrap()
}

fn arm(name: &str, when: Option<&str>, flow: Vec<Node>) -> Arm {
    Arm {
        id: id(name),
        when: when.map(expr),
        flow,
    }
}

fn branch(name: &str, arms: Vec<Arm>) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Branch { arms },
    }
}

fn looping(name: &str, kind: LoopKind, body: Vec<Node>, condition: &str, max: Option<u32>) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Loop {
            kind,
            body,
            condition: expr(condition),
            max_iterations: max,
        },
    }
}

fn map(name: &str, fields: &[(&str, &str)]) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Map {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), expr(v)))
                .collect(),
        },
    }
}

/// Runs `flow` on `input`, finishing attempts in declaration order.
fn run(flow: Vec<Node>, steps: &[&str], input: Value) -> RunResult {
    let wf = workflow(flow, steps);
    let mut state = start(&wf, input);
    drive(&mut state, &mut std::iter::repeat(0));
    state.result()
}

fn workflow(flow: Vec<Node>, steps: &[&str]) -> Arc<Workflow> {
    Arc::new(
        WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: json!({"base": 0}),
            steps: steps
                .iter()
                .map(|s| (id(s), StepDef::new(id(s), "/c/s.wasm")))
                .collect(),
            flow,
        }
        .build()
        .unwrap(),
    )
}

/// What a step does: `suspend` suspends on its first run, `fail` fails,
/// everything else completes with `{"at": path, "in": input}` and writes
/// `state[<step id>] = path` over the state it sees.
fn report(state: &RunState, task: &StepTask, now: Timestamp) -> Event {
    let path = task.path.clone();
    match task.step.declared() {
        "suspend" if task.resume_payload.is_none() => Event::StepSuspended {
            path,
            payload: json!({"at": task.path}),
            labels: vec![task.path.to_string()],
            state: None,
            measured: None,
            at: now,
        },
        "inc" => Event::StepCompleted {
            path,
            output: Arc::new(json!({
                "n": task.input["n"].as_i64().unwrap_or(0) + 1,
                "iteration": task.iteration,
            })),
            state: None,
            measured: None,
            at: now,
        },
        "count" => {
            let mut seen = state.view(&task.path).state.as_ref().clone();
            let count = seen["count"].as_i64().unwrap_or(0) + 1;
            seen["count"] = json!(count);
            Event::StepCompleted {
                path,
                output: Arc::new(json!({"n": count})),
                state: Some(seen),
                measured: None,
                at: now,
            }
        }
        "fail" => Event::StepFailed {
            path,
            error: crate::StepError::host(crate::FailureKind::Step, format!("{}", task.path)),
            measured: None,
            at: now,
        },
        _ => {
            let mut seen = state.view(&task.path).state.as_ref().clone();
            seen[task.step.declared()] = json!(task.path);
            Event::StepCompleted {
                path,
                output: Arc::new(json!({"at": task.path, "in": *task.input})),
                state: Some(seen),
                measured: None,
                at: now,
            }
        }
    }
}

/// Drives a run to rest, finishing in-flight attempts in the order `pick`
/// chooses (an index into the attempts in flight, modulo their number).
/// Returns the events recorded on the way.
fn drive(state: &mut RunState, picks: &mut impl Iterator<Item = usize>) -> Vec<Event> {
    let now = Timestamp(1);
    let mut in_flight: Vec<StepTask> = Vec::new();
    let mut events = Vec::new();
    loop {
        let advance = state.advance(now).unwrap();
        events.extend(advance.events);
        for effect in advance.effects {
            if let crate::Effect::Execute(task) = effect {
                in_flight.push(task);
            }
        }
        if in_flight.is_empty() {
            return events;
        }
        let i = picks.next().unwrap_or(0) % in_flight.len();
        let task = in_flight.remove(i);
        let event = report(state, &task, now);
        state.apply(&event).unwrap();
        events.push(event);
    }
}

fn start(workflow: &Arc<Workflow>, input: Value) -> RunState {
    let mut state = RunState::new(Arc::clone(workflow));
    state
        .apply(&Event::RunStarted {
            run: RunId::new("r").unwrap(),
            workflow: id("wf"),
            input,
            state: json!({"base": 0}),
            at: Timestamp(0),
            origin: None,
        })
        .unwrap();
    state
}

fn path(text: &str) -> StepPath {
    StepPath::parse(text).unwrap()
}
