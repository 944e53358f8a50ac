//! The default runtime and the state machine, with steps written in Rust
//! (no WebAssembly): sequencing, errors, retries, state, bail, suspend/resume.

use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use serde_json::{Value, json};
use weft_core::{
    Clock, CustomEvent, ErrorCause, Event, EventStore, FailureKind, ManualClock, Node, NodeKind,
    ResumeTarget, RetryPolicy, RunId, RunResult, RunState, RunStatus, Schema, StepDef, StepError,
    StepId, StepOutcome, StepPath, StepReport, StepRunner, StepStatus, StepTask, StepView,
    Timestamp, Workflow, WorkflowBuilder,
};

use crate::{
    DefaultRuntime, EventedOptions, EventedRuntime, MemoryStore, Registered, Request, Runtime,
    RuntimeError,
};

type Behaviour = dyn Fn(&StepTask, &StepView) -> StepReport + Send + Sync;

/// A runner whose steps are Rust closures; it counts executions.
struct FnRunner {
    steps: IndexMap<String, Box<Behaviour>>,
    calls: Mutex<Vec<String>>,
}

impl StepRunner for FnRunner {
    fn run(&self, task: &StepTask, view: &StepView) -> StepReport {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{}#{}", task.path, task.attempt));
        (self.steps[task.step.as_str()])(task, view)
    }
}

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn ok(outcome: StepOutcome) -> StepReport {
    StepReport {
        outcome: Ok(outcome),
        state: None,
        events: Vec::new(),
        logs: Vec::new(),
        measured: None,
    }
}

fn guest_error(code: &str, retryable: bool) -> StepError {
    StepError {
        kind: FailureKind::Step,
        code: code.to_owned(),
        message: format!("{code} happened"),
        details: Some(json!({"why": code})),
        retryable,
        causes: vec![ErrorCause {
            code: "root".into(),
            message: "root cause".into(),
            details: None,
        }],
    }
}

struct Fixture {
    steps: Vec<(&'static str, Box<Behaviour>)>,
    defs: Vec<StepDef>,
    output_schema: Option<Value>,
    input_schema: Option<Value>,
    clock: Option<Arc<dyn Clock>>,
    /// The flow; by default one step node per step, in order.
    flow: Option<Vec<Node>>,
    /// The evented runtime's options.
    evented: EventedOptions,
    /// The workflow's run limits (weft's defaults when `None`).
    run_limits: Option<weft_core::RunLimits>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            steps: Vec::new(),
            defs: Vec::new(),
            output_schema: None,
            input_schema: None,
            clock: None,
            flow: None,
            evented: EventedOptions::default(),
            run_limits: None,
        }
    }

    fn step(
        mut self,
        name: &'static str,
        f: impl Fn(&StepTask, &StepView) -> StepReport + Send + Sync + 'static,
    ) -> Self {
        self.defs
            .push(StepDef::new(id(name), format!("/fake/{name}")));
        self.steps.push((name, Box::new(f)));
        self
    }

    fn with(mut self, edit: impl FnOnce(&mut StepDef)) -> Self {
        edit(self.defs.last_mut().unwrap());
        self
    }

    fn build(self, kind: Kind) -> (Driver, Arc<FnRunner>) {
        let flow = self.flow.unwrap_or_else(|| {
            self.defs
                .iter()
                .map(|d| Node {
                    id: d.id.clone(),
                    kind: NodeKind::Step { step: d.id.clone() },
                })
                .collect()
        });
        let workflow = WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: self.input_schema.map(|s| Schema::compile(s).unwrap()),
            output_schema: self.output_schema.map(|s| Schema::compile(s).unwrap()),
            state_schema: None,
            initial_state: json!({}),
            steps: self.defs.into_iter().map(|d| (d.id.clone(), d)).collect(),
            flow,
        }
        .build()
        .unwrap();
        let runner = Arc::new(FnRunner {
            steps: self
                .steps
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            calls: Mutex::default(),
        });
        let clock: Arc<dyn Clock> = self
            .clock
            .unwrap_or_else(|| Arc::new(ManualClock::new(Timestamp(1_000_000))));
        let workflow = Arc::new(workflow.with_run_limits(self.run_limits.unwrap_or_default()));
        let registered = Arc::new(Registered {
            workflow,
            runner: runner.clone(),
            manifest: "/fake/workflow.toml".into(),
            manifest_sha256: "0".repeat(64),
            workflow_digest: None,
        });
        let store = Arc::new(MemoryStore::new());
        let driver = Driver::new(kind, registered, store, clock, self.evented);
        (driver, runner)
    }
}

