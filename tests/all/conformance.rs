//! The conformance suite: every scenario under `tests/conformance/` runs
//! against the conformance guest of every language
//! (`guest-examples/dist/conformance-<lang>.wasm`, see
//! `guest-examples/CONFORMANCE.md`), on both runtimes, twice: with no grants
//! and with `stdio` + `clocks` + `random` added to every step.
//!
//! Scenarios have the parity harness's format (see `parity.rs`, whose
//! loading, running and comparison this reuses); a step whose `component` is
//! `conformance` runs the language's guest. `[expect]` may also say
//! `logs = { path = ["info message", …] }`: the log lines every attempt of
//! that path wrote, in order, on each runtime.
//!
//! For each language and grant set: the default and evented runtimes must
//! agree (as in the parity harness), the scenario's expectations must hold,
//! and every `probe` output is checked here: `env` is 0 and `random` 16 bytes
//! of hex; without grants the printed line is discarded, `wall_ms` is the
//! attempt's `step-started` time, `mono_ms` small, and a second run gives the
//! same observations (same `random`); with the grants the line reaches the run
//! log, the wall clock is the host's, and a second run's `random` differs.
//! Then each language's observations must equal the Rust guest's, but for
//! what a probe legitimately reads differently (`lang`, clocks, random).
//!
//! Rust's guest is always required; another language is required once
//! `guest-examples/build.sh` builds it (calls `./<lang>/build.sh` and
//! `guest-examples/<lang>/conformance/` exists): a required guest missing from
//! `dist/` fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use weft_core::{
    LogLine, RunId, StepOutcome, StepReport, StepRunner, StepTask, StepView, Timestamp,
};
use weft_runtime::EventedOptions;
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};

use crate::parity::{
    Observed, RUN_ID, Scenario, catch, check_expectations, compare, compare_runs, load_with,
    run_default, run_evented, run_parallel, scenario_paths,
};
use crate::support::{cache_dir, guest, root};

/// Every language a conformance guest may be written in.
const LANGS: [&str; 5] = ["rust", "python", "js", "c", "go"];

/// The grants of the second pass.
const GRANTS: [&str; 3] = ["stdio", "clocks", "random"];

/// A language's conformance guest.
pub(crate) fn component(lang: &str) -> PathBuf {
    root()
        .join("guest-examples/dist")
        .join(format!("conformance-{lang}.wasm"))
}

/// The files of the components a scenario names: `conformance` is `lang`'s
/// guest, others are the example guests.
fn components(lang: &str) -> impl Fn(&str) -> PathBuf {
    move |name| match name {
        "conformance" => component(lang),
        other => guest(other),
    }
}

/// The languages whose conformance guest `guest-examples/build.sh` builds.
pub(crate) fn required() -> Vec<&'static str> {
    let examples = root().join("guest-examples");
    let script = std::fs::read_to_string(examples.join("build.sh")).unwrap();
    LANGS
        .into_iter()
        .filter(|lang| {
            *lang == "rust"
                || (script
                    .lines()
                    .any(|line| line.trim() == format!("./{lang}/build.sh"))
                    && examples.join(lang).join("conformance").is_dir())
        })
        .collect()
}

/// One attempt a runtime ran.
struct Attempt {
    task: StepTask,
    report: StepReport,
}

/// Runs steps with the sandbox, keeping every attempt's task and report.
struct Recording {
    steps: Arc<WorkflowSteps>,
    attempts: Mutex<Vec<Attempt>>,
}

impl Recording {
    fn new(steps: &Arc<WorkflowSteps>) -> Arc<Self> {
        Arc::new(Self {
            steps: steps.clone(),
            attempts: Mutex::new(Vec::new()),
        })
    }

