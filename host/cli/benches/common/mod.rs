//! What the bench binaries share: the `echo` guest's workflows, the
//! runtimes and stores under measurement, the fsync probe, peak-RSS helpers.
// Each bench binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest as _;
use weft_core::{EventStore, RunId, RunStatus};
use weft_manifest::Manifest;
use weft_runtime::SystemClock;
use weft_runtime::{LeaseOptions, MemoryStore, NoObserver, Registered, Request, RuntimeKind};
use weft_sandbox::{Sandbox, WorkflowSteps};
use weft_store_sqlite::{Durability, SqliteStore};

pub fn echo() -> PathBuf {
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-examples/dist/echo.wasm");
    assert!(echo.exists(), "run ./guest-examples/build.sh first");
    echo
}

pub fn foreach_manifest(concurrency: u32) -> String {
    format!(
        "id = \"bench-foreach\"\n\
         flow = [{{ foreach = [{{ step = \"echo\" }}], concurrency = {concurrency}, id = \"items\" }}]\n\
         [steps.echo]\ncomponent = \"{}\"\n",
        echo().display()
    )
}

pub fn parallel_manifest() -> String {
    let parts: Vec<String> = (0..10)
        .map(|i| format!("{{ step = \"echo\", id = \"p{i}\" }}"))
        .collect();
    format!(
        "id = \"bench-parallel\"\n\
         flow = [{{ parallel = [{}], id = \"fan\" }}, {{ step = \"echo\", id = \"join\" }}]\n\
         [steps.echo]\ncomponent = \"{}\"\n",
        parts.join(", "),
        echo().display()
    )
}

pub fn registered(sandbox: &Sandbox, text: &str) -> Arc<Registered> {
    let manifest = Manifest::from_toml_str(text, Path::new("bench.toml")).expect("manifest");
    let runner = WorkflowSteps::load(sandbox, manifest.workflow()).expect("components");
    Arc::new(Registered {
        workflow: manifest.workflow().clone(),
        runner: Arc::new(runner),
        manifest: "bench.toml".into(),
        manifest_sha256: String::new(),
        workflow_digest: None,
    })
}

pub fn items(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!(i)).collect())
}

/// p50 and p99 of 200 overwrites of one 4 KiB block followed by `fsync`,
/// on the file system of `dir`.
pub fn fsync_probe(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .expect("probe file");
    let block = [0x5a_u8; 4096];
    file.write_all_at(&block, 0).expect("pwrite");
    file.sync_all().expect("fsync");
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            file.write_all_at(&block, 0).expect("pwrite");
            file.sync_all().expect("fsync");
            t.elapsed()
        })
        .collect();
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// "p50 / p99" of a probe in µs.
pub fn probe_text((p50, p99): (Duration, Duration)) -> String {
    format!("{:.0} / {:.0}", us(p50), us(p99))
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Which store a case runs on.
#[derive(Clone, Copy, PartialEq)]
pub enum Store {
    Memory,
    SqliteFull,
    SqliteNormal,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::SqliteFull => "SQLite FULL",
            Self::SqliteNormal => "SQLite NORMAL",
        }
    }

    /// Whether its figures depend on the disk's flush latency.
    pub fn durable(self) -> bool {
        self != Self::Memory
    }

    pub fn open(self, dir: &Path, name: &str) -> Arc<dyn EventStore> {
        match self {
            Self::Memory => Arc::new(MemoryStore::new()),
            Self::SqliteFull | Self::SqliteNormal => {
                let durability = if self == Self::SqliteFull {
                    Durability::Full
                } else {
                    Durability::Normal
                };
                let path = dir.join(format!("{name}.db"));
                Arc::new(SqliteStore::open_with(&path, durability).expect("store"))
            }
        }
    }
}

/// A runtime under measurement (either configuration, through the one
/// `weft_runtime::Runtime` interface): runs one run to its end.
pub struct Runtime(pub Box<dyn weft_runtime::Runtime>);

impl Runtime {
    pub fn new(evented: bool, store: Arc<dyn EventStore>) -> Self {
        let kind = if evented {
            RuntimeKind::Evented
        } else {
            RuntimeKind::Default
        };
        // As `weft run`: one worker per core (2 here).
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        Self(kind.build(
            store,
            Arc::new(SystemClock),
            workers,
            LeaseOptions::default(),
        ))
    }

