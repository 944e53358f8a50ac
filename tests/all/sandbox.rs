//! Tests of the sandbox.
//!
//! Edge cases use inline WAT steps: a core module written here, given the
//! component-type metadata of a world of the real `wit/step.wit` (or of a small
//! world defined inline), loaded as is (the sandbox encodes core modules) or
//! encoded into a component first. Host imports are exercised with the Rust
//! `test-steps` guest (`guest-examples/dist/test-steps.wasm`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::{
    FailureKind, Grant, Limits, LogLevel, LogLine, Node, NodeKind, RunId, StepDef, StepError,
    StepId, StepOutcome, StepPath, StepReport, StepRunner, StepTask, StepView, Timestamp,
    WorkflowBuilder,
};
use weft_sandbox::{
    LoadedFrom, Sandbox, SandboxConfig, SandboxError, StepComponent, WorkflowSteps,
};
use wit_parser::Resolve;

// ---------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------

/// One sandbox for the whole test binary, as in a real process.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
        Sandbox::new(SandboxConfig {
            max_instances: 32,
            ..SandboxConfig::default()
        })
        .expect("the sandbox starts")
    });
    &SANDBOX
}

fn id(text: &str) -> StepId {
    StepId::new(text).unwrap()
}

fn task(input: Value) -> StepTask {
    StepTask {
        run: RunId::new("run-1").unwrap(),
        workflow: id("wf"),
        step: id("s"),
        path: StepPath::root(&id("s")),
        attempt: 1,
        idempotency_key: "run-1/s".into(),
        input: input.into(),
        resume_payload: None,
        suspend_payload: None,
        iteration: None,
        not_before: None,
        started_at: STARTED_AT,
    }
}

/// When test attempts start (2023-11-14T22:13:20.123456Z).
const STARTED_AT: Timestamp = Timestamp(1_700_000_000_123_456);

fn limits() -> Limits {
    Limits {
        deadline_ms: 5_000,
        ..Limits::default()
    }
}

fn run(component: &StepComponent, input: Value, limits: &Limits) -> StepReport {
    component.run(&task(input), &StepView::default(), limits)
}

#[track_caller]
fn completed(report: &StepReport) -> &Value {
    match &report.outcome {
        Ok(StepOutcome::Completed(output)) => output,
        other => panic!("expected a completed step, got {other:?}"),
    }
}

#[track_caller]
fn failure(report: &StepReport, kind: FailureKind) -> &StepError {
    match &report.outcome {
        Err(error) if error.kind == kind => error,
        other => panic!("expected a {} failure, got {other:?}", kind.as_str()),
    }
}

// --- Inline WAT steps ------------------------------------------------------

/// Where `run` writes its `result<outcome, step-error>` (see `completes`).
const RET: u32 = 1024;

/// A core module implementing `run: func(input: json, ctx: step-context) ->
/// result<outcome, step-error>` with the canonical ABI: its 21 flat params
/// exceed 16, so `run` gets one pointer to them (`$args`: input ptr/len at 0
/// and 4, then the step-context) and returns a pointer to its result. It also
/// has `memory` and a bump `cabi_realloc` for the host's allocations.
/// `imports` go first, `data` are data segments (below 8 KiB), `body` is
/// `run`'s body (locals first).
fn step_wat(imports: &str, data: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (block $fits
      (loop $grow
        (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))
        unreachable))
    (local.get $ptr))
  {data}
  (func (export "run") (param $args i32) (result i32)
    {body}))"#
    )
}

/// `run`'s tail returning `ok(completed(string at ptr, len))`: the result's
/// discriminant at RET, the outcome's at RET+4, the string at RET+8/RET+12.
fn completes(ptr: &str, len: &str) -> String {
    format!(
        "(i32.store8 (i32.const {RET}) (i32.const 0))
         (i32.store8 (i32.const {r4}) (i32.const 0))
         (i32.store (i32.const {r8}) {ptr})
         (i32.store (i32.const {r12}) {len})
         (i32.const {RET})",
        r4 = RET + 4,
        r8 = RET + 8,
        r12 = RET + 12,
    )
}

/// A string or list in guest memory: its address and length (in bytes for
/// strings, in entries for lists).
#[derive(Clone, Copy)]
struct Span {
    ptr: u32,
    len: u32,
}

const fn span(ptr: u32, len: u32) -> Span {
    Span { ptr, len }
}

/// Where big guest data starts: past the first page (which holds the fixed
/// data and the bump allocator's first allocations), in pages the body grows.
const BIG: u32 = 1 << 16;

/// Grows the memory (by whole pages) so that `bytes` bytes from `BIG` on
/// exist, all zeros; traps if the growth is refused.
fn grow_for(bytes: u32) -> String {
    let pages = bytes.div_ceil(1 << 16);
    format!("(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))")
}

/// Stores the two i32 of a pointer/length pair at `at`.
fn store_span(at: u32, span: Span) -> String {
    format!(
        "(i32.store (i32.const {at}) (i32.const {})) (i32.store (i32.const {}) (i32.const {}))",
        span.ptr,
        at + 4,
        span.len
    )
}

/// `run`'s tail returning `err(step-error)` with these strings (`details`
/// absent when `None`) and `causes` (a list of 28-byte `error-cause` records:
/// code at 0, message at 8, details' discriminant at 16 and string at 20).
/// The error sits at RET+4: code, message, details (discriminant at +16,
/// string at +20), retryable at +28, causes at +32.
fn fails_with(code: Span, message: Span, details: Option<Span>, causes: Span) -> String {
    let details = match details {
        Some(details) => format!(
            "(i32.store8 (i32.const {}) (i32.const 1)) {}",
            RET + 20,
            store_span(RET + 24, details)
        ),
        None => format!("(i32.store8 (i32.const {}) (i32.const 0))", RET + 20),
    };
    format!(
        "(i32.store8 (i32.const {RET}) (i32.const 1))
         {} {} {details}
         (i32.store8 (i32.const {}) (i32.const 0))
         {}
         (i32.const {RET})",
        store_span(RET + 4, code),
        store_span(RET + 12, message),
        RET + 32,
        store_span(RET + 36, causes),
    )
}

/// `run`'s tail returning `ok(suspended({payload, resume-labels}))`: the
/// outcome's discriminant at RET+4, the payload at RET+8, the labels (a list
/// of 8-byte strings) at RET+16.
fn suspends_with(payload: Span, labels: Span) -> String {
    format!(
        "(i32.store8 (i32.const {RET}) (i32.const 0))
         (i32.store8 (i32.const {}) (i32.const 1))
         {} {}
         (i32.const {RET})",
        RET + 4,
        store_span(RET + 8, payload),
        store_span(RET + 16, labels),
    )
}

/// Fills `count` records of `size` bytes from `at` with `field` (at offset
/// `offset` of each record) = `value` (a pointer/length pair), in a loop.
fn fill_records(at: u32, count: u32, size: u32, offset: u32, value: Span) -> String {
    format!(
        "(local.set $i (i32.const 0))
         (block $filled
           (loop $fill
             (br_if $filled (i32.ge_u (local.get $i) (i32.const {count})))
             (local.set $at (i32.add (i32.const {at}) (i32.mul (local.get $i) (i32.const {size}))))
             (i32.store offset={offset} (local.get $at) (i32.const {}))
             (i32.store offset={} (local.get $at) (i32.const {}))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br $fill)))",
        value.ptr,
        offset + 4,
        value.len
    )
}

/// The bytes of an `error-cause` record.
const CAUSE_SIZE: u32 = 28;

/// A step whose `run` declares the locals `fill_records` uses, then runs `body`.
fn big_step(data: &str, body: &str, name: &str) -> Arc<StepComponent> {
    load(
        &step_module(data, &format!("(local $i i32) (local $at i32) {body}")),
        name,
    )
}

