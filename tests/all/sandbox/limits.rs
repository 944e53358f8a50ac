//! Inline WAT edge cases: outputs, inputs and threads, then the limits —
//! traps, deadlines, memory, fuel, payload sizes, output that is not JSON —
//! and the sandbox's memory pool and lifetime.

use std::time::Instant;

use serde_json::json;
use weft_core::{FailureKind, Limits};
use weft_sandbox::{Sandbox, SandboxConfig, SandboxError};

use super::wat_steps::{
    completes_with, data, echo, happy_path, load, module, step_module, step_wat, trap,
};
use super::{assert_on_time, completed, failure, limits, run, sandbox};

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
