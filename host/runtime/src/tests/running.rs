//! Suspension is per address: while one arm of a parallel node runs, the
//! runtime driving the run resumes its suspended siblings one by one, and
//! a resumed arm never reverts. Only the evented runtime drives a run while
//! its caller can still act; a runtime that did not start the run (here the
//! default runtime over the same store) refuses to resume a running run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::{
    EventStore as _, Node, NodeKind, ResumeTarget, RunId, RunState, RunStatus, StepOutcome,
    StepPath, StepStatus,
};

use super::{Driver, Fixture, Kind, id, ok};
use crate::{DefaultRuntime, NoObserver, RuntimeError};

fn node(name: &str, step: &str) -> Node {
    Node {
        id: id(name),
        kind: NodeKind::Step { step: id(step) },
    }
}

/// Polls the stored run until `done` holds (bounded: a hang fails the test).
fn until(
    store: &dyn weft_core::EventStore,
    driver: &Driver,
    run: &RunId,
    done: impl Fn(&RunState) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = store.load(run).map(|(_, e)| e).unwrap_or_default();
        let state = RunState::replay(driver.workflow().clone(), &events).unwrap();
        if done(&state) {
            return;
        }
        assert!(Instant::now() < deadline, "the run never got there");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn status(state: &RunState, path: &str) -> Option<StepStatus> {
    state
        .step(&StepPath::parse(path).unwrap())
        .map(|r| r.status)
}

#[test]
fn three_suspended_arms_resume_one_by_one_while_a_fourth_runs() {
    for order in [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]] {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let (running_tx, running_rx) = std::sync::mpsc::channel::<()>();
        let running_tx = Mutex::new(running_tx);
        let mut fixture = Fixture::new()
            .step("ask", |task, _| match &task.resume_payload {
                None => ok(StepOutcome::Suspended {
                    payload: json!({"asked": task.path}),
                    labels: vec![task.path.to_string()],
                }),
                Some(answer) => ok(StepOutcome::Completed(json!({"answer": answer}))),
            })
            .step("slow", move |_, _| {
                running_tx.lock().unwrap().send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
                ok(StepOutcome::Completed(json!("slow done")))
            });
        fixture.flow = Some(vec![Node {
            id: id("fan"),
            kind: NodeKind::Parallel {
                nodes: vec![
                    node("a", "ask"),
                    node("b", "ask"),
                    node("c", "ask"),
                    node("slow", "slow"),
                ],
            },
        }]);
        let (driver, _) = fixture.build(Kind::Evented);
        let (runtime, registered, store) = (&*driver.runtime, &driver.registered, &driver.store);
        let run = RunId::new("fan-run").unwrap();
        let finished: Vec<Result<weft_core::RunResult, RuntimeError>> = std::thread::scope(|s| {
            let run = &run;
            let mut callers = vec![s.spawn(move || {
                runtime.call(
                    super::start_request(registered, run.as_str(), json!({})),
                    &mut NoObserver,
                )
            })];
            running_rx.recv().unwrap();
            until(&**store, &driver, run, |st| {
                ["fan/a", "fan/b", "fan/c"]
                    .iter()
                    .all(|p| status(st, p) == Some(StepStatus::Suspended))
            });
            // Another runtime over the same store does not drive this run:
            // it refuses to resume it while it runs.
            let other = DefaultRuntime::new(store.clone(), std::sync::Arc::new(crate::SystemClock));
            let refused = other.resume(
                registered,
                run,
                &ResumeTarget::Path(StepPath::parse("fan/a").unwrap()),
                json!("no"),
                &mut NoObserver,
            );
            assert!(
                matches!(&refused, Err(e) if e.to_string().contains("not suspended (status: running)")),
                "{:?}",
                refused.map(|r| r.result())
            );
            for (i, arm) in order.iter().enumerate() {
                let path = format!("fan/{arm}");
                let target = ResumeTarget::Path(StepPath::parse(&path).unwrap());
                callers.push(s.spawn(move || {
                    let resume = crate::Request::Resume {
                        workflow: registered.clone(),
                        run: run.clone(),
                        target,
                        payload: json!({"ok": arm}),
                    };
                    runtime.call(resume, &mut NoObserver)
                }));
                until(&**store, &driver, run, |st| {
                    status(st, &path) == Some(StepStatus::Success)
                });
                let events = store.load(run).unwrap().1;
                let state = RunState::replay(driver.workflow().clone(), &events).unwrap();
                assert_eq!(state.status(), RunStatus::Running);
                assert_eq!(status(&state, "fan/slow"), Some(StepStatus::Running));
                for (j, other) in order.iter().enumerate() {
                    let other_path = format!("fan/{other}");
                    let record = state.step(&StepPath::parse(&other_path).unwrap()).unwrap();
                    if j <= i {
                        // Resumed arms stay done with their own answer.
                        assert_eq!(record.status, StepStatus::Success, "{other_path}");
                        assert_eq!(
                            record.output.as_deref(),
                            Some(&json!({"answer": {"ok": other}}))
                        );
                    } else {
                        // The others are still suspended with their payloads.
                        assert_eq!(record.status, StepStatus::Suspended, "{other_path}");
                        assert_eq!(record.suspend_payload, Some(json!({"asked": other_path})));
                    }
                }
            }
            gate_tx.send(()).unwrap();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for result in finished {
            let result = result.unwrap();
            assert_eq!(result.status, RunStatus::Success);
            let output: &Value = result.output.as_ref().unwrap();
            assert_eq!(
                output,
                &json!({
                    "a": {"answer": {"ok": "a"}},
                    "b": {"answer": {"ok": "b"}},
                    "c": {"answer": {"ok": "c"}},
                    "slow": "slow done",
                })
            );
        }
    }
}