/// A data segment holding `text` at `offset`.
fn data(offset: u32, text: &str) -> String {
    let escaped: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(r#"(data (i32.const {offset}) "{escaped}")"#)
}

/// `run` completing with the fixed text `output` (kept at 2048).
fn completes_with(output: &str) -> (String, String) {
    (
        data(2048, output),
        completes("(i32.const 2048)", &format!("(i32.const {})", output.len())),
    )
}

/// The `step` world of `wit/step.wit`, or world `world` of the last of
/// `packages` (WIT sources pushed in order, after `wit/step.wit`).
fn resolve(packages: &[&str], world: &str) -> (Resolve, wit_parser::WorldId) {
    let mut resolve = Resolve::default();
    let step = resolve
        .push_str("step.wit", include_str!("../../wit/step.wit"))
        .expect("wit/step.wit parses");
    let mut main = step;
    for (i, source) in packages.iter().enumerate() {
        main = resolve
            .push_str(format!("inline{i}.wit"), source)
            .expect("inline WIT parses");
    }
    let world = resolve
        .select_world(&[main], Some(world))
        .expect("the world exists");
    (resolve, world)
}

/// A core module carrying the component-type metadata of `world`.
fn module(wat: &str, packages: &[&str], world: &str) -> Vec<u8> {
    let (resolve, world) = resolve(packages, world);
    let mut module = wat::parse_str(wat).expect("the WAT parses");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    module
}

/// The component of a core module with metadata.
fn encode(module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .expect("the module has metadata")
        .validate(true)
        .encode()
        .expect("the module encodes")
}

/// A step of world `step` from `data` and `body`, as a core module.
fn step_module(data: &str, body: &str) -> Vec<u8> {
    module(&step_wat("", data, body), &[], "step")
}

fn load(bytes: &[u8], name: &str) -> Arc<StepComponent> {
    sandbox()
        .load_bytes(bytes, name, &[])
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

fn happy_path() -> Arc<StepComponent> {
    let (data, body) = completes_with(r#"{"ok":true,"n":42}"#);
    load(&encode(&step_module(&data, &body)), "happy.wasm")
}

fn echo_module() -> Vec<u8> {
    step_module(
        "",
        &completes(
            "(i32.load (local.get $args))",
            "(i32.load offset=4 (local.get $args))",
        ),
    )
}

fn echo() -> Arc<StepComponent> {
    load(&echo_module(), "echo.wat")
}

fn trap() -> Arc<StepComponent> {
    load(&step_module("", "unreachable"), "trap.wat")
}

// ---------------------------------------------------------------------------
// Inline WAT edge cases
// ---------------------------------------------------------------------------

#[test]
fn a_wat_component_completes_with_its_fixed_output_many_times() {
    let step = happy_path();
    assert_eq!(step.name(), "happy.wasm");
    for _ in 0..100 {
        let report = run(&step, json!({"ignored": 1}), &limits());
        assert_eq!(completed(&report), &json!({"ok": true, "n": 42}));
        assert_eq!(report.state, None);
        assert!(report.events.is_empty() && report.logs.is_empty());
    }
}

#[test]
fn input_round_trips_through_the_guest() {
    let step = echo();
    for input in [
        json!({"order": 42, "items": ["a", "é"]}),
        json!("text"),
        json!(null),
        json!([]),
    ] {
        assert_eq!(completed(&run(&step, input.clone(), &limits())), &input);
    }
}

#[test]
fn steps_run_concurrently_from_several_threads() {
    let step = echo();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let step = &step;
            scope.spawn(move || {
                for i in 0..50 {
                    let input = json!({"thread": thread, "i": i});
                    assert_eq!(completed(&run(step, input.clone(), &limits())), &input);
                }
            });
        }
    });
}

#[test]
fn unreachable_is_a_trap() {
    let report = run(&trap(), json!({}), &limits());
    let error = failure(&report, FailureKind::Trap);
    assert!(error.message.contains("unreachable"), "{}", error.message);
    assert_eq!(error.code, "trap");
    assert!(!error.retryable);
}

#[test]
fn an_infinite_loop_hits_the_deadline_and_the_sandbox_keeps_working() {
    let step = load(
        &step_module("", "(loop $forever (br $forever)) unreachable"),
        "loop.wat",
    );
    let limits = Limits {
        deadline_ms: 200,
        ..Limits::default()
    };
    let started = Instant::now();
    let report = run(&step, json!({}), &limits);
    let elapsed = started.elapsed();
    let error = failure(&report, FailureKind::Deadline);
    assert!(error.message.contains("200 ms"), "{}", error.message);
    assert!(error.retryable);
    assert_on_time(elapsed, 200);

    // The same sandbox (and the same component) go on working.
    assert_eq!(
        completed(&run(&happy_path(), json!({}), &self::limits())),
        &json!({"ok": true, "n": 42})
    );
    assert!(
        run(
            &step,
            json!({}),
            &Limits {
                deadline_ms: 10,
                ..Limits::default()
            }
        )
        .outcome
        .is_err()
    );
}

/// A deadline is never early, and it stops a guest that would never stop by
/// itself. The lower bound is a guarantee: the deadline runs from the start
/// of the call, which `elapsed` includes. The upper bound is generous on
/// purpose, 30 s: the guests here loop forever, so stopping at all is what
/// counts, and a loaded 2-core machine (four spinning guests, the rest of the
/// suite and its `weft` processes) can delay the epoch thread and the
/// guest's thread by far more than a tick. How late a deadline is — the
/// first 5 ms epoch tick after it, not drifting with its length or the load
/// — is unit-tested with a simulated clock in the sandbox's `deadline`
/// module (`deadlines_stop_at_the_first_tick_after_them_whatever_the_load`).
#[track_caller]
fn assert_on_time(elapsed: Duration, deadline_ms: u64) {
    let deadline = Duration::from_millis(deadline_ms);
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    assert!(
        elapsed < deadline + Duration::from_secs(30),
        "not stopped by its deadline: {elapsed:?}"
    );
}

#[test]
fn deadlines_stop_concurrent_guests_and_are_never_early() {
    let step = load(
        &step_module("", "(loop $forever (br $forever)) unreachable"),
        "loop.wat",
    );
    // Four loops at once on two cores: the epoch thread competes with them,
    // and every one is still stopped, none early. (Ticks used to be one sleep
    // after the other, so each late wake-up pushed every deadline back, 200 ms
    // → up to 317 ms, 1000 ms → 1254 ms. That drift is ruled out by the
    // sandbox's simulated-clock unit test, see `assert_on_time`; here only
    // bounds a loaded machine cannot break are asserted.)
    std::thread::scope(|scope| {
        for deadline_ms in [200, 200, 1000, 1000] {
            let step = &step;
            scope.spawn(move || {
                let limits = Limits {
                    deadline_ms,
                    ..Limits::default()
                };
                let started = Instant::now();
                let report = run(step, json!({}), &limits);
                let elapsed = started.elapsed();
                failure(&report, FailureKind::Deadline);
                assert_on_time(elapsed, deadline_ms);
            });
        }
    });
}

#[test]
fn growing_memory_past_the_cap_is_a_memory_failure() {
    let (data, done) = completes_with("{}");
    // Grows by `pages` 64 KiB pages, and traps if that fails (as Rust's allocator does).
    let grow = |pages: u32| {
        format!(
            "(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable)) {done}"
        )
    };
    let limits = Limits {
        memory_bytes: 2 << 20,
        ..limits()
    };

    let small = load(&step_module(&data, &grow(16)), "grow-1MiB.wat");
    assert_eq!(completed(&run(&small, json!({}), &limits)), &json!({}));

    let big = load(&step_module(&data, &grow(256)), "grow-16MiB.wat");
    let report = run(&big, json!({}), &limits);
    let error = failure(&report, FailureKind::Memory);
    assert!(
        error.message.contains("limit of 2097152 bytes"),
        "{}",
        error.message
    );
}

#[test]
fn running_out_of_fuel_is_a_fuel_failure() {
    let (data, done) = completes_with("{}");
    let count = format!(
        "(local $i i32)
         (loop $count
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $count (i32.lt_u (local.get $i) (i32.const 1000000))))
         {done}"
    );
    let step = load(&step_module(&data, &count), "count.wat");
    assert_eq!(
        completed(&run(
            &step,
            json!({}),
            &Limits {
                fuel: Some(100_000_000),
                ..limits()
            }
        )),
        &json!({})
    );

    let report = run(
        &step,
        json!({}),
        &Limits {
            fuel: Some(10_000),
            ..limits()
        },
    );
    let error = failure(&report, FailureKind::Fuel);
    assert!(error.message.contains("10000"), "{}", error.message);
}

#[test]
fn oversized_output_is_payload_too_large() {
    let limits = Limits {
        max_output_bytes: 16,
        ..limits()
    };
    let report = run(&echo(), json!({"text": "more than sixteen bytes"}), &limits);
    let error = failure(&report, FailureKind::PayloadTooLarge);
    assert!(error.message.contains("output"), "{}", error.message);
    assert_eq!(
        completed(&run(&echo(), json!("short"), &limits)),
        &json!("short")
    );
}

