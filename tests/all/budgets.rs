//! Per-run budgets through the real `weft` binary, on both runtimes: a
//! foreach whose items each emit many large events (within the per-step
//! caps) fails with `run-limit` once the run would record past its budget;
//! the store stays bounded, what was recorded before is still there, and
//! `weft status` / `weft events` of the run read it in bounded memory.
//!
//! The step is an inline WAT component (`guest-examples/test-steps` has no
//! action emitting many large events): [`emitter`] emits `count` events of
//! `bytes` bytes of data each, then completes with `null`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sandbox::wat_steps::{completes, data, encode, module, step_wat};
#[cfg(target_os = "linux")]
use crate::support::PeakRss;
use crate::support::{stdout, weft};

/// A step component emitting `count` `blob` events whose data is a JSON
/// string of `bytes` bytes (`"xxx…"`), then completing with `null`.
fn emitter(count: u32, bytes: u32) -> Vec<u8> {
    assert!(bytes >= 2);
    let pages = bytes.div_ceil(1 << 16);
    let imports = r#"(import "weft:step/host@0.1.0" "emit" (func $emit (param i32 i32 i32 i32)))"#;
    let body = format!(
        "(local $buf i32) (local $i i32)
    (local.set $buf (memory.grow (i32.const {pages})))
    (if (i32.eq (local.get $buf) (i32.const -1)) (then unreachable))
    (local.set $buf (i32.mul (local.get $buf) (i32.const 65536)))
    (i32.store8 (local.get $buf) (i32.const 34))
    (memory.fill (i32.add (local.get $buf) (i32.const 1)) (i32.const 120) (i32.const {fill}))
    (i32.store8 (i32.add (local.get $buf) (i32.const {last})) (i32.const 34))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const {count})))
        (call $emit (i32.const 3000) (i32.const 4) (local.get $buf) (i32.const {bytes}))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    {done}",
        fill = bytes - 2,
        last = bytes - 1,
        done = completes("(i32.const 2048)", "(i32.const 4)"),
    );
    let data = format!("{} {}", data(2048, "null"), data(3000, "blob"));
    encode(&module(&step_wat(imports, &data, &body), &[], "step"))
}

/// A workflow in `dir`: a foreach over its input running the emitter,
/// with `run_limits` (TOML, e.g. `max-bytes = 1000`) if any.
fn workflow(dir: &Path, count: u32, bytes: u32, run_limits: &str) -> PathBuf {
    std::fs::write(dir.join("emit.wasm"), emitter(count, bytes)).unwrap();
    let manifest = dir.join("budget.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"budget\"\nflow = [{{ foreach = [{{ step = \"emit\" }}], id = \"items\" }}]\n\
             [run-limits]\n{run_limits}\n[steps.emit]\ncomponent = \"emit.wasm\"\n"
        ),
    )
    .unwrap();
    manifest
}

/// 30 items.
const ITEMS: &str =
    "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29]";

