//! The one table: every scenario of the Mastra comparison
//! (`shared/reference/perf-peer.md`) and every target of the performance
//! issue, measured in one process, printed as one Markdown table.
//!
//! Run with `cargo bench -p weft-cli --bench table` after
//! `./guest-examples/build.sh`; `-- --rounds N` (default 5) sets how many
//! times each row is measured (the cell is the median, with min–max), and
//! `-- seq parallel foreach suspend concurrent latency cold memory leases`
//! (any subset) selects sections.
//!
//! The step is the `echo` guest (Rust, returns its input) on the 100-byte
//! order object of perf-floor.md. Runtimes: `default` (in-memory store: the
//! runtime alone), `evented` with two step workers over the in-memory store
//! (orchestration alone), a SQLite file with `synchronous=NORMAL`, and one
//! with `synchronous=FULL` (weft's default). Every row that commits to a
//! SQLite file carries the latency of a 4 KiB `pwrite` + `fsync` on the same
//! file system measured just before and after it (the disk's flush latency
//! is bimodal on the reference VM: ~50 µs or ~4 ms); FULL figures are split
//! by the flush state each round met.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use weft_core::{ResumeTarget, RunId, RunStatus};
use weft_runtime::{Registered, Request};
use weft_sandbox::{Sandbox, SandboxConfig};

/// The sections, in table order; `-- seq cold` (any subset) runs only those.
type Section = fn(&mut Bench<'_>);
const SECTIONS: [(&str, Section); 9] = [
    ("seq", |b| b.sequences()),
    ("parallel", |b| b.parallel()),
    ("foreach", |b| b.foreach()),
    ("suspend", |b| b.suspend_resume()),
    ("concurrent", |b| b.concurrent()),
    ("latency", |b| b.latency()),
    ("cold", |b| b.cold()),
    ("memory", |b| b.memory()),
    ("leases", |b| b.leases()),
];

/// A flush at or above this is the disk's slow state.
const SLOW_FLUSH: Duration = Duration::from_millis(1);

/// One measured figure: its samples (one per round) and the flush latency
/// around each.
struct Figure {
    samples: Vec<f64>,
    /// fsync p50 before and after each round (durable rows only).
    flushes: Vec<(Duration, Duration)>,
}

impl Figure {
    fn sorted(values: &[f64]) -> Vec<f64> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v
    }

    fn median(&self) -> f64 {
        let v = Self::sorted(&self.samples);
        v[v.len() / 2]
    }

    fn cell(values: &[f64], decimals: usize) -> String {
        let v = Self::sorted(values);
        if v.len() == 1 {
            return format!("{:.*}", decimals, v[0]);
        }
        format!(
            "{:.*} ({:.*}–{:.*})",
            decimals,
            v[v.len() / 2],
            decimals,
            v[0],
            decimals,
            v[v.len() - 1]
        )
    }

    /// The samples split by the flush state their round met (a round
    /// whose probes disagree counts as slow).
    fn by_flush(&self) -> (Vec<f64>, Vec<f64>) {
        let mut fast = Vec::new();
        let mut slow = Vec::new();
        for (sample, (before, after)) in self.samples.iter().zip(&self.flushes) {
            if *before < SLOW_FLUSH && *after < SLOW_FLUSH {
                fast.push(*sample);
            } else {
                slow.push(*sample);
            }
        }
        (fast, slow)
    }

    fn flush_text(&self) -> String {
        if self.flushes.is_empty() {
            return "–".into();
        }
        let all: Vec<f64> = self
            .flushes
            .iter()
            .flat_map(|(b, a)| [us(*b), us(*a)])
            .collect();
        let v = Self::sorted(&all);
        format!("{:.0}–{:.0}", v[0], v[v.len() - 1])
    }
}

/// Measures `rounds` samples of `one` (each returns its figure), probing
/// the flush around each when `durable`.
fn measure(rounds: usize, durable: bool, dir: &Path, mut one: impl FnMut() -> f64) -> Figure {
    let mut samples = Vec::new();
    let mut flushes = Vec::new();
    for _ in 0..rounds {
        let before = durable.then(|| fsync_probe(dir).0);
        samples.push(one());
        if let Some(before) = before {
            flushes.push((before, fsync_probe(dir).0));
        }
    }
    Figure { samples, flushes }
}

