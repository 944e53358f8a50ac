//! Unbounded guest data: errors and labels — huge messages, details,
//! causes and resume labels are payload too large, within the step's limits
//! and without the host's memory following the guest's; text that is not
//! UTF-8 is invalid output.

use std::sync::Arc;

use serde_json::{Value, json};
use weft_core::{FailureKind, Limits, StepOutcome, StepReport};
use weft_sandbox::StepComponent;

use super::wat_steps::{
    BIG, CAUSE_SIZE, Span, big_step, completes, data, encode, fails_with, fill_records, grow_for,
    load, span, step_module, store_span, suspends_with,
};
use super::{failure, limits, run};
#[cfg(target_os = "linux")]
use crate::support::PeakRss;

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
const BUDGET_MESSAGE: &str = "more in one call than its limits allow";

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
/// peak resident set size in bytes (see [`PeakRss`]).
#[cfg(target_os = "linux")]
// The child is reaped by `wait4` (`PeakRss::reap`), which std's
// `Child::wait` would not let us call.
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
    let peak = PeakRss::watch(&child);
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout reads");
    let err = errors.join().expect("no panic").expect("stderr reads");
    let (code, peak) = peak.reap();
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