#[test]
fn oversized_input_is_payload_too_large_without_running_the_guest() {
    let limits = Limits {
        max_input_bytes: 8,
        ..limits()
    };
    // The guest would trap if it ran.
    let report = run(&trap(), json!({"text": "more than eight bytes"}), &limits);
    let error = failure(&report, FailureKind::PayloadTooLarge);
    assert!(error.message.contains("input"), "{}", error.message);
}

#[test]
fn output_that_is_not_json_is_invalid_output() {
    let (data, body) = completes_with("not json{");
    let step = load(&step_module(&data, &body), "not-json.wat");
    let error = failure(
        &run(&step, json!({}), &limits()),
        FailureKind::InvalidOutput,
    )
    .clone();
    assert!(error.message.contains("not JSON"), "{}", error.message);
}

#[test]
fn emitting_data_that_is_not_json_is_invalid_output() {
    let imports = r#"(import "weft:step/host@0.1.0" "emit" (func $emit (param i32 i32 i32 i32)))"#;
    let (output, done) = completes_with("null");
    let data = format!(
        "{output} {} {}",
        data(3000, "progress"),
        data(3100, "{oops")
    );
    let body = format!(
        "(call $emit (i32.const 3000) (i32.const 8) (i32.const 3100) (i32.const 5)) {done}"
    );
    let step = load(
        &module(&step_wat(imports, &data, &body), &[], "step"),
        "emit.wat",
    );
    let report = run(&step, json!({}), &limits());
    let error = failure(&report, FailureKind::InvalidOutput);
    assert!(
        error.message.contains("`progress` event"),
        "{}",
        error.message
    );
    assert!(report.events.is_empty());
}

// --- Unbounded guest data: errors and labels --------------------------------

/// The code of the errors below, at 3000.
const CODE: Span = span(3000, 7);

fn code_data() -> String {
    data(3000, "too-big")
}

/// A step failing with a message of `len` zero bytes (valid UTF-8).
fn failing_with_message(len: u32) -> Arc<StepComponent> {
    let tail = fails_with(CODE, span(BIG, len), None, span(0, 0));
    big_step(
        &code_data(),
        &format!("{} {tail}", grow_for(len)),
        &format!("message-{len}.wat"),
    )
}

#[track_caller]
fn too_large(report: &StepReport, says: &str) {
    let error = failure(report, FailureKind::PayloadTooLarge);
    assert!(error.message.contains(says), "{}", error.message);
    assert!(!error.retryable);
    assert!(error.causes.is_empty() && error.details.is_none());
}

/// How a value too large for wasmtime to copy out of the guest is reported
/// (with the default limits, the most it copies is a suspension with 32
/// labels of 256 bytes, about 1 MiB).
const BUDGET_MESSAGE: &str = "bytes at once: more than its limits allow";

#[test]
fn a_huge_error_message_is_payload_too_large() {
    // 50 MB, as found by the issue: refused while being copied out of the
    // guest, from its length alone.
    too_large(
        &run(&failing_with_message(50_000_000), json!({}), &limits()),
        BUDGET_MESSAGE,
    );
    // 100 KB: copied (it is below the budget), then over `max-error-bytes`.
    too_large(
        &run(&failing_with_message(100_000), json!({}), &limits()),
        "error `too-big` of 100007 bytes (code, message, details and causes), \
         over the limit of 65536 bytes",
    );
    // Within the limit, the error is the guest's own.
    let report = run(&failing_with_message(60_000), json!({}), &limits());
    let error = failure(&report, FailureKind::Step);
    assert_eq!(
        (error.code.as_str(), error.message.len()),
        ("too-big", 60_000)
    );
}

#[test]
fn huge_error_details_are_payload_too_large() {
    // `len` bytes of JSON: spaces, then `1`.
    let failing_with_details = |len: u32| {
        let fill = format!(
            "(memory.fill (i32.const {BIG}) (i32.const 32) (i32.const {}))
             (i32.store8 (i32.const {}) (i32.const 49))",
            len - 1,
            BIG + len - 1
        );
        let tail = fails_with(CODE, span(0, 0), Some(span(BIG, len)), span(0, 0));
        big_step(
            &code_data(),
            &format!("{} {fill} {tail}", grow_for(len)),
            &format!("details-{len}.wat"),
        )
    };
    too_large(
        &run(&failing_with_details(20_000_000), json!({}), &limits()),
        BUDGET_MESSAGE,
    );
    too_large(
        &run(&failing_with_details(70_000), json!({}), &limits()),
        "of 70007 bytes",
    );
    let report = run(&failing_with_details(1_000), json!({}), &limits());
    assert_eq!(failure(&report, FailureKind::Step).details, Some(json!(1)));
}

#[test]
fn too_many_error_causes_are_payload_too_large() {
    // `count` causes, all zeros: empty code and message, no details.
    let failing_with_causes = |count: u32| {
        let tail = fails_with(CODE, span(0, 0), None, span(BIG, count));
        big_step(
            &code_data(),
            &format!("{} {tail}", grow_for(count * CAUSE_SIZE)),
            &format!("causes-{count}.wat"),
        )
    };
    // A million, as found by the issue (1.43 GB of host memory then).
    too_large(
        &run(&failing_with_causes(1_000_000), json!({}), &limits()),
        BUDGET_MESSAGE,
    );
    too_large(
        &run(&failing_with_causes(33), json!({}), &limits()),
        "error `too-big` with 33 causes, over the limit of 32",
    );
    let report = run(&failing_with_causes(32), json!({}), &limits());
    assert_eq!(failure(&report, FailureKind::Step).causes.len(), 32);
}

#[test]
fn a_huge_error_cause_is_payload_too_large() {
    // One cause (at 3100) whose message is `len` zero bytes.
    let failing_with_cause = |len: u32| {
        let cause = store_span(3100 + 8, span(BIG, len));
        let tail = fails_with(CODE, span(0, 0), None, span(3100, 1));
        big_step(
            &code_data(),
            &format!("{} {cause} {tail}", grow_for(len)),
            &format!("cause-{len}.wat"),
        )
    };
    too_large(
        &run(&failing_with_cause(10_000_000), json!({}), &limits()),
        BUDGET_MESSAGE,
    );
    too_large(
        &run(&failing_with_cause(65_530), json!({}), &limits()),
        "of 65537 bytes",
    );
    let report = run(&failing_with_cause(65_529), json!({}), &limits());
    let error = failure(&report, FailureKind::Step);
    assert_eq!(error.causes[0].message.len(), 65_529);
}

/// A step suspending with payload `null` (at 3200) and `labels`.
fn suspending(labels: Span, setup: &str, name: &str) -> Arc<StepComponent> {
    let tail = suspends_with(span(3200, 4), labels);
    big_step(&data(3200, "null"), &format!("{setup} {tail}"), name)
}

#[track_caller]
fn suspended_labels(report: &StepReport) -> &[String] {
    match &report.outcome {
        Ok(StepOutcome::Suspended { labels, .. }) => labels,
        other => panic!("expected a suspension, got {other:?}"),
    }
}

#[test]
fn too_many_resume_labels_are_payload_too_large() {
    // `count` empty labels (zeros).
    let with_labels = |count: u32| {
        suspending(
            span(BIG, count),
            &grow_for(count * 8),
            &format!("labels-{count}.wat"),
        )
    };
    too_large(
        &run(&with_labels(1_000_000), json!({}), &limits()),
        BUDGET_MESSAGE,
    );
    too_large(
        &run(&with_labels(33), json!({}), &limits()),
        "the step suspended with 33 resume labels, over the limit of 32",
    );
    assert_eq!(
        suspended_labels(&run(&with_labels(32), json!({}), &limits())).len(),
        32
    );
}

#[test]
fn a_huge_resume_label_is_payload_too_large() {
    // One label (at 3100) of `len` zero bytes.
    let with_label = |len: u32| {
        let setup = format!("{} {}", grow_for(len), store_span(3100, span(BIG, len)));
        suspending(span(3100, 1), &setup, &format!("label-{len}.wat"))
    };
    too_large(
        &run(&with_label(5_000_000), json!({}), &limits()),
        BUDGET_MESSAGE,
    );
    too_large(
        &run(&with_label(257), json!({}), &limits()),
        "a resume label of 257 bytes, over the limit of 256 bytes",
    );
    let report = run(&with_label(256), json!({}), &limits());
    assert_eq!(suspended_labels(&report)[0].len(), 256);
}