struct Table;

impl Table {
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        scenario: &str,
        setup: &str,
        figure: &Figure,
        unit: &str,
        decimals: usize,
        mastra: &str,
        target: &str,
    ) {
        let cell = Figure::cell(&figure.samples, decimals);
        let line = format!(
            "| {scenario} | {setup} | {cell} {unit} | {} | {mastra} | {target} |",
            figure.flush_text()
        );
        println!("{line}");
    }

    /// A FULL row, one line per flush state met.
    #[allow(clippy::too_many_arguments)]
    fn full_rows(
        &mut self,
        scenario: &str,
        figure: &Figure,
        unit: &str,
        decimals: usize,
        mastra: &str,
        fast_target: &str,
        slow_target: &str,
    ) {
        let (fast, slow) = figure.by_flush();
        for (state, samples, target) in [("fast", fast, fast_target), ("slow", slow, slow_target)] {
            if samples.is_empty() {
                let line = format!(
                    "| {scenario} | evented, SQLite FULL, {state} flush | not met this run (every round met the other state) | – | {mastra} | {target} |"
                );
                println!("{line}");
                continue;
            }
            let part = Figure {
                flushes: figure
                    .samples
                    .iter()
                    .zip(&figure.flushes)
                    .filter(|(s, _)| samples.contains(s))
                    .map(|(_, f)| *f)
                    .collect(),
                samples,
            };
            self.row(
                scenario,
                &format!(
                    "evented, SQLite FULL, {state} flush ({} rounds)",
                    part.samples.len()
                ),
                &part,
                unit,
                decimals,
                mastra,
                target,
            );
        }
    }
}

/// The runtimes and stores of the table.
const SETUPS: [(bool, Store); 4] = [
    (false, Store::Memory),
    (true, Store::Memory),
    (true, Store::SqliteNormal),
    (true, Store::SqliteFull),
];

fn setup_name(evented: bool, store: Store) -> String {
    match (evented, store) {
        (false, _) => "default".into(),
        (true, store) => format!("evented, {}", store.name()),
    }
}

struct Bench<'a> {
    sandbox: &'a Sandbox,
    dir: &'a Path,
    rounds: usize,
    ids: Ids,
    table: Table,
}