/// Which runtime a test runs on: every test here runs on both.
type Kind = crate::RuntimeKind;

/// A runtime under test, through the one [`Runtime`] interface, with its
/// workflow and store.
struct Driver {
    runtime: Arc<dyn Runtime>,
    registered: Arc<Registered>,
    store: Arc<MemoryStore>,
    options: EventedOptions,
}

/// Collects the events a runtime reports as it records them.
#[derive(Default)]
struct Seen(Vec<Event>);

impl crate::RunObserver for Seen {
    fn event(&mut self, _run: &RunId, event: &Event) {
        self.0.push(event.clone());
    }
}

/// A run as a test sees it, whichever runtime drives it.
struct Handle {
    id: RunId,
    result: RunResult,
    events: Vec<Event>,
}

impl Handle {
    fn result(&self) -> RunResult {
        self.result.clone()
    }

    fn events(&self) -> &[Event] {
        &self.events
    }
}

impl Driver {
    fn new(
        kind: Kind,
        registered: Arc<Registered>,
        store: Arc<MemoryStore>,
        clock: Arc<dyn Clock>,
        options: EventedOptions,
    ) -> Self {
        let runtime: Arc<dyn Runtime> = match kind {
            Kind::Default => Arc::new(DefaultRuntime::configured(
                store.clone(),
                clock,
                2,
                options.leases,
            )),
            Kind::Evented => Arc::new(EventedRuntime::with_options(
                store.clone(),
                clock,
                2,
                options,
            )),
        };
        Self {
            runtime,
            registered,
            store,
            options,
        }
    }

    fn workflow(&self) -> &Arc<Workflow> {
        &self.registered.workflow
    }

    fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// Carries out `request` (which may race other requests on the run).
    fn call(&self, request: Request) -> Result<RunResult, RuntimeError> {
        self.runtime.call(request, &mut crate::NoObserver)
    }

    /// Carries out `request`, alone on the run; checks that what the
    /// runtime reported as recorded is exactly what the store holds from
    /// the request on.
    fn call_checked(&self, request: Request) -> Result<RunResult, RuntimeError> {
        let id = request.run().clone();
        let before = self.store.load(&id).map_or(0, |(_, events)| events.len());
        let mut seen = Seen::default();
        let result = self.runtime.call(request, &mut seen)?;
        let stored = self.store.load(&id).unwrap().1;
        assert_eq!(
            seen.0,
            stored[before.min(stored.len())..],
            "the runtime reports what it records"
        );
        Ok(result)
    }

    fn try_start(&self, input: Value) -> Result<Handle, RuntimeError> {
        // run-1, run-2, …: every runtime records runs in its store, where an
        // id is taken once.
        let n = weft_core::RunIndex::list_runs(self.store(), None)
            .unwrap()
            .len()
            + 1;
        let id = RunId::new(&format!("run-{n}")).unwrap();
        let result = self.call_checked(Request::Start {
            workflow: self.registered.clone(),
            run: id.clone(),
            input,
            detach: false,
        })?;
        let events = self.store.load(&id).unwrap().1;
        Ok(Handle { id, result, events })
    }

    fn start(&self, input: Value) -> Handle {
        self.try_start(input).unwrap()
    }