#[test]
fn error_and_label_limits_come_from_the_step_limits() {
    let limits = Limits {
        max_error_bytes: 10,
        max_error_causes: 0,
        max_labels: 0,
        ..limits()
    };
    too_large(
        &run(&failing_with_message(4), json!({}), &limits),
        "of 11 bytes",
    );
    let suspend = suspending(span(3100, 1), "", "one-label.wat");
    too_large(&run(&suspend, json!({}), &limits), "1 resume labels");
    // The budget follows the limits: 10 MB of output allowed, so a 5 MB
    // message is copied, then refused by its own limit.
    let limits = Limits {
        max_output_bytes: 10_000_000,
        ..limits
    };
    too_large(
        &run(&failing_with_message(5_000_000), json!({}), &limits),
        "of 5000007 bytes",
    );
}

#[test]
fn text_that_is_not_utf8_is_invalid_output() {
    // `"\xff"`: a JSON string, but not UTF-8.
    let bad = r#"(data (i32.const 2048) "\22\ff\22")"#;
    let output = load(
        &step_module(bad, &completes("(i32.const 2048)", "(i32.const 3)")),
        "not-utf8-output.wat",
    );
    let message = load(
        &step_module(
            bad,
            &fails_with(span(2048, 3), span(2048, 3), None, span(0, 0)),
        ),
        "not-utf8-error.wat",
    );
    let label = big_step(
        &format!("{bad} {}", data(3200, "null")),
        &format!(
            "{} {}",
            store_span(3100, span(2048, 3)),
            suspends_with(span(3200, 4), span(3100, 1))
        ),
        "not-utf8-label.wat",
    );
    for step in [output, message, label] {
        let report = run(&step, json!({}), &limits());
        let error = failure(&report, FailureKind::InvalidOutput);
        assert!(error.message.contains("not UTF-8"), "{}", error.message);
        assert!(!error.retryable);
    }
}

/// Runs `command` to its end and returns its exit code, stdout, stderr and
/// peak resident set size in bytes (from `wait4`'s resource usage).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
// The child is reaped by `wait4`, which std's `Child::wait` would not let us call.
#[allow(clippy::zombie_processes)]
fn run_measuring_peak_rss(
    command: &mut std::process::Command,
) -> (Option<i32>, String, String, u64) {
    use std::io::Read;
    use std::process::Stdio;

    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft starts");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // The child's own high-water mark, sampled until it exits. (`wait4`'s
    // `ru_maxrss` would also count the test process's memory: a child
    // spawned with vfork records its parent's peak when it execs.)
    let sampled = child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        let status = format!("/proc/{sampled}/status");
        while let Some((name, hwm)) = std::fs::read_to_string(&status).ok().and_then(|text| {
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .map(|n| n.trim().to_owned())?;
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?;
            Some((name, hwm))
        }) {
            // Until it execs, the child is a copy of this process (its
            // figures are ours): count `weft` only.
            if name == "weft" {
                peak = peak.max(hwm * 1024);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout reads");
    let err = errors.join().expect("no panic").expect("stderr reads");

    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: `rusage` is plain integers, valid all zeros; `wait4` writes
    // into both locals, which outlive the call. The child is ours and not
    // reaped yet: `child` is never waited on (dropping it does not wait).
    let (reaped, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let reaped = libc::wait4(pid, &mut status, 0, &mut usage);
        (reaped, usage)
    };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // A zombie has no memory lines: the sampler stopped when the child exited.
    let peak = sampler.join().expect("no panic");
    // `ru_maxrss` (kibibytes) bounds the child's peak from above — up to
    // the kernel's per-thread batching of RSS counters (64 pages a thread),
    // which lets the two readings differ by a few hundred KiB.
    let bound = u64::try_from(usage.ru_maxrss).expect("a size") * 1024 + (4 << 20);
    assert!(peak > 0 && peak <= bound, "sampled {peak}, bound {bound}");
    (code, out, err, peak)
}

#[cfg(target_os = "linux")]
#[test]
fn a_million_causes_fail_a_run_with_payload_too_large_in_little_memory() {
    // A million causes, each with code `c` and the same 40-byte message: the
    // guest needs 28 MB of memory; copying them to the host would take
    // ~200 MB, then more for the run's events (1.43 GB when the issue was
    // found), though it stays below wasmtime's own default cap of 128 MiB.
    let count = 1_000_000;
    let message = "m".repeat(40);
    let setup = format!(
        "{} {}",
        grow_for(count * CAUSE_SIZE),
        [
            fill_records(BIG, count, CAUSE_SIZE, 0, span(3100, 1)),
            fill_records(BIG, count, CAUSE_SIZE, 8, span(3200, 40)),
        ]
        .join(" ")
    );
    let data = format!(
        "{} {} {}",
        code_data(),
        data(3100, "c"),
        data(3200, &message)
    );
    let tail = fails_with(CODE, span(0, 0), None, span(BIG, count));
    let wasm = encode(&step_module(
        &data,
        &format!("(local $i i32) (local $at i32) {setup} {tail}"),
    ));

    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("causes.wasm"), wasm).unwrap();
    let manifest = home.path().join("workflow.toml");
    std::fs::write(
        &manifest,
        "id = \"causes\"\nflow = [{ step = \"fail\" }]\n\n[steps.fail]\ncomponent = \"causes.wasm\"\n",
    )
    .unwrap();
    let (code, out, err, peak) = run_measuring_peak_rss(
        crate::support::weft(home.path())
            .arg("run")
            .arg(&manifest)
            .arg("--json"),
    );
    eprintln!(
        "weft's peak RSS, failing a step with a million causes: {} MiB",
        peak >> 20
    );
    // (Only the start of the output: it would hold every cause if they got through.)
    let start: String = out.chars().take(2000).collect();
    assert_eq!(code, Some(1), "{start}\n{err}");
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {start}"));
    assert_eq!(result["error"]["kind"], "payload-too-large", "{start}");
    assert!(peak < 150 << 20, "weft's peak RSS was {} MiB", peak >> 20);
}

#[test]
fn a_component_of_another_world_is_rejected_at_load() {
    let other = "package test:other;
        world other { export hello: func() -> u32; }";
    let wat = r#"(module (memory (export "memory") 1) (func (export "hello") (result i32) (i32.const 7)))"#;
    let err = sandbox()
        .load_bytes(&module(wat, &[other], "other"), "other.wasm", &[])
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotAStep { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`other.wasm` does not implement `weft:step/step@0.1.0`"),
        "{message}"
    );
    assert!(
        message.contains("`run`") && message.contains("`hello`"),
        "{message}"
    );

    let wrong = "package test:wrong;
        world wrong { export run: func() -> u32; }";
    let wat =
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 7)))"#;
    let err = sandbox()
        .load_bytes(&module(wat, &[wrong], "wrong"), "wrong.wasm", &[])
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotAStep { .. }), "{err:?}");
    assert!(err.to_string().contains("`run`"), "{err}");
}

#[test]
fn bytes_that_are_not_a_step_component_are_rejected_at_load() {
    let err = sandbox()
        .load_bytes(b"hello", "hello.txt", &[])
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotWasm { .. }), "{err:?}");
    assert!(err.to_string().contains("`hello.txt`"), "{err}");

    let bare = wat::parse_str("(module)").unwrap();
    let err = sandbox().load_bytes(&bare, "bare.wasm", &[]).unwrap_err();
    assert!(matches!(err, SandboxError::NotAStep { .. }), "{err:?}");
    assert!(err.to_string().contains("wit-bindgen"), "{err}");

    let err = sandbox()
        .load_file(Path::new("/nonexistent/step.wasm"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/step.wasm"), "{err}");
}

// --- WASI: virtualised, deny-by-default ------------------------------------

/// WASI 0.2.12 as wasmtime-wasi 48.0.8 links it (its WIT, copied into
/// `tests/wit/wasi`), in dependency order.
const WASI_WIT: [&str; 6] = [
    include_str!("../wit/wasi/io.wit"),
    include_str!("../wit/wasi/clocks.wit"),
    include_str!("../wit/wasi/random.wit"),
    include_str!("../wit/wasi/filesystem.wit"),
    include_str!("../wit/wasi/sockets.wit"),
    include_str!("../wit/wasi/cli.wit"),
];

/// A step world that may import all of WASI's `wasi:cli/imports` (the
/// encoder keeps only the interfaces the module uses).
const PROBE_WORLD: &str = "package test:probe;
    world probe { include weft:step/step@0.1.0; include wasi:cli/imports@0.2.12; }";

/// Writes `$v` as 16 lowercase hex digits at `$at`.
const HEX_FUNC: &str = r#"
  (func $hex (param $v i64) (param $at i32)
    (local $i i32) (local $d i32)
    (local.set $i (i32.const 15))
    (loop $digit
      (local.set $d (i32.wrap_i64 (i64.and (local.get $v) (i64.const 15))))
      (i32.store8 (i32.add (local.get $at) (local.get $i))
        (i32.add (local.get $d)
          (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $d) (i32.const 10)))))
      (local.set $v (i64.shr_u (local.get $v) (i64.const 4)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $digit (i32.ge_s (local.get $i) (i32.const 0)))))"#;