impl Bench<'_> {
    fn runtime(&mut self, evented: bool, store: Store) -> Runtime {
        let name =
            format!("{}-{}", setup_name(evented, store), self.ids.next()).replace([' ', ','], "-");
        Runtime::new(evented, store.open(self.dir, &name))
    }

    /// µs per step of `runs` sequential runs of `steps` steps.
    fn sequence(&mut self, evented: bool, store: Store, steps: usize, runs: u32) -> Figure {
        let workflow = registered(self.sandbox, &sequence_manifest(steps));
        let runtime = self.runtime(evented, store);
        for _ in 0..5 {
            runtime.run(&workflow, self.ids.next(), order());
        }
        let ids = &mut self.ids;
        measure(self.rounds, store.durable(), self.dir, || {
            let t = Instant::now();
            for _ in 0..runs {
                runtime.run(&workflow, ids.next(), order());
            }
            us(t.elapsed()) / (f64::from(runs) * steps as f64)
        })
    }

    fn sequences(&mut self) {
        // Warm the machine up (caches, the instance pool, the CPU's clock)
        // before the first row, which otherwise measures it.
        let warm = registered(self.sandbox, &sequence_manifest(10));
        let runtime = self.runtime(false, Store::Memory);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(1) {
            runtime.run(&warm, self.ids.next(), order());
        }
        let ten = self.sequence(false, Store::Memory, 10, 200);
        self.table
            .row("seq-10", "default", &ten, "µs/step", 1, "–", "≤ 10 µs/step");
        let hundred = self.sequence(false, Store::Memory, 100, 20);
        self.table.row(
            "seq-100",
            "default",
            &hundred,
            "µs/step",
            1,
            "227 µs/step",
            &format!(
                "≤ 10 µs/step, flat (÷ seq-10: {:.2})",
                hundred.median() / ten.median()
            ),
        );
        let default = hundred.median();
        let memory = self.sequence(true, Store::Memory, 100, 20);
        self.table.row(
            "seq-100",
            "evented, memory",
            &memory,
            "µs/step",
            1,
            "773 µs/step",
            &format!("≤ 1.5× default ({:.2}×)", memory.median() / default),
        );
        let normal = self.sequence(true, Store::SqliteNormal, 100, 10);
        self.table.row(
            "seq-100",
            "evented, SQLite NORMAL",
            &normal,
            "µs/step",
            1,
            "1,996 µs/step (LibSQL, NORMAL)",
            "≤ 60 µs/step",
        );
        let full = self.sequence(true, Store::SqliteFull, 100, 5);
        self.table.full_rows(
            "seq-100",
            &full,
            "µs/step",
            1,
            "1,996 µs/step (LibSQL, NORMAL)",
            "–",
            "–",
        );
    }

    fn parallel(&mut self) {
        let workflow = registered(self.sandbox, &parallel_manifest());
        let mastra = [
            "352 runs/s",
            "146 runs/s",
            "58 runs/s (LibSQL)",
            "58 runs/s (LibSQL)",
        ];
        for ((evented, store), mastra) in SETUPS.into_iter().zip(mastra) {
            let runtime = self.runtime(evented, store);
            for _ in 0..20 {
                runtime.run(&workflow, self.ids.next(), order());
            }
            let runs = 200;
            let ids = &mut self.ids;
            let figure = measure(self.rounds, store.durable(), self.dir, || {
                let t = Instant::now();
                for _ in 0..runs {
                    runtime.run(&workflow, ids.next(), order());
                }
                f64::from(runs) / t.elapsed().as_secs_f64()
            });
            self.table.row(
                "parallel-10 + join",
                &setup_name(evented, store),
                &figure,
                "runs/s",
                0,
                mastra,
                "–",
            );
        }
    }

    fn foreach(&mut self) {
        for concurrency in [1u32, 10] {
            let workflow = registered(self.sandbox, &foreach_manifest(concurrency));
            for (evented, store) in SETUPS {
                let runtime = self.runtime(evented, store);
                runtime.run(&workflow, self.ids.next(), items(100));
                let input = items(1_000);
                let ids = &mut self.ids;
                let figure = measure(self.rounds, store.durable(), self.dir, || {
                    us(runtime.run(&workflow, ids.next(), input.clone())) / 1_000.0
                });
                let mastra = if evented {
                    "never finishes (~n^3.3)"
                } else {
                    "100–140 µs/item"
                };
                self.table.row(
                    &format!("foreach-1000, c={concurrency}"),
                    &setup_name(evented, store),
                    &figure,
                    "µs/item",
                    1,
                    mastra,
                    "–",
                );
            }
        }
    }

    /// Start a run that suspends, resume it, to its end: ms per cycle.
    fn suspend_resume(&mut self) {
        let component = echo().with_file_name("test-steps.wasm");
        let workflow = registered(
            self.sandbox,
            &format!(
                "id = \"bench-suspend\"\nflow = [{{ step = \"approve\" }}]\n[steps.approve]\ncomponent = \"{}\"\n",
                component.display()
            ),
        );
        let input = json!({"action": "suspend", "payload": {"amount": 120}, "labels": ["approve"]});
        let mastra = ["1.06 ms", "2.14 ms", "7.43 ms (LibSQL)", "7.43 ms (LibSQL)"];
        for ((evented, store), mastra) in SETUPS.into_iter().zip(mastra) {
            let runtime = self.runtime(evented, store);
            let cycles = 100;
            let one_cycle = |ids: &mut Ids| {
                let id = ids.next();
                let (suspended, resumed) = cycle(&runtime, &workflow, &id, &input);
                assert_eq!(suspended, RunStatus::Suspended);
                assert_eq!(resumed, RunStatus::Success);
            };
            for _ in 0..5 {
                one_cycle(&mut self.ids);
            }
            let ids = &mut self.ids;
            let figure = measure(self.rounds, store.durable(), self.dir, || {
                let t = Instant::now();
                for _ in 0..cycles {
                    one_cycle(ids);
                }
                us(t.elapsed()) / 1_000.0 / f64::from(cycles)
            });
            self.table.row(
                "suspend → resume → done",
                &setup_name(evented, store),
                &figure,
                "ms",
                3,
                mastra,
                "–",
            );
        }
    }

    /// 100 runs of 10 steps submitted at once (the default runtime drives
    /// them on its pool, one thread per core): steps/s.
    fn concurrent(&mut self) {
        let workflow = registered(self.sandbox, &sequence_manifest(10));
        let mastra = [
            "9,097 steps/s",
            "3,450 steps/s",
            "649 steps/s (LibSQL)",
            "649 steps/s (LibSQL)",
        ];
        for ((evented, store), mastra) in SETUPS.into_iter().zip(mastra) {
            let runtime = self.runtime(evented, store);
            let batch = |ids: &mut Ids| {
                let t = Instant::now();
                runtime.run_all(&workflow, (0..100).map(|_| ids.next()).collect(), &order());
                1_000.0 / t.elapsed().as_secs_f64()
            };
            batch(&mut self.ids);
            let rounds = if store == Store::SqliteFull {
                // Both flush states, if the disk switches during the bench.
                self.rounds * 3
            } else {
                self.rounds
            };
            let ids = &mut self.ids;
            let figure = measure(rounds, store.durable(), self.dir, || batch(ids));
            if store == Store::SqliteFull {
                self.table.full_rows(
                    "100 × 10-step concurrent",
                    &figure,
                    "steps/s",
                    0,
                    mastra,
                    "≥ 30,000 steps/s",
                    "≥ 10,000 steps/s",
                );
            } else {
                self.table.row(
                    "100 × 10-step concurrent",
                    &format!(
                        "{}{}",
                        setup_name(evented, store),
                        if evented { "" } else { " (1 thread)" }
                    ),
                    &figure,
                    "steps/s",
                    0,
                    mastra,
                    "–",
                );
            }
        }
    }

    /// 3-step runs one at a time, start to result: p50 and p99 over all
    /// rounds' runs.
    fn latency(&mut self) {
        let workflow = registered(self.sandbox, &sequence_manifest(3));
        for (evented, store) in SETUPS {
            let runtime = self.runtime(evented, store);
            for _ in 0..20 {
                runtime.run(&workflow, self.ids.next(), order());
            }
            let mut all = Vec::new();
            let ids = &mut self.ids;
            let figure = measure(self.rounds, store.durable(), self.dir, || {
                let mut times: Vec<Duration> = (0..200)
                    .map(|_| runtime.run(&workflow, ids.next(), order()))
                    .collect();
                times.sort();
                all.extend_from_slice(&times);
                us(times[times.len() / 2]) / 1_000.0
            });
            all.sort();
            let p99 = us(all[all.len() * 99 / 100]) / 1_000.0;
            self.table.row(
                "3-step run p50 (p99 of all rounds)",
                &setup_name(evented, store),
                &figure,
                &format!("ms (p99 {p99:.3} ms)"),
                3,
                "–",
                if evented && store == Store::SqliteFull {
                    "p50 ≤ 1 ms"
                } else {
                    "–"
                },
            );
        }
    }

    /// A `weft run` process of 3 steps, warm compile cache: wall time and
    /// peak RSS.
    fn cold(&mut self) {
        let home = self.dir.join("home");
        let manifest = self.dir.join("three.toml");
        std::fs::write(&manifest, sequence_manifest(3)).expect("manifest");
        let input = order().to_string();
        for runtime in ["default", "evented"] {
            // The first run compiles the component into the cache.
            let db = self.dir.join(format!("cold-{runtime}.db"));
            let run = |dbs: &Path| {
                let (ok, peak, wall) = measure_weft_run(&home, &manifest, runtime, dbs, &input);
                assert!(ok, "weft run --runtime {runtime} failed");
                (peak, wall)
            };
            run(&db);
            let mut peaks = Vec::new();
            let figure = measure(self.rounds, true, self.dir, || {
                let (peak, wall) = run(&db);
                peaks.push(peak as f64 / (1024.0 * 1024.0));
                us(wall) / 1_000.0
            });
            self.table.row(
                "cold `weft run`, 3 steps, warm cache",
                &format!("{runtime}, SQLite FULL"),
                &figure,
                "ms",
                1,
                "1,050–1,480 ms",
                if runtime == "evented" {
                    "≤ 15 ms"
                } else {
                    "–"
                },
            );
            let rss = Figure {
                samples: peaks,
                flushes: Vec::new(),
            };
            self.table.row(
                "peak RSS of that process",
                &format!("{runtime}, SQLite FULL"),
                &rss,
                "MiB",
                1,
                "158–184 MB",
                "–",
            );
        }
    }
}

