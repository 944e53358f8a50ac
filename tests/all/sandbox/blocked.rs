//! Issue 24, item 1, at the level of the component ABI: an attempt blocked
//! in a WASI host call ends at its deadline or when interrupted, not when the
//! call would return; a host allocation on the guest's behalf is capped.
//! (The same for every guest language's own sleep: `blocking.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::{FailureKind, Grant, Interrupt, Limits, StepReport, StepView};
use weft_sandbox::StepComponent;

use super::wasi::{PROBE_WORLD, WASI_WIT};
use super::wat_steps::{completes_with, module, step_wat};
use super::{failure, limits, run, sandbox, task};

/// A generous bound on how long an attempt blocked for a minute takes to
/// stop at a 200 ms deadline or an interrupt: on an idle machine it is a
/// millisecond past it; a loaded 2-core machine running the rest of the
/// suite can delay the attempt's thread by seconds, never by a minute.
const STOPPED_WITHIN: Duration = Duration::from_secs(30);

/// A step that blocks on a monotonic-clock pollable of `ms` milliseconds
/// (what Rust's `std::thread::sleep` does on wasip2), then completes.
fn sleeper(ms: u64, grants: &[Grant]) -> Arc<StepComponent> {
    let imports = r#"
        (import "wasi:clocks/monotonic-clock@0.2.12" "subscribe-duration" (func $subscribe (param i64) (result i32)))
        (import "wasi:io/poll@0.2.12" "[method]pollable.block" (func $block (param i32)))"#;
    let (data, done) = completes_with(r#"{"slept":true}"#);
    let body = format!(
        "(call $block (call $subscribe (i64.const {})))\n{done}",
        ms * 1_000_000
    );
    let mut packages: Vec<&str> = WASI_WIT.to_vec();
    packages.push(PROBE_WORLD);
    let bytes = module(&step_wat(imports, &data, &body), &packages, "probe");
    sandbox()
        .load_bytes(&bytes, "sleeper.wasm", grants)
        .expect("the sleeper loads")
}

#[track_caller]
fn assert_stopped(started: Instant, report: &StepReport, kind: FailureKind) {
    failure(report, kind);
    assert!(
        started.elapsed() < STOPPED_WITHIN,
        "stopped after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_sleep_ends_at_the_deadline_with_or_without_the_clocks_grant() {
    let limits = Limits {
        deadline_ms: 200,
        ..limits()
    };
    for grants in [&[][..], &[Grant::Clocks][..]] {
        let step = sleeper(60_000, grants);
        let started = Instant::now();
        let report = run(&step, json!({}), &limits);
        assert_stopped(started, &report, FailureKind::Deadline);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "never before the deadline: {:?}",
            started.elapsed()
        );
    }
    // A short sleep within the deadline completes: the clock is real time.
    let step = sleeper(20, &[]);
    let report = run(&step, json!({}), &limits);
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
}

#[test]
fn an_interrupt_stops_a_blocked_attempt() {
    let step = sleeper(60_000, &[]);
    let interrupt = Interrupt::new();
    let started = Instant::now();
    let running = {
        let (step, interrupt) = (Arc::clone(&step), interrupt.clone());
        std::thread::spawn(move || {
            step.run_until(
                &task(json!({})),
                &StepView::default(),
                &Limits {
                    deadline_ms: 120_000,
                    ..limits()
                },
                &interrupt,
            )
        })
    };
    // Whether it fires before the guest blocks or while it does, the
    // attempt ends interrupted, long before its sleep or deadline would.
    interrupt.fire();
    let report = running.join().expect("the attempt's thread");
    let error = failure(&report, FailureKind::Host);
    assert!(error.message.contains("interrupted"), "{}", error.message);
    assert!(
        started.elapsed() < STOPPED_WITHIN,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn random_bytes_come_at_most_one_mib_per_call() {
    let imports = r#"
        (import "wasi:random/random@0.2.12" "get-random-bytes" (func $bytes (param i64 i32)))"#;
    let step_asking = |len: u64| {
        let (data, done) = completes_with(r#"{"got":true}"#);
        // The list comes back at 4000 (pointer, length), in memory that
        // `cabi_realloc` grows as needed.
        let body = format!("(call $bytes (i64.const {len}) (i32.const 4000))\n{done}");
        let mut packages: Vec<&str> = WASI_WIT.to_vec();
        packages.push(PROBE_WORLD);
        let bytes = module(&step_wat(imports, &data, &body), &packages, "probe");
        sandbox()
            .load_bytes(&bytes, "random.wasm", &[])
            .expect("the step loads")
    };
    let report = run(&step_asking(1 << 20), json!({}), &limits());
    assert!(report.outcome.is_ok(), "1 MiB: {:?}", report.outcome);
    let report = run(&step_asking((1 << 20) + 1), json!({}), &limits());
    let error = failure(&report, FailureKind::Trap);
    assert!(
        error.message.contains("exceeds limit 1048576"),
        "{}",
        error.message
    );
}