/// Where a probe writes its output.
const PROBE_OUT: u32 = 6000;

/// `run`'s body: declares `$v0`… for `values` (i64 expressions evaluated in
/// order after `setup`), then completes with them as a JSON array of hex
/// strings (parsed back by `probed`).
fn probe_body(setup: &str, values: &[&str]) -> String {
    let mut body: String = (0..values.len())
        .map(|k| format!("(local $v{k} i64) "))
        .collect();
    body.push_str(setup);
    for (k, value) in values.iter().enumerate() {
        body.push_str(&format!("(local.set $v{k} {value})\n"));
    }
    body.push_str(&format!(
        "(i32.store8 (i32.const {PROBE_OUT}) (i32.const 91))"
    ));
    for k in 0..values.len() {
        let at = PROBE_OUT + 1 + 19 * k as u32;
        let last = if k + 1 == values.len() { 93 } else { 44 };
        body.push_str(&format!(
            "(i32.store8 (i32.const {at}) (i32.const 34))
             (call $hex (local.get $v{k}) (i32.const {}))
             (i32.store8 (i32.const {}) (i32.const 34))
             (i32.store8 (i32.const {}) (i32.const {last}))\n",
            at + 1,
            at + 17,
            at + 18
        ));
    }
    let len = 1 + 19 * values.len();
    body.push_str(&completes(
        &format!("(i32.const {PROBE_OUT})"),
        &format!("(i32.const {len})"),
    ));
    body
}

/// The values a probe step completed with.
#[track_caller]
fn probed(report: &StepReport) -> Vec<u64> {
    let output = completed(report);
    output
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {output}"))
        .iter()
        .map(|v| u64::from_str_radix(v.as_str().unwrap(), 16).unwrap())
        .collect()
}

const PROBE_IMPORTS: &str = r#"
  (import "wasi:cli/environment@0.2.12" "get-environment" (func $env (param i32)))
  (import "wasi:cli/environment@0.2.12" "get-arguments" (func $args (param i32)))
  (import "wasi:filesystem/preopens@0.2.12" "get-directories" (func $dirs (param i32)))
  (import "wasi:sockets/tcp-create-socket@0.2.12" "create-tcp-socket" (func $tcp (param i32 i32)))
  (import "wasi:sockets/udp-create-socket@0.2.12" "create-udp-socket" (func $udp (param i32 i32)))
  (import "wasi:cli/stdin@0.2.12" "get-stdin" (func $stdin (result i32)))
  (import "wasi:io/streams@0.2.12" "[method]input-stream.read" (func $read (param i32 i64 i32)))
  (import "wasi:cli/stdout@0.2.12" "get-stdout" (func $stdout (result i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (import "wasi:clocks/wall-clock@0.2.12" "now" (func $wall (param i32)))
  (import "wasi:clocks/monotonic-clock@0.2.12" "now" (func $mono (result i64)))
  (import "wasi:random/random@0.2.12" "get-random-u64" (func $random (result i64)))
  (import "wasi:random/insecure@0.2.12" "get-insecure-random-u64" (func $insecure (result i64)))
  (import "wasi:random/insecure-seed@0.2.12" "insecure-seed" (func $seed (param i32)))"#;

/// What the probe reports, by index in its output.
mod probe {
    pub const ENV: usize = 0;
    pub const ARGS: usize = 1;
    pub const PREOPENS: usize = 2;
    pub const TCP: usize = 3;
    pub const TCP_ERROR: usize = 4;
    pub const UDP: usize = 5;
    pub const UDP_ERROR: usize = 6;
    pub const STDIN: usize = 7;
    pub const STDIN_ERROR: usize = 8;
    pub const RANDOM: usize = 9;
    pub const INSECURE: usize = 10;
    pub const INSECURE_SEED: usize = 11;
    pub const WALL_SECONDS: usize = 12;
    pub const WALL_NANOS: usize = 13;
    pub const MONOTONIC: usize = 14;
    pub const MONOTONIC_AGAIN: usize = 15;
}

/// A step touching every WASI area: environment, arguments, preopens, TCP
/// and UDP sockets, stdin, stdout (writes `probe says hi`), both clocks and
/// the three random interfaces; it completes with what each returned.
fn wasi_probe() -> Vec<u8> {
    let text = "probe says hi\n";
    let data = format!("{HEX_FUNC} {}", data(3000, text));
    let setup = format!(
        "(call $env (i32.const 1100)) (call $args (i32.const 1116)) (call $dirs (i32.const 1132))
         (call $tcp (i32.const 0) (i32.const 1148)) (call $udp (i32.const 0) (i32.const 1164))
         (call $read (call $stdin) (i64.const 16) (i32.const 1180))
         (call $write (call $stdout) (i32.const 3000) (i32.const {len}) (i32.const 1240))
         (call $wall (i32.const 1200)) (call $seed (i32.const 1224))",
        len = text.len()
    );
    let body = probe_body(
        &setup,
        &[
            "(i64.extend_i32_u (i32.load (i32.const 1104)))",
            "(i64.extend_i32_u (i32.load (i32.const 1120)))",
            "(i64.extend_i32_u (i32.load (i32.const 1136)))",
            "(i64.load8_u (i32.const 1148))",
            "(i64.load8_u (i32.const 1152))",
            "(i64.load8_u (i32.const 1164))",
            "(i64.load8_u (i32.const 1168))",
            "(i64.load8_u (i32.const 1180))",
            "(i64.load8_u (i32.const 1184))",
            "(call $random)",
            "(call $insecure)",
            "(i64.load (i32.const 1224))",
            "(i64.load (i32.const 1200))",
            "(i64.extend_i32_u (i32.load (i32.const 1208)))",
            "(call $mono)",
            "(call $mono)",
        ],
    );
    let mut packages: Vec<&str> = WASI_WIT.to_vec();
    packages.push(PROBE_WORLD);
    encode(&module(
        &step_wat(PROBE_IMPORTS, &data, &body),
        &packages,
        "probe",
    ))
}

fn task_of(key: &str, attempt: u32) -> StepTask {
    StepTask {
        idempotency_key: key.into(),
        attempt,
        ..task(json!({}))
    }
}

#[test]
fn wasi_is_linked_and_inert_without_grants() {
    let bytes = wasi_probe();
    let step = sandbox()
        .load_bytes(&bytes, "probe.wasm", &[])
        .expect("a component importing cli, filesystem and sockets loads without grants");
    let report = step.run(&task(json!({})), &StepView::default(), &limits());
    let v = probed(&report);
    assert_eq!(v[probe::ENV], 0, "no environment variables");
    assert_eq!(v[probe::ARGS], 0, "no arguments");
    assert_eq!(
        v[probe::PREOPENS],
        0,
        "no preopened directory: no file is reachable"
    );
    // `err(access-denied)`: error-code 1 of `wasi:sockets/network`.
    assert_eq!(
        (v[probe::TCP], v[probe::TCP_ERROR]),
        (1, 1),
        "TCP is denied"
    );
    assert_eq!(
        (v[probe::UDP], v[probe::UDP_ERROR]),
        (1, 1),
        "UDP is denied"
    );
    // `err(closed)`: stdin is empty.
    assert_eq!((v[probe::STDIN], v[probe::STDIN_ERROR]), (1, 1));
    assert!(
        report.logs.is_empty(),
        "stdout is discarded: {:?}",
        report.logs
    );

    let granted = sandbox()
        .load_bytes(&bytes, "probe.wasm", &[Grant::Stdio])
        .unwrap();
    let report = granted.run(&task(json!({})), &StepView::default(), &limits());
    assert_eq!(probed(&report)[probe::ENV], 0, "stdio gives no environment");
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Info,
            message: "probe says hi".into()
        }]
    );
}