impl Bench<'_> {
    /// Memory: 10,000 runs suspended at once in this process (what each
    /// costs once suspended), and the peak RSS of a `weft run` process
    /// running a 100,000-item foreach (concurrency 16), on each runtime.
    fn memory(&mut self) {
        let suspended = suspend_many(self.sandbox, self.dir, 10_000);
        let growth = Figure {
            // Signed: freeing the burst may leave less resident than before.
            samples: vec![
                (suspended.after as f64 - suspended.before as f64) / f64::from(suspended.runs),
            ],
            flushes: Vec::new(),
        };
        self.table.row(
            "10,000 runs suspended at once, resident memory each once suspended",
            "evented, SQLite NORMAL, one process",
            &growth,
            &format!("B (burst: {:.1} s)", suspended.wall.as_secs_f64()),
            0,
            "–",
            "≈ 0: a suspended run lives in the store",
        );
        let home = self.dir.join("home");
        let manifest = self.dir.join("foreach-16.toml");
        std::fs::write(&manifest, foreach_manifest(16)).expect("manifest");
        let input = self.dir.join("items-100000.json");
        std::fs::write(&input, items(100_000).to_string()).expect("input");
        let input = format!("@{}", input.display());
        for runtime in ["default", "evented"] {
            let db = self.dir.join(format!("foreach-{runtime}.db"));
            let before = fsync_probe(self.dir).0;
            let (ok, peak, wall) = measure_weft_run(&home, &manifest, runtime, &db, &input);
            let after = fsync_probe(self.dir).0;
            assert!(ok, "weft run --runtime {runtime} of 100,000 items failed");
            let figure = Figure {
                samples: vec![peak as f64 / (1024.0 * 1024.0)],
                flushes: vec![(before, after)],
            };
            self.table.row(
                "foreach of 100,000 items (c=16): peak RSS of the `weft run` process",
                &format!("{runtime}, SQLite FULL"),
                &figure,
                &format!("MiB (wall {:.1} s)", wall.as_secs_f64()),
                1,
                "never finishes 1,000 items (evented)",
                "–",
            );
        }
    }
}