    pub fn name(&self) -> &'static str {
        self.0.kind().name()
    }

    /// Carries out `request` and waits for its result.
    pub fn call(&self, request: Request) -> weft_core::RunResult {
        self.0.call(request, &mut NoObserver).expect("request")
    }

    /// Runs `workflow` once per id, all submitted at once (the evented
    /// runtime's workers, or the default runtime's pool of run threads,
    /// one per core), each to its end.
    pub fn run_all(&self, workflow: &Arc<Registered>, ids: Vec<RunId>, input: &Value) {
        let answers: Vec<_> = ids
            .into_iter()
            .map(|run| {
                self.0.submit(
                    Request::Start {
                        workflow: Arc::clone(workflow),
                        run,
                        input: input.clone(),
                        detach: false,
                    },
                    None,
                )
            })
            .collect();
        for answer in answers {
            let result = answer.recv().expect("an answer").expect("run");
            assert_eq!(result.status, RunStatus::Success);
        }
    }

    /// Runs `workflow` on `input` to its end; returns the wall time.
    pub fn run(&self, workflow: &Arc<Registered>, id: RunId, input: Value) -> Duration {
        let t = Instant::now();
        let request = Request::Start {
            workflow: Arc::clone(workflow),
            run: id,
            input,
            detach: false,
        };
        let status = self.0.call(request, &mut NoObserver).expect("run").status;
        let elapsed = t.elapsed();
        assert_eq!(status, RunStatus::Success);
        elapsed
    }
}

pub struct Ids(pub u64);

impl Ids {
    pub fn next(&mut self) -> RunId {
        self.0 += 1;
        RunId::new(&format!("bench-{}", self.0)).expect("id")
    }
}

/// Runs `command` to its end; returns whether it succeeded and its peak resident set size in bytes (from `wait4`).
#[allow(unsafe_code)]
// The child is reaped by `wait4`, which std's `Child::wait` would not let us call.
#[allow(clippy::zombie_processes)]
pub fn run_measuring_peak_rss(command: &mut Command) -> (bool, u64) {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft starts");
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
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // Linux reports kibibytes.
    let peak = u64::try_from(usage.ru_maxrss).expect("a size") * 1024;
    (ok, peak)
}

pub fn registered_file(sandbox: &Sandbox, path: &Path) -> Arc<Registered> {
    let manifest = Manifest::load(path).expect("manifest");
    let runner = WorkflowSteps::load(sandbox, manifest.workflow()).expect("components");
    Arc::new(Registered {
        workflow: manifest.workflow().clone(),
        runner: Arc::new(runner),
        manifest: path.display().to_string(),
        manifest_sha256: hex::encode(sha2::Sha256::digest(manifest.text())),
        // Unpinned (as runs recorded before locks): `weft recover` loads
        // the manifest from its path.
        workflow_digest: None,
    })
}

/// A line of this process's `/proc/self/status` (e.g. `VmRSS`), in bytes.
pub fn own_memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("a kB figure")
        * 1024
}

/// The `--rss-of CMD…` mode of a bench binary (see [`measure_process`]):
/// runs the command, prints `ok|failed PEAK_BYTES WALL_MICROS`. Returns
/// whether `args` asked for it.
pub fn rss_helper(args: &[String]) -> bool {
    if args.first().is_none_or(|a| a != "--rss-of") {
        return false;
    }
    let t = Instant::now();
    let (ok, peak) = run_measuring_peak_rss(Command::new(&args[1]).args(&args[2..]));
    let wall = t.elapsed();
    println!(
        "{} {peak} {}",
        if ok { "ok" } else { "failed" },
        wall.as_micros()
    );
    true
}

/// Runs `weft run MANIFEST --runtime RUNTIME --db DB --input INPUT` with
/// `WEFT_HOME=home` to its end, through this binary's
/// `--rss-of` mode: Linux folds the RSS peak of the address space a process
/// `exec`s from into its `ru_maxrss`, and std spawns with `vfork`
/// semantics, so a child of this (large) process would report this
/// process's peak. Returns whether it succeeded, its peak RSS in bytes and
/// its wall time (spawn to reap, measured by the small helper).
pub fn measure_weft_run(
    home: &Path,
    manifest: &Path,
    runtime: &str,
    db: &Path,
    input: &str,
) -> (bool, u64, Duration) {
    let helper = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--rss-of")
        .arg(env!("CARGO_BIN_EXE_weft"))
        .arg("run")
        .arg(manifest)
        .args(["--runtime", runtime, "--db"])
        .arg(db)
        .args(["--input", input])
        .env("WEFT_HOME", home)
        .env_remove("RUST_LOG")
        .stderr(Stdio::inherit())
        .output()
        .expect("the helper runs");
    let text = String::from_utf8_lossy(&helper.stdout);
    let mut words = text.split_whitespace();
    let ok = words.next() == Some("ok");
    let peak = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let wall = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    (ok, peak, Duration::from_micros(wall))
}