#[test]
fn clocks_and_random_are_deterministic_without_grants() {
    let step = sandbox()
        .load_bytes(&wasi_probe(), "probe.wasm", &[])
        .unwrap();
    let probe = |task: &StepTask| probed(&step.run(task, &StepView::default(), &limits()));
    let first = probe(&task_of("run-1/s", 1));
    // The wall clock is the attempt's start; the monotonic clock starts at 0.
    assert_eq!(first[probe::WALL_SECONDS], STARTED_AT.0 / 1_000_000);
    assert_eq!(first[probe::WALL_NANOS], STARTED_AT.0 % 1_000_000 * 1_000);
    assert_eq!(first[probe::MONOTONIC], 0);
    assert_eq!(first[probe::MONOTONIC_AGAIN], 1_000);
    // The same attempt of the same execution (a redelivery, a replay) reads
    // the same values.
    assert_eq!(probe(&task_of("run-1/s", 1)), first);
    let randoms = |v: &[u64]| {
        [
            v[probe::RANDOM],
            v[probe::INSECURE],
            v[probe::INSECURE_SEED],
        ]
    };
    assert_ne!(first[probe::RANDOM], first[probe::INSECURE]);
    // The next attempt, or another execution, reads other random numbers.
    let retry = probe(&task_of("run-1/s", 2));
    let other = probe(&task_of("run-2/s", 1));
    for values in [&retry, &other] {
        let (a, b) = (randoms(&first), randoms(values));
        for k in 0..3 {
            assert_ne!(a[k], b[k], "{a:?} vs {b:?}");
        }
    }

    // The grants give the host's clocks and generators.
    let real = sandbox()
        .load_bytes(&wasi_probe(), "probe.wasm", &[Grant::Clocks, Grant::Random])
        .unwrap();
    let probe = |task: &StepTask| probed(&real.run(task, &StepView::default(), &limits()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (a, b) = (probe(&task_of("run-1/s", 1)), probe(&task_of("run-1/s", 1)));
    assert!(
        a[probe::WALL_SECONDS].abs_diff(now) < 3600,
        "{a:?} vs {now}"
    );
    assert!(a[probe::MONOTONIC_AGAIN] >= a[probe::MONOTONIC]);
    let (ra, rb) = (randoms(&a), randoms(&b));
    for k in 0..3 {
        assert_ne!(ra[k], rb[k], "{ra:?} vs {rb:?}");
    }
}

#[test]
fn stdout_goes_to_the_step_log_only_when_granted() {
    let io = "package wasi:io@0.2.6;
        interface error { resource error; }
        interface streams {
            use error.{error};
            variant stream-error { last-operation-failed(error), closed }
            resource output-stream {
                blocking-write-and-flush: func(contents: list<u8>) -> result<_, stream-error>;
            }
        }";
    let cli = "package wasi:cli@0.2.6;
        interface stdout {
            use wasi:io/streams@0.2.6.{output-stream};
            get-stdout: func() -> output-stream;
        }";
    let world = "package test:stdio;
        world stdout-step { include weft:step/step@0.1.0; import wasi:cli/stdout@0.2.6; }";
    let imports = r#"
        (import "wasi:cli/stdout@0.2.6" "get-stdout" (func $stdout (result i32)))
        (import "wasi:io/streams@0.2.6" "[method]output-stream.blocking-write-and-flush"
            (func $write (param i32 i32 i32 i32)))
        (import "wasi:io/streams@0.2.6" "[resource-drop]output-stream" (func $drop (param i32)))"#;
    let text = "hello\r\nworld\nlast";
    let (output, done) = completes_with("null");
    let data = format!("{output} {}", data(3000, text));
    let body = format!(
        "(local $out i32)
         (local.set $out (call $stdout))
         (call $write (local.get $out) (i32.const 3000) (i32.const {len}) (i32.const 1100))
         (call $drop (local.get $out))
         {done}",
        len = text.len()
    );
    let bytes = module(
        &step_wat(imports, &data, &body),
        &[io, cli, world],
        "stdout-step",
    );

    // Without the grant, stdout is linked and discarded.
    let step = sandbox()
        .load_bytes(&bytes, "stdout.wasm", &[])
        .expect("loads");
    let report = run(&step, json!({}), &limits());
    assert_eq!(completed(&report), &json!(null));
    assert!(report.logs.is_empty(), "{:?}", report.logs);

    let step = sandbox()
        .load_bytes(&bytes, "stdout.wasm", &[Grant::Stdio])
        .expect("loads");
    let report = run(&step, json!({}), &limits());
    assert_eq!(completed(&report), &json!(null));
    let info = |message: &str| LogLine {
        level: LogLevel::Info,
        message: message.into(),
    };
    assert_eq!(report.logs, [info("hello"), info("world"), info("last")]);

    let report = run(
        &step,
        json!({}),
        &Limits {
            max_events: 2,
            ..limits()
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);
}

#[test]
fn refused_imports_are_all_named_before_compiling() {
    let http = "package wasi:http@0.2.6;
        interface outgoing-handler { handle: func(request: u32) -> u32; }";
    let evil = "package evil:net;
        interface socket { connect: func(port: u32) -> u32; }";
    let world = "package test:evil;
        world evil-step {
            include weft:step/step@0.1.0;
            import wasi:http/outgoing-handler@0.2.6;
            import evil:net/socket;
        }";
    let imports = r#"
        (import "wasi:http/outgoing-handler@0.2.6" "handle" (func $handle (param i32) (result i32)))
        (import "evil:net/socket" "connect" (func $connect (param i32) (result i32)))"#;
    let bytes = encode(&module(
        &step_wat(
            imports,
            "",
            "(drop (call $handle (i32.const 1))) (drop (call $connect (i32.const 2))) unreachable",
        ),
        &[http, evil, world],
        "evil-step",
    ));

    let dir = tempfile::tempdir().unwrap();
    let own = Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let err = own
        .load_bytes(
            &bytes,
            "/steps/evil.wasm",
            &[Grant::Stdio, Grant::Clocks, Grant::Random],
        )
        .unwrap_err();
    let SandboxError::ImportsDenied { imports, .. } = &err else {
        panic!("{err:?}");
    };
    let names: Vec<&str> = imports.iter().map(|d| d.import.as_str()).collect();
    assert_eq!(
        names,
        ["wasi:http/outgoing-handler@0.2.6", "evil:net/socket"]
    );
    let message = err.to_string();
    assert!(
        message.starts_with("`/steps/evil.wasm` imports 2 interfaces steps cannot use:"),
        "{message}"
    );
    assert!(
        message.contains("`wasi:http/outgoing-handler@0.2.6` (steps have no HTTP access)")
            && message.contains("`evil:net/socket` (unknown interface"),
        "{message}"
    );
    // Refused before compiling: nothing was compiled, so nothing was cached.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_preview1_core_module_is_adapted_and_runs() {
    let imports = r#"
        (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))"#;
    let text = "hello from preview1\n";
    let data = format!("{HEX_FUNC} {}", data(3000, text));
    // One iovec at 1500 pointing at the text.
    let setup = format!(
        "(i32.store (i32.const 1500) (i32.const 3000)) (i32.store (i32.const 1504) (i32.const {}))",
        text.len()
    );
    let body = probe_body(
        &setup,
        &[
            "(i64.extend_i32_u (call $fd_write (i32.const 1) (i32.const 1500) (i32.const 1) (i32.const 1510)))",
            "(i64.extend_i32_u (call $random_get (i32.const 1400) (i32.const 8)))",
            "(i64.load (i32.const 1400))",
            "(i64.extend_i32_u (call $clock (i32.const 0) (i64.const 1) (i32.const 1408)))",
            "(i64.load (i32.const 1408))",
            "(i64.extend_i32_u (call $prestat (i32.const 3) (i32.const 1416)))",
        ],
    );
    // A core module with preview1 imports and the step world's metadata, as
    // clang + wasi-libc + wit-bindgen produce.
    let bytes = module(&step_wat(imports, &data, &body), &[], "step");
    let step = sandbox()
        .load_bytes(&bytes, "preview1.wasm", &[Grant::Stdio])
        .expect("a preview1 module is adapted at load");
    let report = step.run(&task(json!({})), &StepView::default(), &limits());
    let v = probed(&report);
    assert_eq!(v[0], 0, "fd_write succeeds");
    assert_eq!(v[1], 0, "random_get succeeds");
    assert_eq!(v[3], 0, "clock_time_get succeeds");
    // Through the adapter, the same deterministic stand-ins.
    assert_eq!(
        v[4],
        STARTED_AT.0 * 1_000,
        "the wall clock is the attempt's start"
    );
    let again = probed(&step.run(&task(json!({})), &StepView::default(), &limits()));
    assert_eq!(
        again[2], v[2],
        "the same attempt reads the same random bytes"
    );
    assert_eq!(v[5], 8, "fd 3 is no preopened directory (EBADF)");
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Info,
            message: "hello from preview1".into()
        }]
    );
}