impl Bench<'_> {
    /// What leases cost (SQLite FULL, where each is a commit): one renewal
    /// of everything an owner holds (1 run, 1,000 runs), and its share of
    /// a process's time at the default renewal period (10 s ttl / 3); and
    /// the takeover of a run whose owner is gone (one `acquire`).
    fn leases(&mut self) {
        use weft_core::{Owner, Takeover};
        let store = Store::SqliteFull;
        let period = Duration::from_secs(10) / 3;
        let owner = |id: &str| Owner {
            id: id.to_owned(),
            ttl: Duration::from_secs(10),
        };
        let workflow = registered(self.sandbox, &sequence_manifest(1));
        for held in [1_usize, 1_000] {
            let db = store.open(self.dir, &format!("leases-{held}-{}", self.ids.next()));
            let me = owner("bench-owner");
            for _ in 0..held {
                create(&*db, &workflow, &self.ids.next(), &me);
            }
            let figure = measure(self.rounds, true, self.dir, || {
                let t = Instant::now();
                for _ in 0..10 {
                    assert_eq!(db.renew(&me).expect("renew").len(), held);
                }
                t.elapsed().as_secs_f64() * 1e6 / 10.0
            });
            let share = figure.median() / period.as_secs_f64() / 1e6 * 100.0;
            self.table.row(
                &format!("lease renewal, an owner holding {held} run(s) ({share:.4} % of its time every 3.3 s)"),
                "SQLite FULL",
                &figure,
                "µs",
                1,
                "–",
                "≤ 1 % of a durable 100-step run",
            );
        }
        let db = store.open(self.dir, &format!("takeover-{}", self.ids.next()));
        let ids: Vec<RunId> = (0..self.rounds * 100).map(|_| self.ids.next()).collect();
        for id in &ids {
            create(&*db, &workflow, id, &owner("dead-owner"));
        }
        let mut chunks = ids.chunks(100);
        let figure = measure(self.rounds, true, self.dir, || {
            let chunk = chunks.next().expect("a chunk per round");
            let t = Instant::now();
            for id in chunk {
                db.acquire(id, &owner("heir"), Takeover::From("dead-owner"))
                    .expect("takeover");
            }
            t.elapsed().as_secs_f64() * 1e6 / chunk.len() as f64
        });
        self.table.row(
            "takeover of a run whose owner is proven gone (one acquire)",
            "SQLite FULL",
            &figure,
            "µs",
            1,
            "–",
            "– (otherwise: ≤ ttl after its last renewal)",
        );
    }
}