/// The store's files' total size (the database, and its log if any).
fn store_bytes(home: &Path) -> u64 {
    ["weft.db", "weft.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(home.join(name)).ok())
        .map(|m| m.len())
        .sum()
}

/// What `weft events RUN --json` lists, read as it prints (a big run's
/// events are not held): the custom events per address, the addresses
/// named, and the last two event types.
#[derive(Default)]
struct Listed {
    customs: std::collections::HashMap<String, usize>,
    paths: std::collections::HashSet<String>,
    last: Vec<String>,
}

impl Listed {
    /// Takes in one line of `weft events --json`.
    fn add(&mut self, line: &str) {
        let event: Value = serde_json::from_str(line).unwrap();
        let kind = event["type"].as_str().unwrap().to_owned();
        if let Some(path) = event["path"].as_str() {
            if kind == "custom" {
                *self.customs.entry(path.to_owned()).or_default() += 1;
            }
            self.paths.insert(path.to_owned());
        }
        self.last.insert(0, kind);
        self.last.truncate(2);
    }
}

/// `weft events RUN --json`, read as it prints.
fn listed(home: &Path, run: &str) -> Listed {
    use std::io::BufRead as _;
    let mut child = weft(home)
        .args(["events", run, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut listed = Listed::default();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        listed.add(&line.unwrap());
    }
    assert!(child.wait().unwrap().success());
    listed
}

/// Checks a run that failed at its budget: its result, and that the store
/// (as `weft events` lists it) holds every event of the items before the
/// one that crossed (whole) and none of that one's custom events. Returns
/// the index of that item.
fn failed_at_the_budget(
    home: &Path,
    run: &str,
    result: &Value,
    per_item: usize,
    events: &Listed,
) -> usize {
    assert_eq!(result["status"], "failed", "{result}");
    let error = &result["error"];
    assert_eq!(error["kind"], "run-limit", "{result}");
    assert_eq!(error["code"], "run-limit", "{result}");
    assert_eq!(error["details"]["budget"], "max-bytes", "{result}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("run-limits.max-bytes") && message.contains("Raise"),
        "{message}"
    );
    let step = error["step"].as_str().unwrap();
    let crossed: usize = step
        .strip_prefix("items[")
        .and_then(|rest| rest.strip_suffix("]/emit"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{step}"));
    assert!(crossed > 0, "the first item fit: {step}");

    for item in 0..crossed {
        let path = format!("items[{item}]/emit");
        assert_eq!(events.customs.get(&path), Some(&per_item), "{path}");
    }
    assert_eq!(events.customs.get(step), None);
    assert_eq!(events.last, ["run-failed", "step-failed"]);
    assert!(
        !events
            .paths
            .contains(&format!("items[{}]/emit", crossed + 1)),
        "an item after the one that crossed ran"
    );

    // `weft status` replays the run to the same result.
    let out = weft(home).args(["status", run, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(&status, result);
    crossed
}

#[test]
fn a_foreach_emitting_large_events_fails_at_its_run_budget_on_both_runtimes() {
    // Each item emits 200 events of 16,000 bytes (3.2 MB): 30 items would
    // store 96 MB; the budget is 16 MiB.
    for runtime in ["default", "evented"] {
        let home = tempfile::tempdir().unwrap();
        let manifest = workflow(home.path(), 200, 16_000, "max-bytes = 16777216");
        let run = format!("budget-{runtime}");
        let out = weft(home.path())
            .arg("run")
            .arg(&manifest)
            .args([
                "--runtime",
                runtime,
                "--json",
                "--run-id",
                &run,
                "--input",
                ITEMS,
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            crate::support::stderr(&out)
        );
        let result: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let events = listed(home.path(), &run);
        let crossed = failed_at_the_budget(home.path(), &run, &result, 200, &events);
        assert!(crossed >= 4, "{runtime}: crossed at item {crossed}");
        let stored = store_bytes(home.path());
        assert!(
            stored < 40 << 20,
            "{runtime}: the store holds {stored} bytes for a 16 MiB budget"
        );
    }
}

/// Runs `command` to its end, handing each line of its stdout to `line`:
/// its exit code and peak resident set size in bytes — the child's own high-water mark (`VmHWM`), sampled until
/// it exits and checked against `wait4`'s `ru_maxrss` (as
/// `sandbox/guest_data.rs` measures a child: `ru_maxrss` alone would count
/// this test process's memory, which a child spawned with vfork records
/// when it execs).
#[cfg(target_os = "linux")]
// The child is reaped by `wait4` (`PeakRss::reap`), which std's
// `Child::wait` would not let us call.
#[allow(clippy::zombie_processes)]
fn run_measuring_peak_rss(
    command: &mut std::process::Command,
    mut line: impl FnMut(&str),
) -> (Option<i32>, u64) {
    use std::io::BufRead as _;
    use std::process::Stdio;

    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft starts");
    let stdout = child.stdout.take().expect("piped");
    let peak = PeakRss::watch(&child);
    // Each line as it comes (the output of a big run is not held).
    for text in std::io::BufReader::new(stdout).split(b'\n') {
        line(&String::from_utf8_lossy(&text.expect("stdout reads")));
    }
    let (code, peak) = peak.reap();
    (code, peak)
}

/// The run of issue 24: a 30-item foreach whose items each emit 1,000
/// events of 64 KiB (the per-step caps), under weft's default budgets. It
/// used to store 1.9 GB, with `weft run` at 3.9 GiB and `weft status` at
/// 1.9 GiB; now it fails at 256 MiB, and `weft status` of it takes the
/// memory of one page of events plus the run's state.
#[cfg(target_os = "linux")]
#[test]
fn the_issue_24_foreach_fails_at_the_default_budget_in_bounded_memory() {
    let mib = |bytes: u64| bytes >> 20;
    // `kind` (4 bytes) plus data: exactly the default `max-event-bytes`.
    let bytes = (64 << 10) - 4;
    for runtime in ["default", "evented"] {
        let home = tempfile::tempdir().unwrap();
        let manifest = workflow(home.path(), 1_000, bytes, "");
        let run = format!("issue-24-{runtime}");
        let mut out = String::new();
        let (code, run_peak) = run_measuring_peak_rss(
            weft(home.path()).arg("run").arg(&manifest).args([
                "--runtime",
                runtime,
                "--json",
                "--run-id",
                &run,
                "--input",
                ITEMS,
            ]),
            |line| out.push_str(line),
        );
        assert_eq!(code, Some(1), "{out}");
        let result: Value = serde_json::from_str(&out).unwrap();
        let mut events = Listed::default();
        let (code, events_peak) =
            run_measuring_peak_rss(weft(home.path()).args(["events", &run, "--json"]), |line| {
                events.add(line)
            });
        assert_eq!(code, Some(0));
        let crossed = failed_at_the_budget(home.path(), &run, &result, 1_000, &events);
        let stored = store_bytes(home.path());
        eprintln!(
            "{runtime}: failed at item {crossed}, store {} MiB, peak RSS of `weft run` {} MiB, \
             of `weft events --json` {} MiB",
            mib(stored),
            mib(run_peak),
            mib(events_peak)
        );
        assert!(
            stored < 320 << 20,
            "{runtime}: the store holds {} MiB",
            mib(stored)
        );
        assert!(
            run_peak < 1_536 << 20,
            "{runtime}: `weft run` peaked at {} MiB",
            mib(run_peak)
        );
        // The human summary: every step line, then every custom event
        // (read again, a page at a time).
        let mut lines = 0usize;
        let (code, status_peak) =
            run_measuring_peak_rss(weft(home.path()).args(["status", &run]), |_| lines += 1);
        assert_eq!(code, Some(0));
        assert!(lines > crossed * 1_000, "{lines} lines");
        eprintln!(
            "{runtime}: peak RSS of `weft status` of the {} MiB store: {} MiB",
            mib(stored),
            mib(status_peak)
        );
        for (command, peak) in [("status", status_peak), ("events", events_peak)] {
            assert!(
                peak < 128 << 20,
                "{runtime}: `weft {command}` peaked at {} MiB",
                mib(peak)
            );
        }
    }
}