#[test]
fn components_using_the_async_abi_are_refused_with_advice() {
    let bytes = wat::parse_str("(component (core func (canon task.cancel)))").unwrap();
    let err = sandbox().load_bytes(&bytes, "qjs.wasm", &[]).unwrap_err();
    assert!(matches!(err, SandboxError::Async { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`qjs.wasm`") && message.contains("`task.cancel`"),
        "{message}"
    );
    assert!(message.contains("build it synchronously"), "{message}");
}

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 4,
        ..SandboxConfig::default()
    };
    let bytes = echo_module();
    let artifacts = || -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("cache"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };

    let first = Sandbox::new(config.clone()).unwrap();
    let step = first.load_bytes(&bytes, "echo", &[]).unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Compiled);
    let files = artifacts();
    assert_eq!(files.len(), 1, "{files:?}");
    let artifact = files[0].clone();
    let file_name = artifact.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file_name.starts_with(&format!("{}-", step.content_hash())),
        "{file_name}"
    );
    assert!(file_name.ends_with(".cwasm"), "{file_name}");
    assert_eq!(
        first.load_bytes(&bytes, "echo", &[]).unwrap().loaded_from(),
        LoadedFrom::Memory
    );
    drop((step, first));

    let second = Sandbox::new(config.clone()).unwrap();
    let step = second.load_bytes(&bytes, "echo", &[]).unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Disk);
    assert_eq!(
        completed(&run(&step, json!({"cached": true}), &limits())),
        &json!({"cached": true})
    );

    // A corrupt artifact is recompiled and replaced. (Loaded artifacts are
    // mapped: a file is only ever replaced, never rewritten in place.)
    drop((step, second));
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"garbage").unwrap();
    std::fs::rename(&garbage, &artifact).unwrap();
    let third = Sandbox::new(config.clone()).unwrap();
    let step = third.load_bytes(&bytes, "echo", &[]).unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Compiled);
    assert_eq!(completed(&run(&step, json!([1]), &limits())), &json!([1]));
    assert_eq!(artifacts(), std::slice::from_ref(&artifact));
    assert_ne!(std::fs::read(&artifact).unwrap(), b"garbage");
    let fourth = Sandbox::new(config).unwrap();
    assert_eq!(
        fourth
            .load_bytes(&bytes, "echo", &[])
            .unwrap()
            .loaded_from(),
        LoadedFrom::Disk
    );
}

#[test]
fn a_component_file_is_hashed_once_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 4,
        ..SandboxConfig::default()
    };
    let file = dir.path().join("step.wasm");
    std::fs::write(&file, echo_module()).unwrap();
    let hashes = || {
        std::fs::read_dir(dir.path().join("cache/hashes"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let step = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&file, &[])
        .unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Compiled);
    // Written just now: a rewrite within the file system's timestamp
    // granularity could keep the same metadata, so the hash is not
    // remembered yet ("racily clean", as in git)...
    assert_eq!(hashes(), 0);
    // ...until the file's modification and change times, in whole seconds,
    // are more than 2 s before now (the cache's rule). That is real time
    // passing: the change time is set by the file system, and no process can
    // set it back, so there is no event to wait for. The test sleeps once,
    // until the second the rule is met, computed from the file's own times as
    // the cache reads them, and fails instead of hanging if the clock makes
    // that more than a few seconds away.
    let aged_at = {
        use std::os::unix::fs::MetadataExt as _;
        let times = std::fs::metadata(&file).unwrap();
        let newest = u64::try_from(times.mtime().max(times.ctime())).unwrap();
        std::time::UNIX_EPOCH + Duration::from_secs(newest + 3)
    };
    let wait = aged_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait <= Duration::from_secs(4),
        "{wait:?} to wait for the file to age: did the clock jump?"
    );
    std::thread::sleep(wait);
    let again = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&file, &[])
        .unwrap();
    assert_eq!(again.loaded_from(), LoadedFrom::Disk);
    assert_eq!(hashes(), 1, "the file's hash is remembered by its metadata");
    // A new process (sandbox): the hash comes from the metadata, the code
    // from the artifact.
    let warm = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&file, &[])
        .unwrap();
    assert_eq!(warm.loaded_from(), LoadedFrom::Disk);
    assert_eq!(warm.content_hash(), step.content_hash());
    // The file is rewritten (new content): hashed again, so the new content
    // is what runs.
    let (data, body) = completes_with(r#"{"other":true}"#);
    let other = step_module(&data, &body);
    std::fs::write(&file, &other).unwrap();
    let changed = Sandbox::new(config).unwrap().load_file(&file, &[]).unwrap();
    assert_ne!(changed.content_hash(), step.content_hash());
    assert_eq!(changed.loaded_from(), LoadedFrom::Compiled);
}