/// Creates run `id` of `workflow` (its `run-started` only), leased to `owner`.
fn create(
    db: &dyn weft_core::EventStore,
    workflow: &Registered,
    id: &RunId,
    owner: &weft_core::Owner,
) {
    let first = weft_core::Event::RunStarted {
        run: id.clone(),
        workflow: workflow.workflow.id().clone(),
        input: order(),
        state: json!({}),
        at: weft_core::Timestamp(1),
        origin: None,
    };
    db.create_run(&workflow.meta(id), &[first], owner, None)
        .expect("create");
}

/// Starts a run that suspends, then resumes it; the two statuses.
fn cycle(
    runtime: &Runtime,
    workflow: &Arc<Registered>,
    id: &RunId,
    input: &Value,
) -> (RunStatus, RunStatus) {
    let first = runtime.call(Request::Start {
        workflow: Arc::clone(workflow),
        run: id.clone(),
        input: input.clone(),
        detach: false,
    });
    let second = runtime.call(Request::Resume {
        workflow: Arc::clone(workflow),
        run: id.clone(),
        target: ResumeTarget::Only,
        payload: json!({"approved": true}),
    });
    (first.status, second.status)
}

fn main() {
    let Some(args) = bench_args() else {
        return;
    };
    let rounds = option(&args, "rounds").unwrap_or(5);
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    // Beside the target directory (on the same file system as a real
    // store would be), not in a tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "commit {commit}; {rounds} rounds per row; load average at start {}; fsync probe (4 KiB pwrite + fsync, p50 / p99) in {}: {} µs\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        dir.path().display(),
        probe_text(fsync_probe(dir.path()))
    );
    println!(
        "| scenario | runtime, store | weft: median (min–max) | fsync p50 µs around it | Mastra (perf-peer.md) | target |"
    );
    println!("|---|---|---:|---:|---:|---|");
    let mut bench = Bench {
        sandbox: &sandbox,
        dir: dir.path(),
        rounds,
        ids: Ids(0),
        table: Table,
    };
    let names: Vec<&str> = SECTIONS.iter().map(|(name, _)| *name).collect();
    for (name, section) in SECTIONS {
        if wanted(&args, &names, name) {
            section(&mut bench);
        }
    }
    println!(
        "\npeak RSS of this bench process (every scenario above): {:.1} MiB",
        own_memory("VmHWM") as f64 / (1024.0 * 1024.0)
    );
}
