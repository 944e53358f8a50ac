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
    StepId, StepOutcome, StepPath, StepReport, StepRunner, StepTask, StepView, WorkflowBuilder,
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
    }
}

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
    assert!(
        elapsed >= Duration::from_millis(200),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(300),
        "stopped late: {elapsed:?}"
    );

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

const WASI_RANDOM: &str = "package wasi:random@0.2.6;
    interface random { get-random-u64: func() -> u64; }";

#[test]
fn an_ungranted_wasi_import_is_rejected_and_loads_with_its_grant() {
    let world = "package test:random;
        world random-step { include weft:step/step@0.1.0; import wasi:random/random@0.2.6; }";
    let imports =
        r#"(import "wasi:random/random@0.2.6" "get-random-u64" (func $random (result i64)))"#;
    let (data, done) = completes_with("true");
    let body = format!("(drop (call $random)) {done}");
    let bytes = encode(&module(
        &step_wat(imports, &data, &body),
        &[WASI_RANDOM, world],
        "random-step",
    ));

    let err = sandbox()
        .load_bytes(&bytes, "random.wasm", &[])
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::ImportNotGranted { import, grant: Grant::Random, .. }
            if import == "wasi:random/random@0.2.6"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`random.wasm` imports `wasi:random/random@0.2.6`"),
        "{message}"
    );
    assert!(message.contains("`random` grant"), "{message}");
    let err = sandbox()
        .load_bytes(&bytes, "random.wasm", &[Grant::Stdio, Grant::Clocks])
        .unwrap_err();
    assert!(
        matches!(err, SandboxError::ImportNotGranted { .. }),
        "{err:?}"
    );

    let step = sandbox()
        .load_bytes(&bytes, "random.wasm", &[Grant::Random])
        .expect("loads");
    assert_eq!(completed(&run(&step, json!({}), &limits())), &json!(true));
}

#[test]
fn granted_stdout_goes_to_the_step_log() {
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

    let err = sandbox()
        .load_bytes(&bytes, "stdout.wasm", &[])
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SandboxError::ImportNotGranted {
                grant: Grant::Stdio,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("`stdio` grant"), "{err}");

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
fn an_unknown_import_is_rejected_whatever_the_grants() {
    let evil = "package evil:net;
        interface socket { connect: func(port: u32) -> u32; }";
    let world = "package test:evil;
        world evil-step { include weft:step/step@0.1.0; import evil:net/socket; }";
    let imports =
        r#"(import "evil:net/socket" "connect" (func $connect (param i32) (result i32)))"#;
    let bytes = module(
        &step_wat(imports, "", "unreachable"),
        &[evil, world],
        "evil-step",
    );
    let err = sandbox()
        .load_bytes(
            &bytes,
            "/steps/evil.wasm",
            &[Grant::Stdio, Grant::Clocks, Grant::Random],
        )
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::ImportDenied { import, .. } if import == "evil:net/socket"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("`/steps/evil.wasm` imports `evil:net/socket`"),
        "{err}"
    );
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

    let started = Instant::now();
    let report = run_test_step(
        json!({"action": "loop"}),
        &Limits {
            deadline_ms: 100,
            ..limits()
        },
    );
    failure(&report, FailureKind::Deadline);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );

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