#[test]
fn components_keep_working_after_their_sandbox_is_dropped() {
    let own = Sandbox::new(SandboxConfig {
        max_instances: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let step = own
        .load_bytes(
            &step_module("", "(loop $l (br $l)) unreachable"),
            "loop",
            &[],
        )
        .unwrap();
    drop(own);
    let report = run(
        &step,
        json!({}),
        &Limits {
            deadline_ms: 20,
            ..Limits::default()
        },
    );
    failure(&report, FailureKind::Deadline);
}

#[test]
fn memory_limits_above_the_pool_are_rejected() {
    let limits = Limits {
        memory_bytes: 4 << 30,
        ..Limits::default()
    };
    let err = sandbox().check_limits(&limits).unwrap_err();
    assert!(matches!(err, SandboxError::MemoryLimit { .. }), "{err:?}");
    assert!(sandbox().check_limits(&Limits::default()).is_ok());
}

// ---------------------------------------------------------------------------
// The Rust `test-steps` guest: host imports
// ---------------------------------------------------------------------------

fn test_steps_path() -> PathBuf {
    crate::support::guest("test-steps")
}

fn test_steps() -> Arc<StepComponent> {
    sandbox()
        .load_file(&test_steps_path(), &[])
        .expect("test-steps loads")
}

fn view() -> StepView {
    let results: BTreeMap<StepId, Arc<Value>> =
        [(id("validate"), Arc::new(json!({"total_cents": 500})))]
            .into_iter()
            .collect();
    StepView {
        workflow_input: Arc::new(json!({"customer": "ada"})),
        state: Arc::new(json!({"committed": true})),
        results: Arc::new(results),
    }
}

fn run_test_step(input: Value, limits: &Limits) -> StepReport {
    test_steps().run(&task(input), &view(), limits)
}

#[test]
fn rust_guest_completes_fails_suspends_and_bails() {
    let report = run_test_step(
        json!({"action": "complete", "output": {"x": [1, 2]}}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!({"x": [1, 2]}));

    let report = run_test_step(
        json!({"action": "fail", "code": "card-declined", "message": "declined", "retryable": true,
               "details": {"limit": 5}, "causes": [{"code": "issuer", "message": "no", "details": [1]}]}),
        &limits(),
    );
    let error = failure(&report, FailureKind::Step);
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("card-declined", "declined")
    );
    assert!(error.retryable);
    assert_eq!(error.details, Some(json!({"limit": 5})));
    assert_eq!(error.causes.len(), 1);
    assert_eq!(error.causes[0].details, Some(json!([1])));

    let report = run_test_step(
        json!({"action": "suspend", "payload": {"why": "approval"}, "labels": ["manager"]}),
        &limits(),
    );
    assert_eq!(
        report.outcome,
        Ok(StepOutcome::Suspended {
            payload: json!({"why": "approval"}),
            labels: vec!["manager".into()]
        })
    );

    let report = run_test_step(json!({"action": "bail", "output": "done"}), &limits());
    assert_eq!(report.outcome, Ok(StepOutcome::Bailed(json!("done"))));

    let report = run_test_step(json!({"action": "invalid-json"}), &limits());
    failure(&report, FailureKind::InvalidOutput);
}

#[test]
fn rust_guest_sets_and_reads_state() {
    let report = run_test_step(
        json!({"action": "set-state", "state": {"n": 1}, "output": "ok"}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!("ok"));
    assert_eq!(report.state, Some(json!({"n": 1})));

    let report = run_test_step(json!({"action": "get-state"}), &limits());
    assert_eq!(completed(&report), &json!({"committed": true}));
    assert_eq!(report.state, None);

    // The state set by a failed attempt is reported (the caller discards it).
    let report = run_test_step(
        json!({"action": "set-state-then-fail", "state": [1]}),
        &limits(),
    );
    assert_eq!(failure(&report, FailureKind::Step).code, "after-state");
    assert_eq!(report.state, Some(json!([1])));

    // Over the state limit, the guest gets an error, and the attempt fails.
    let limits = Limits {
        max_state_bytes: 8,
        ..limits()
    };
    let report = run_test_step(
        json!({"action": "set-state", "state": {"big": "more than eight"}, "output": "ok"}),
        &limits,
    );
    let error = failure(&report, FailureKind::PayloadTooLarge);
    assert!(error.message.contains("state"), "{}", error.message);
    assert_eq!(report.state, None);
}

#[test]
fn rust_guest_emits_events_and_logs() {
    let events =
        json!([{"kind": "progress", "data": {"percent": 40}}, {"kind": "done", "data": null}]);
    let report = run_test_step(
        json!({"action": "emit", "events": events, "output": 1}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!(1));
    let kinds: Vec<(&str, &Value)> = report
        .events
        .iter()
        .map(|e| (e.kind.as_str(), &e.data))
        .collect();
    assert_eq!(
        kinds,
        [
            ("progress", &json!({"percent": 40})),
            ("done", &json!(null))
        ]
    );

    let report = run_test_step(
        json!({"action": "emit", "events": events}),
        &Limits {
            max_events: 1,
            ..limits()
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);
    assert_eq!(report.events.len(), 1);

    let big = json!([{"kind": "big", "data": "x".repeat(100)}]);
    let report = run_test_step(
        json!({"action": "emit", "events": big}),
        &Limits {
            max_event_bytes: 64,
            ..limits()
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);

    let report = run_test_step(
        json!({"action": "log", "level": "warn", "message": "careful"}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!(null));
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Warn,
            message: "careful".into()
        }]
    );
}

#[test]
fn rust_guest_reads_results_input_and_context() {
    let report = run_test_step(
        json!({"action": "step-result", "id": "validate"}),
        &limits(),
    );
    assert_eq!(completed(&report), &json!({"total_cents": 500}));
    for missing in ["other", "not an id!", ""] {
        let report = run_test_step(json!({"action": "step-result", "id": missing}), &limits());
        assert_eq!(completed(&report), &json!(null), "{missing}");
    }

    let report = run_test_step(json!({"action": "workflow-input"}), &limits());
    assert_eq!(completed(&report), &json!({"customer": "ada"}));

    let mut task = task(json!({"action": "context"}));
    task.attempt = 3;
    task.path = StepPath::root(&id("items")).iteration(2).child(&id("s"));
    task.idempotency_key = "run-1/items[2]/s".into();
    task.resume_payload = Some(json!({"approved": true}));
    task.suspend_payload = Some(json!("waiting"));
    task.iteration = Some(2);
    let report = test_steps().run(&task, &view(), &limits());
    assert_eq!(
        completed(&report),
        &json!({
            "run_id": "run-1", "workflow_id": "wf", "step_id": "s", "step_path": "items[2]/s",
            "attempt": 3, "idempotency_key": "run-1/items[2]/s",
            "resume_payload": {"approved": true}, "suspend_payload": "waiting", "iteration": 2
        })
    );
}

#[test]
fn rust_guest_panics_loops_and_grows_within_limits() {
    let report = run_test_step(json!({"action": "panic"}), &limits());
    let error = failure(&report, FailureKind::Trap);
    assert!(error.message.contains("unreachable"), "{}", error.message);

    // The guest loops forever: its deadline stops it (see `assert_on_time`
    // for the bounds).
    let started = Instant::now();
    let report = run_test_step(
        json!({"action": "loop"}),
        &Limits {
            deadline_ms: 100,
            ..limits()
        },
    );
    failure(&report, FailureKind::Deadline);
    assert_on_time(started.elapsed(), 100);

    let limits = Limits {
        memory_bytes: 32 << 20,
        ..limits()
    };
    let report = run_test_step(json!({"action": "grow", "mb": 4}), &limits);
    assert_eq!(completed(&report), &json!({"grown_mb": 4}));
    let report = run_test_step(json!({"action": "grow", "mb": 64}), &limits);
    failure(&report, FailureKind::Memory);

    let report = run_test_step(
        json!({"action": "big-output", "bytes": 100}),
        &Limits {
            max_output_bytes: 50,
            ..limits
        },
    );
    failure(&report, FailureKind::PayloadTooLarge);
}

#[test]
fn workflow_steps_load_every_component_and_run_by_step_id() {
    let def = |step: &str, component: String, memory_bytes: u64| StepDef {
        limits: Limits {
            memory_bytes,
            ..limits()
        },
        ..StepDef::new(id(step), component)
    };
    let workflow = |steps: Vec<StepDef>| {
        let flow = steps
            .iter()
            .map(|s| Node {
                id: s.id.clone(),
                kind: NodeKind::Step { step: s.id.clone() },
            })
            .collect();
        WorkflowBuilder {
            id: id("wf"),
            description: None,
            input_schema: None,
            output_schema: None,
            state_schema: None,
            initial_state: json!({}),
            steps: steps.into_iter().map(|s| (s.id.clone(), s)).collect(),
            flow,
        }
        .build()
        .unwrap()
    };
    let path = test_steps_path().display().to_string();

    let steps = WorkflowSteps::load(
        sandbox(),
        &workflow(vec![
            def("first", path.clone(), 64 << 20),
            def("second", path.clone(), 8 << 20),
        ]),
    )
    .unwrap();
    let mut second = task(json!({"action": "grow", "mb": 16}));
    second.step = id("second");
    failure(&steps.run(&second, &view()), FailureKind::Memory);
    let mut first = second.clone();
    first.step = id("first");
    assert_eq!(
        completed(&steps.run(&first, &view())),
        &json!({"grown_mb": 16})
    );
    let mut unknown = first.clone();
    unknown.step = id("unknown");
    failure(&steps.run(&unknown, &view()), FailureKind::Host);

    let err = WorkflowSteps::load(
        sandbox(),
        &workflow(vec![
            def("first", path.clone(), 64 << 20),
            def("missing", "/no/such.wasm".into(), 1 << 20),
        ]),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("step `missing`") && message.contains("/no/such.wasm"),
        "{message}"
    );

    let err =
        WorkflowSteps::load(sandbox(), &workflow(vec![def("huge", path, 8 << 30)])).unwrap_err();
    assert!(err.to_string().contains("step `huge`"), "{err}");
    assert!(
        matches!(err, SandboxError::Step { ref error, .. } if matches!(**error, SandboxError::MemoryLimit { .. }))
    );
}

#[test]
fn the_c_guest_echoes_and_prints_only_when_granted() {
    let path = crate::support::guest("c-echo");
    let input = json!({"order": 42, "tags": ["a", "b"]});
    let quiet = sandbox().load_file(&path, &[]).expect("c-echo loads");
    let report = run(&quiet, input.clone(), &limits());
    assert_eq!(completed(&report), &input);
    assert!(report.logs.is_empty(), "{:?}", report.logs);

    let loud = sandbox().load_file(&path, &[Grant::Stdio]).unwrap();
    let report = run(&loud, input.clone(), &limits());
    assert_eq!(completed(&report), &input);
    let len = input.to_string().len();
    assert_eq!(
        report.logs,
        [LogLine {
            level: LogLevel::Info,
            message: format!("c-echo: {len} bytes, attempt 1"),
        }]
    );
}