    /// Another runtime of the same kind over the same store: as far as the
    /// store can tell, another process.
    fn twin(&self) -> Driver {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(50_000_000)));
        Driver::new(
            self.runtime.kind(),
            self.registered.clone(),
            self.store.clone(),
            clock,
            self.options,
        )
    }

    /// Starts a run with this id (waiting until it finishes or suspends).
    fn start_as(&self, id: &RunId, input: Value) -> Result<RunResult, RuntimeError> {
        self.call(Request::Start {
            workflow: self.registered.clone(),
            run: id.clone(),
            input,
            detach: false,
        })
    }

    /// Resumes a stored run by id.
    fn resume_run(
        &self,
        id: &RunId,
        target: &ResumeTarget,
        payload: Value,
    ) -> Result<RunResult, RuntimeError> {
        self.call(Request::Resume {
            workflow: self.registered.clone(),
            run: id.clone(),
            target: target.clone(),
            payload,
        })
    }

    /// Cancels a stored run by id.
    fn cancel_run(&self, id: &RunId, reason: Option<String>) -> Result<RunResult, RuntimeError> {
        self.call(Request::Cancel {
            workflow: self.registered.clone(),
            run: id.clone(),
            reason,
        })
    }

    /// Takes over a stored run no live runtime holds, and drives it.
    fn recover_run(&self, id: &RunId) -> Result<RunResult, RuntimeError> {
        self.call(Request::Recover {
            workflow: self.registered.clone(),
            run: id.clone(),
        })
    }

    fn resume(
        &self,
        handle: &mut Handle,
        target: &ResumeTarget,
        payload: Value,
    ) -> Result<(), RuntimeError> {
        handle.result = self.call_checked(Request::Resume {
            workflow: self.registered.clone(),
            run: handle.id.clone(),
            target: target.clone(),
            payload,
        })?;
        handle.events = self.store.load(&handle.id).unwrap().1;
        Ok(())
    }
}

/// The request that starts run `id` of `registered` with `input`.
fn start_request(registered: &Arc<Registered>, id: &str, input: Value) -> Request {
    Request::Start {
        workflow: registered.clone(),
        run: RunId::new(id).unwrap(),
        input,
        detach: false,
    }
}

fn add(n: i64) -> impl Fn(&StepTask, &StepView) -> StepReport {
    move |task, _| {
        ok(StepOutcome::Completed(json!(
            task.input.as_i64().unwrap_or(0) + n
        )))
    }
}

fn steps_run_in_sequence_each_getting_the_previous_output(kind: Kind) {
    let (rt, runner) = Fixture::new()
        .step("a", add(1))
        .step("b", add(10))
        .build(kind);
    let run = rt.start(json!(5));
    let result = run.result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!(16)));
    assert_eq!(result.steps.len(), 2);
    assert_eq!(*result.steps[1].input, json!(6));
    assert_eq!(*runner.calls.lock().unwrap(), ["a#1", "b#1"]);
    let names: Vec<_> = run.events().iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "run-started",
            "step-started",
            "step-completed",
            "step-started",
            "step-completed",
            "run-completed"
        ]
    );
}

fn a_failing_step_fails_the_run_with_its_error_and_later_steps_do_not_run(kind: Kind) {
    let (rt, runner) = Fixture::new()
        .step("a", |_, _| StepReport::failed(guest_error("boom", false)))
        .step("b", add(1))
        .build(kind);
    let result = rt.start(json!(1)).result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.step, Some(StepPath::root(&id("a"))));
    assert_eq!(error.error, guest_error("boom", false));
    assert_eq!(*runner.calls.lock().unwrap(), ["a#1"]);
}

fn retryable_errors_are_retried_with_the_same_idempotency_key_and_delays(kind: Kind) {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let (rt, runner) = Fixture::new()
        .step("a", move |task, _| {
            seen.lock().unwrap().push(task.idempotency_key.clone());
            if task.attempt < 3 {
                StepReport::failed(guest_error("flaky", true))
            } else {
                ok(StepOutcome::Completed(json!(task.attempt)))
            }
        })
        .with(|d| {
            d.retry = RetryPolicy {
                max_retries: 5,
                delay_ms: 100,
                backoff: 2,
            }
        })
        .build(kind);
    let run = rt.start(json!(null));
    assert_eq!(run.result().output, Some(json!(3)));
    assert_eq!(*runner.calls.lock().unwrap(), ["a#1", "a#2", "a#3"]);
    assert!(keys.lock().unwrap().iter().all(|k| k == "run-1/a"));
    // The second retry starts at least 200 ms (100 × 2) after the second failure.
    let times: Vec<u64> = run
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { at, .. } | Event::StepFailed { at, .. } => Some(at.0),
            _ => None,
        })
        .collect();
    assert!(times[2] - times[1] >= 100_000, "{times:?}");
    assert!(times[4] - times[3] >= 200_000, "{times:?}");
}

