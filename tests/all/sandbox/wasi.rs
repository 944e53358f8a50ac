//! WASI: virtualised, deny-by-default — linked and inert without grants,
//! deterministic clocks and random numbers, stdout to the step log only when
//! granted, preview1 core modules adapted.

use serde_json::json;
use weft_core::{FailureKind, Grant, Limits, LogLevel, LogLine, StepReport, StepTask, StepView};

use super::wat_steps::{completes, completes_with, data, encode, module, step_wat};
use super::{STARTED_AT, completed, failure, limits, run, sandbox, task};

/// WASI 0.2.12 as wasmtime-wasi 48.0.8 links it (its WIT, copied into
/// `tests/wit/wasi`), in dependency order.
pub(super) const WASI_WIT: [&str; 6] = [
    include_str!("../../wit/wasi/io.wit"),
    include_str!("../../wit/wasi/clocks.wit"),
    include_str!("../../wit/wasi/random.wit"),
    include_str!("../../wit/wasi/filesystem.wit"),
    include_str!("../../wit/wasi/sockets.wit"),
    include_str!("../../wit/wasi/cli.wit"),
];

/// A step world that may import all of WASI's `wasi:cli/imports` (the
/// encoder keeps only the interfaces the module uses).
pub(super) const PROBE_WORLD: &str = "package test:probe;
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