    /// The probe outputs, each with the attempt that produced it.
    fn probes(&self) -> Vec<(StepTask, Value, Vec<LogLine>)> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| match &a.report.outcome {
                Ok(StepOutcome::Completed(output)) if is_probe(output) => {
                    Some((a.task.clone(), output.clone(), a.report.logs.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The log lines of every attempt at `path`, in order, as `level message`.
    fn logs(&self, path: &str) -> Vec<String> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.task.path.to_string() == path)
            .flat_map(|a| &a.report.logs)
            .map(|line| {
                let level = serde_json::to_value(line.level).unwrap();
                format!("{} {}", level.as_str().unwrap(), line.message)
            })
            .collect()
    }
}

impl StepRunner for Recording {
    fn run(&self, task: &StepTask, view: &StepView) -> StepReport {
        let report = self.steps.run(task, view);
        self.attempts.lock().unwrap().push(Attempt {
            task: task.clone(),
            report: report.clone(),
        });
        report
    }
}

/// Whether `value` is a `probe` action's output.
fn is_probe(value: &Value) -> bool {
    value.as_object().is_some_and(|o| {
        ["lang", "wall_ms", "mono_ms", "random", "env"]
            .iter()
            .all(|k| o.contains_key(*k))
    })
}

/// Replaces, in every probe output inside `observed`, the fields `keys` by
/// a placeholder.
fn mask(mut observed: Observed, keys: &[&str]) -> Observed {
    fn walk(value: &mut Value, keys: &[&str]) {
        if is_probe(value) {
            for key in keys {
                value[*key] = Value::String(format!("({key})"));
            }
        }
        match value {
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, keys)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, keys)),
            _ => {}
        }
    }
    walk(&mut observed.result, keys);
    observed.events.iter_mut().for_each(|e| walk(e, keys));
    if let Ok(value) = &mut observed.outcome {
        walk(value, keys);
    }
    observed
}

/// What differs between the runtimes or two runs of one language: the
/// probe's wall clock (the attempt's start, or the host's clock), and with
/// the grants its monotonic clock and random bytes.
fn runtime_masked(seen: &[Observed], granted: bool) -> Vec<Observed> {
    let keys: &[&str] = if granted {
        &["wall_ms", "mono_ms", "random"]
    } else {
        &["wall_ms"]
    };
    seen.iter().cloned().map(|o| mask(o, keys)).collect()
}

/// What legitimately differs between languages: everything a probe reads.
fn language_masked(seen: &[Observed]) -> Vec<Observed> {
    let keys = ["lang", "wall_ms", "mono_ms", "random"];
    seen.iter().cloned().map(|o| mask(o, &keys)).collect()
}

fn ms(at: Timestamp) -> u64 {
    at.0 / 1000
}