fn retries_stop_at_the_policy_and_non_retryable_errors_are_not_retried(kind: Kind) {
    let (rt, runner) = Fixture::new()
        .step("a", |_, _| StepReport::failed(guest_error("flaky", true)))
        .with(|d| d.retry.max_retries = 2)
        .build(kind);
    let result = rt.start(json!(null)).result();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.steps[0].attempt, 3);
    assert_eq!(runner.calls.lock().unwrap().len(), 3);

    let (rt, runner) = Fixture::new()
        .step("a", |_, _| StepReport::failed(guest_error("fatal", false)))
        .with(|d| d.retry.max_retries = 2)
        .build(kind);
    assert_eq!(rt.start(json!(null)).result().status, RunStatus::Failed);
    assert_eq!(runner.calls.lock().unwrap().len(), 1);
}

fn state_commits_with_completion_and_is_discarded_on_failure(kind: Kind) {
    let (rt, _) = Fixture::new()
        .step("a", |_, view| {
            let mut report = ok(StepOutcome::Completed(json!(null)));
            assert_eq!(*view.state, json!({}));
            report.state = Some(json!({"count": 1}));
            report
        })
        .step("b", |_, view| {
            assert_eq!(*view.state, json!({"count": 1}));
            let mut report = StepReport::failed(guest_error("after-state", false));
            report.state = Some(json!({"count": 99}));
            report
        })
        .build(kind);
    let result = rt.start(json!(null)).result();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.state, json!({"count": 1}));
}

fn steps_read_earlier_results_and_the_workflow_input(kind: Kind) {
    let (rt, _) = Fixture::new()
        .step("a", add(1))
        .step("b", add(1))
        .step("c", |_, view| {
            let a = view.results.get(&id("a")).map(|v| (**v).clone());
            let missing = view.results.get(&id("zzz")).is_some();
            ok(StepOutcome::Completed(
                json!({"a": a, "input": *view.workflow_input, "missing": missing}),
            ))
        })
        .build(kind);
    let result = rt.start(json!(1)).result();
    assert_eq!(
        result.output,
        Some(json!({"a": 2, "input": 1, "missing": false}))
    );
}

fn bail_ends_the_run_successfully_and_skips_later_steps(kind: Kind) {
    let (rt, runner) = Fixture::new()
        .step("a", |_, _| {
            let mut report = ok(StepOutcome::Bailed(json!({"early": true})));
            report.state = Some(json!({"bailed": true}));
            report
        })
        .step("b", add(1))
        .build(kind);
    let result = rt.start(json!(null)).result();
    assert_eq!(result.status, RunStatus::Success);
    assert_eq!(result.output, Some(json!({"early": true})));
    assert_eq!(result.state, json!({"bailed": true}));
    assert_eq!(result.steps[0].status, StepStatus::Bailed);
    assert_eq!(*runner.calls.lock().unwrap(), ["a#1"]);
}

fn approval(task: &StepTask, _: &StepView) -> StepReport {
    match &task.resume_payload {
        None => ok(StepOutcome::Suspended {
            payload: json!({"ask": task.input}),
            labels: vec!["approve".into()],
        }),
        Some(resume) => ok(StepOutcome::Completed(json!({
            "resumed": resume,
            "suspended": task.suspend_payload,
        }))),
    }
}