/// A manifest of `steps` echo steps in sequence.
pub fn sequence_manifest(steps: usize) -> String {
    let flow: Vec<String> = (0..steps)
        .map(|i| format!("{{ step = \"echo\", id = \"e{i}\" }}"))
        .collect();
    format!(
        "id = \"bench-seq\"\nflow = [{}]\n[steps.echo]\ncomponent = \"{}\"\n",
        flow.join(", "),
        echo().display()
    )
}

/// The 100-byte order object of `shared/reference/perf-floor.md`: every
/// step's input.
pub fn order() -> Value {
    json!({"workflow": "order-fulfil", "step": "reserve-stock", "order_id": "ord_000123", "amount": 129900, "ok": true})
}

/// What [`suspend_many`] measured: this process's resident memory (bytes)
/// before, at its peak (`VmHWM`: the process's, so far) and once every run
/// has suspended (after `malloc_trim`), and the wall time.
pub struct Suspended {
    pub runs: u32,
    pub before: u64,
    pub peak: u64,
    pub after: u64,
    pub wall: Duration,
}

/// `runs` runs that each suspend at their first step, started at once in
/// this process (evented runtime, SQLite file, `synchronous=NORMAL`): a
/// suspended run lives in the store, not in memory.
pub fn suspend_many(sandbox: &Sandbox, dir: &Path, runs: u32) -> Suspended {
    let component = echo().with_file_name("test-steps.wasm");
    let workflow = registered(
        sandbox,
        &format!(
            "id = \"suspends\"\nflow = [{{ step = \"approve\" }}]\n[steps.approve]\ncomponent = \"{}\"\n",
            component.display()
        ),
    );
    let store = Arc::new(
        SqliteStore::open_with(
            &dir.join("suspended.db"),
            weft_store_sqlite::Durability::Normal,
        )
        .expect("store"),
    );
    let runtime = Runtime::new(true, store);
    let input = json!({"action": "suspend", "payload": {"amount": 120}, "labels": ["approve"]});
    // Warm up (engine, instance pool, first commit) before measuring.
    let warm = runtime.call(Request::Start {
        workflow: Arc::clone(&workflow),
        run: RunId::new("warm").expect("id"),
        input: input.clone(),
        detach: false,
    });
    assert_eq!(warm.status, RunStatus::Suspended);
    // What earlier work freed goes back to the kernel first, so that both
    // figures count only live memory.
    trim();
    let before = own_memory("VmRSS");
    let t = Instant::now();
    let pending: Vec<_> = (0..runs)
        .map(|i| {
            let id = RunId::new(&format!("suspended-{i}")).expect("id");
            runtime.0.submit(
                Request::Start {
                    workflow: Arc::clone(&workflow),
                    run: id,
                    input: input.clone(),
                    detach: false,
                },
                None,
            )
        })
        .collect();
    for reply in pending {
        let result = reply.recv().expect("a result").expect("run");
        assert_eq!(result.status, RunStatus::Suspended);
    }
    let wall = t.elapsed();
    let peak = own_memory("VmHWM");
    // The burst's freed memory back to the kernel (glibc keeps it in its
    // arenas otherwise), so that what stays resident is what is still live.
    trim();
    let after = own_memory("VmRSS");
    Suspended {
        runs,
        before,
        peak,
        after,
        wall,
    }
}

/// A bench binary's arguments when `cargo bench` runs it; `None` when it
/// must do nothing else: it served as its own `--rss-of` helper (see
/// [`measure_weft_run`]), or `cargo test --all-targets` started it without
/// `--bench` only to check that it starts.
pub fn bench_args() -> Option<Vec<String>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    (!rss_helper(&args) && args.iter().any(|a| a == "--bench")).then_some(args)
}

/// The value after `--NAME` in `args`, if given.
///
/// # Panics
/// When it does not parse: a bench's usage error.
pub fn option<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let flag = format!("--{name}");
    let value = args
        .iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{flag}: cannot parse `{value}`")),
    )
}

/// Whether section `name` runs: every section does unless `args` name some
/// of `known`.
pub fn wanted(args: &[String], known: &[&str], name: &str) -> bool {
    let named: Vec<&String> = args
        .iter()
        .filter(|a| known.contains(&a.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|a| *a == name)
}

/// Returns the heap memory glibc keeps free in its arenas to the kernel.
fn trim() {
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` only releases free heap memory; no pointer is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