/// Checks every probe a runtime ran.
fn check_probes(runtime: &str, recording: &Recording, lang: &str, granted: bool) {
    for (task, output, logs) in recording.probes() {
        let at = format!("{runtime}, {} attempt {}", task.path, task.attempt);
        assert_eq!(output["lang"], lang, "{at}: lang");
        assert_eq!(output["env"], 0, "{at}: the environment is empty");
        let random = output["random"].as_str().unwrap_or_default();
        assert!(
            random.len() == 32
                && random
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{at}: random is not 16 bytes of lowercase hex: {output}"
        );
        let wall = output["wall_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("{at}: wall_ms: {output}"));
        let mono = output["mono_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("{at}: mono_ms: {output}"));
        let printed = format!("probe from {lang}");
        if granted {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis();
            assert!(
                wall >= ms(task.started_at) && u128::from(wall) <= now,
                "{at}: the granted wall clock ({wall}) is not the host's (started at {}, now {now})",
                ms(task.started_at)
            );
            assert!(
                logs.iter()
                    .any(|l| l.message == printed
                        && serde_json::to_value(l.level).unwrap() == "info"),
                "{at}: `{printed}` did not reach the run log: {logs:?}"
            );
        } else {
            assert_eq!(
                wall,
                ms(task.started_at),
                "{at}: the wall clock is not the attempt's start"
            );
            assert!(
                mono < 1000,
                "{at}: the monotonic clock should start at 0: {mono} ms"
            );
            assert!(logs.is_empty(), "{at}: stdout is not discarded: {logs:?}");
        }
    }
}

/// Checks `expect.logs` against what a runtime's attempts logged.
fn check_logs(s: &Scenario, runtime: &str, recording: &Recording) {
    let Some(toml::Value::Table(want)) = s.expect.get("logs") else {
        return;
    };
    for (path, lines) in want {
        let want: Vec<&str> = lines
            .as_array()
            .expect("logs.<path> is an array")
            .iter()
            .map(|l| l.as_str().expect("a log line is a string"))
            .collect();
        assert_eq!(
            recording.logs(path),
            want,
            "{}: {runtime}: the log lines of {path}",
            s.path.display()
        );
    }
}

/// Runs one scenario against one language's guest on both runtimes, checks
/// it, and returns the default runtime's observations as the languages
/// compare them.
fn check_language(sandbox: &Sandbox, path: &Path, lang: &str, granted: bool) -> Vec<Observed> {
    let grants: &[&str] = if granted { &GRANTS } else { &[] };
    let s = load_with(path, components(lang), grants);
    let steps = Arc::new(WorkflowSteps::load(sandbox, s.manifest.workflow()).unwrap());
    let id = RunId::new(RUN_ID).unwrap();
    let first = Recording::new(&steps);
    let default = run_default(&s, first.clone(), &id);
    let default_masked = runtime_masked(&default, granted);
    check_probes("the default runtime", &first, lang, granted);
    check_logs(&s, "the default runtime", &first);
    let seeds: Vec<Option<u64>> = match s.seeds {
        None => vec![None],
        Some(n) => (0..n).map(Some).collect(),
    };
    for seed in seeds {
        let recording = Recording::new(&steps);
        let options = EventedOptions {
            reorder_seed: seed,
            ..EventedOptions::default()
        };
        let evented = run_evented(&s, recording.clone(), &id, options);
        compare(
            &s,
            seed,
            &default_masked,
            &runtime_masked(&evented, granted),
        );
        check_probes("the evented runtime", &recording, lang, granted);
        check_logs(&s, "the evented runtime", &recording);
    }
    check_expectations(&s, &default);

    // A second run of the same run id: the same, random included, unless
    // granted the real generators.
    let again = Recording::new(&steps);
    let second = run_default(&s, again.clone(), &id);
    check_probes("a second run", &again, lang, granted);
    if granted {
        let randoms = |r: &Recording| {
            r.probes()
                .into_iter()
                .map(|(_, output, _)| output["random"].clone())
                .collect::<Vec<_>>()
        };
        for (a, b) in randoms(&first).iter().zip(randoms(&again)) {
            assert_ne!(
                *a,
                b,
                "{}: granted random is the same on two runs",
                s.path.display()
            );
        }
    } else {
        compare_runs(
            &s,
            "the default runtime",
            "a second run on the default runtime",
            &default_masked,
            &runtime_masked(&second, granted),
        );
    }
    language_masked(&default)
}

#[test]
fn every_language_passes_the_conformance_scenarios_on_both_runtimes() {
    let paths = scenario_paths(&root().join("tests/conformance"));
    assert!(
        paths.len() >= 8,
        "only {} conformance scenarios",
        paths.len()
    );
    let required = required();
    let missing: Vec<String> = required
        .iter()
        .filter(|lang| !component(lang).exists())
        .map(|lang| component(lang).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "missing conformance guests (run ./guest-examples/build.sh): {}",
        missing.join(", ")
    );
    let langs: Vec<&str> = LANGS
        .into_iter()
        .filter(|lang| component(lang).exists())
        .collect();

    // Compile each guest once, up front (from the shared on-disk cache when
    // an earlier test run compiled it), not once per thread that needs it.
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(cache_dir()),
        ..SandboxConfig::default()
    })
    .unwrap();
    for lang in &langs {
        let started = Instant::now();
        let loaded = sandbox.load_file(&component(lang), &[]).unwrap();
        eprintln!(
            "conformance-{lang}: loaded in {:.2?} ({:?})",
            started.elapsed(),
            loaded.loaded_from()
        );
    }

    let mut items = Vec::new();
    for path in &paths {
        for granted in [false, true] {
            for lang in &langs {
                items.push((path.clone(), *lang, granted));
            }
        }
    }
    let seen = Mutex::new(BTreeMap::new());
    let describe = |(path, lang, granted): &(PathBuf, &str, bool)| {
        let grants = if *granted {
            "stdio+clocks+random"
        } else {
            "no grants"
        };
        format!("{} [{lang}, {grants}]", path.display())
    };
    let mut failures = run_parallel(&items, describe, |(path, lang, granted)| {
        catch(|| {
            let observed = check_language(&sandbox, path, lang, *granted);
            seen.lock()
                .unwrap()
                .insert((path.clone(), *granted, *lang), observed);
        })
    });

    // Every language as the Rust guest.
    let seen = seen.into_inner().unwrap();
    for path in &paths {
        for granted in [false, true] {
            let Some(rust) = seen.get(&(path.clone(), granted, "rust")) else {
                continue;
            };
            for lang in langs.iter().filter(|l| **l != "rust") {
                let Some(other) = seen.get(&(path.clone(), granted, *lang)) else {
                    continue;
                };
                let grants: &[&str] = if granted { &GRANTS } else { &[] };
                let s = load_with(path, components("rust"), grants);
                if let Err(message) = catch(|| {
                    compare_runs(
                        &s,
                        "conformance-rust",
                        &format!("conformance-{lang}"),
                        rust,
                        other,
                    );
                }) {
                    failures.push(format!(
                        "{}:\n{message}",
                        describe(&(path.clone(), lang, granted))
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance runs failed (languages: {}):\n\n{}",
        failures.len(),
        items.len(),
        langs.join(", "),
        failures.join("\n\n")
    );
}