fn suspend_then_resume_by_label_path_or_alone_runs_the_step_again(kind: Kind) {
    for target in [
        ResumeTarget::Only,
        ResumeTarget::Label("approve".into()),
        ResumeTarget::Path(StepPath::parse("gate").unwrap()),
    ] {
        let (rt, runner) = Fixture::new()
            .step("gate", approval)
            .step("after", add(0))
            .build(kind);
        let mut run = rt.start(json!(7));
        let result = run.result();
        assert_eq!(result.status, RunStatus::Suspended);
        assert_eq!(result.suspended[0].payload, json!({"ask": 7}));
        assert_eq!(result.suspended[0].labels, ["approve"]);

        rt.resume(&mut run, &target, json!({"ok": true})).unwrap();
        let result = run.result();
        assert_eq!(result.status, RunStatus::Success, "{target:?}");
        assert_eq!(
            result.steps[0].output,
            Some(json!({"resumed": {"ok": true}, "suspended": {"ask": 7}}).into())
        );
        assert_eq!(
            *runner.calls.lock().unwrap(),
            ["gate#1", "gate#1", "after#1"]
        );
    }
}

fn resume_errors_leave_the_run_unchanged(kind: Kind) {
    let (rt, _) = Fixture::new()
        .step("gate", approval)
        .with(|d| {
            d.resume_schema =
                Some(Schema::compile(json!({"type": "object", "required": ["ok"]})).unwrap());
        })
        .build(kind);
    let mut run = rt.start(json!(1));
    let before = run.events().len();
    let err = |r: Result<(), RuntimeError>| r.unwrap_err().to_string();

    let e = err(rt.resume(&mut run, &ResumeTarget::Only, json!({})));
    assert!(
        e.contains("resume data for step `gate` fails its resume schema"),
        "{e}"
    );
    let e = err(rt.resume(
        &mut run,
        &ResumeTarget::Label("nope".into()),
        json!({"ok": 1}),
    ));
    assert!(
        e.contains("no suspended step has the resume label `nope` (labels: approve)"),
        "{e}"
    );
    let target = ResumeTarget::Path(StepPath::parse("other").unwrap());
    let e = err(rt.resume(&mut run, &target, json!({"ok": 1})));
    assert!(
        e.contains("the workflow has no step at path `other` (suspended: gate)"),
        "{e}"
    );
    assert_eq!(run.events().len(), before);
    assert_eq!(run.result().status, RunStatus::Suspended);

    rt.resume(&mut run, &ResumeTarget::Only, json!({"ok": 1}))
        .unwrap();
    let e = err(rt.resume(&mut run, &ResumeTarget::Only, json!({"ok": 1})));
    assert!(
        e.contains("run run-1 is not suspended (status: success)"),
        "{e}"
    );
}

/// A run suspended by one runtime resumes in another runtime (as in another
/// process) of either kind, from the store.
fn a_suspended_run_resumes_in_another_runtime_of_either_kind(kind: Kind) {
    for other in Kind::ALL {
        let (driver, runner) = Fixture::new()
            .step("gate", approval)
            .step("after", add(0))
            .build(kind);
        let handle = driver.start(json!(3));
        assert_eq!(handle.result().status, RunStatus::Suspended);
        let clock = Arc::new(ManualClock::new(Timestamp(9_000_000)));
        let elsewhere = Driver::new(
            other,
            driver.registered.clone(),
            driver.store.clone(),
            clock,
            EventedOptions::default(),
        );
        let result = elsewhere
            .resume_run(&handle.id, &ResumeTarget::Only, json!("yes"))
            .unwrap();
        assert_eq!(result.status, RunStatus::Success, "{kind} → {other}");
        assert_eq!(
            *runner.calls.lock().unwrap(),
            ["gate#1", "gate#1", "after#1"],
            "{kind} → {other}"
        );
    }
}

fn input_and_output_schemas_are_enforced(kind: Kind) {
    let mut fixture = Fixture::new().step("a", add(1));
    fixture.input_schema = Some(json!({"type": "integer"}));
    fixture.output_schema = Some(json!({"type": "integer", "maximum": 10}));
    let (rt, _) = fixture.build(kind);

    let err = rt.try_start(json!("x"));
    assert!(matches!(err, Err(RuntimeError::InvalidInput { .. })));

    let result = rt.start(json!(10)).result();
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert_eq!(error.error.kind, FailureKind::InvalidOutput);
    assert_eq!(error.step, None);
}

fn step_schemas_turn_bad_data_into_typed_failures(kind: Kind) {
    let (rt, runner) = Fixture::new()
        .step("a", add(1))
        .with(|d| d.input_schema = Some(Schema::compile(json!({"type": "string"})).unwrap()))
        .build(kind);
    let error = rt.start(json!(1)).result().error.unwrap().error;
    assert_eq!(error.kind, FailureKind::InvalidInput);
    assert!(
        runner.calls.lock().unwrap().is_empty(),
        "the step must not run"
    );

    let (rt, _) = Fixture::new()
        .step("a", |_, _| {
            let mut r = ok(StepOutcome::Completed(json!(1)));
            r.state = Some(json!("not an object"));
            r
        })
        .with(|d| d.state_schema = Some(Schema::compile(json!({"type": "object"})).unwrap()))
        .build(kind);
    let result = rt.start(json!(1)).result();
    assert_eq!(result.error.unwrap().error.kind, FailureKind::InvalidState);
    assert_eq!(result.state, json!({}));
}

fn custom_events_are_recorded_before_the_completion(kind: Kind) {
    let (rt, _) = Fixture::new()
        .step("a", |_, _| {
            let mut r = ok(StepOutcome::Completed(json!(null)));
            r.events.push(CustomEvent {
                kind: "progress".into(),
                data: json!({"pct": 50}),
            });
            r
        })
        .build(kind);
    let run = rt.start(json!(null));
    let names: Vec<_> = run.events().iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "run-started",
            "step-started",
            "custom",
            "step-completed",
            "run-completed"
        ]
    );
}

fn events_that_do_not_apply_are_rejected_without_changing_the_state(kind: Kind) {
    let (rt, _) = Fixture::new().step("a", add(1)).build(kind);
    let run = rt.start(json!(1));
    let mut state = RunState::replay(rt.workflow().clone(), run.events()).unwrap();
    let stray = Event::StepCompleted {
        path: StepPath::parse("a").unwrap(),
        output: json!(0).into(),
        state: None,
        measured: None,
        at: Timestamp(0),
    };
    let err = state.apply(&stray).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not apply: the run is success"),
        "{err}"
    );
    assert_eq!(state.result(), run.result());
}

/// The run as stored, rebuilt by replay.
fn replay(driver: &Driver, id: &RunId) -> RunResult {
    let events = driver.store().load(id).unwrap().1;
    RunState::replay(driver.workflow().clone(), &events)
        .unwrap()
        .result()
}

/// Every scenario above runs on both runtimes.
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod default_runtime {
            $( #[test] fn $name() { super::$name(super::Kind::Default) } )*
        }
        mod evented_runtime {
            $( #[test] fn $name() { super::$name(super::Kind::Evented) } )*
        }
    };
}

on_both_runtimes!(
    steps_run_in_sequence_each_getting_the_previous_output,
    a_failing_step_fails_the_run_with_its_error_and_later_steps_do_not_run,
    retryable_errors_are_retried_with_the_same_idempotency_key_and_delays,
    retries_stop_at_the_policy_and_non_retryable_errors_are_not_retried,
    state_commits_with_completion_and_is_discarded_on_failure,
    steps_read_earlier_results_and_the_workflow_input,
    bail_ends_the_run_successfully_and_skips_later_steps,
    suspend_then_resume_by_label_path_or_alone_runs_the_step_again,
    resume_errors_leave_the_run_unchanged,
    input_and_output_schemas_are_enforced,
    step_schemas_turn_bad_data_into_typed_failures,
    custom_events_are_recorded_before_the_completion,
    events_that_do_not_apply_are_rejected_without_changing_the_state,
    a_suspended_run_resumes_in_another_runtime_of_either_kind,
);

// After the macro: they use it too.
mod budgets;
mod claims;
mod foreach;
pub(crate) mod hooked;
mod orchestrator;
mod running;
