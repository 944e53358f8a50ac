//! Flow-language figures, printed as Markdown tables:
//!
//! - `foreach`: a foreach of 1k, 10k and 100k trivial items (the `echo`
//!   guest; item `i` is the number `i`), concurrency 1 and 16, on the
//!   default runtime (in-memory store: the runtime alone; SQLite: what
//!   `weft run --runtime default` does, one append at the end) and on the
//!   evented runtime (SQLite file, `synchronous=FULL`; and the in-memory
//!   store: the orchestration alone). Cost per item = wall time of the whole
//!   run (start to result) ÷ items.
//! - `rss`: peak RSS of a separate `weft run` process (the release binary
//!   next to this bench) running the foreach, from `wait4`'s `ru_maxrss`:
//!   the whole process (engine, compiled component, runtime, store, printing
//!   the `--json` result). Linux folds the RSS peak of the address space a
//!   process `exec`s from into its `ru_maxrss`, and std spawns with
//!   `vfork` semantics, so `weft` spawned from this (large) process would
//!   report this process's peak: this binary re-executes itself as a small
//!   helper (`--rss-of CMD…`) that spawns `weft`, reaps it with `wait4` and
//!   prints its peak.
//! - `parallel`: a parallel of 10 echo steps then one echo step (the join),
//!   one run at a time: runs/s.
//! - `nested`: one echo step nested 0–3 workflows deep: the overhead of a
//!   nesting level, per run, on both runtimes.
//! - `sleepers`: 10,000 runs left asleep in a SQLite store; the peak RSS and
//!   wall time of the `weft recover` process that wakes them all.
//! - `suspended`: 10,000 runs that suspend, started at once in this process:
//!   its resident memory before, at the peak and once all are suspended.
//!
//! Every figure that commits to a SQLite file comes with the latency of a
//! 4 KiB `pwrite` + `fsync` on the same file system (the probe of
//! `shared/reference/perf-floor.md` §4), measured just before and just after
//! it: the disk's flush latency is bimodal on the reference VM, and a
//! durable figure means little without it.
//!
//! Run with `cargo bench -p weft-cli --bench flow` after
//! `./guest-examples/build.sh`; `-- foreach rss parallel nested sleepers suspended` (any subset)
//! selects sections, `-- --max 10000` skips the larger foreach sizes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::{Clock as _, RunId, RunIndex as _, RunStatus};
use weft_runtime::SystemClock;
use weft_runtime::{DefaultRuntime, NoObserver};
use weft_sandbox::{Sandbox, SandboxConfig};
use weft_store_sqlite::SqliteStore;

mod common;

use common::*;

fn foreach(sandbox: &Sandbox, dir: &Path, max: usize) {
    println!("### foreach of trivial items: cost per item\n");
    println!(
        "| runtime | store | concurrency | items | runs | per item (median run) | whole run | fsync p50 / p99 µs, before → after |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    let mut ids = Ids(0);
    let cases = [
        (false, Store::Memory),
        (false, Store::SqliteFull),
        (true, Store::SqliteFull),
        (true, Store::Memory),
    ];
    for (evented, store) in cases {
        for concurrency in [1u32, 16] {
            let workflow = registered(sandbox, &foreach_manifest(concurrency));
            let name = format!("foreach-{evented}-{}-{concurrency}", store.name());
            let runtime = Runtime::new(evented, store.open(dir, &name.replace(' ', "-")));
            // Warm-up: the pool, the caches, the store's file.
            runtime.run(&workflow, ids.next(), items(200));
            for (n, reps) in [(1_000usize, 5usize), (10_000, 3), (100_000, 1)] {
                if n > max {
                    continue;
                }
                let input = items(n);
                let before = (store == Store::SqliteFull).then(|| fsync_probe(dir));
                let times: Vec<Duration> = (0..reps)
                    .map(|_| runtime.run(&workflow, ids.next(), input.clone()))
                    .collect();
                let after = (store == Store::SqliteFull).then(|| fsync_probe(dir));
                let run = median(times);
                let fsync = match (before, after) {
                    (Some(b), Some(a)) => format!("{} → {}", probe_text(b), probe_text(a)),
                    _ => "–".to_owned(),
                };
                println!(
                    "| {} | {} | {concurrency} | {n} | {reps} | {:.1} µs | {:.3} s | {fsync} |",
                    runtime.name(),
                    store.name(),
                    us(run) / n as f64,
                    run.as_secs_f64(),
                );
            }
        }
    }
    println!();
}

fn rss(dir: &Path, max: usize) {
    println!("### foreach: peak RSS of a `weft run` process\n");
    println!(
        "| runtime | concurrency | items | peak RSS | process wall time | fsync p50 / p99 µs, before → after |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    let weft = Path::new(env!("CARGO_BIN_EXE_weft"));
    let home = dir.join("home");
    let manifest = dir.join("foreach-16.toml");
    std::fs::write(&manifest, foreach_manifest(16)).expect("manifest");
    // Compile once into the cache every process below reads.
    let ok = Command::new(weft)
        .env("WEFT_HOME", &home)
        .arg("validate")
        .arg(&manifest)
        .stdout(Stdio::null())
        .status()
        .expect("weft validate")
        .success();
    assert!(ok, "weft validate failed");
    for runtime in ["default", "evented"] {
        for n in [1_000usize, 10_000, 100_000] {
            if n > max {
                continue;
            }
            let input = dir.join(format!("items-{n}.json"));
            std::fs::write(&input, items(n).to_string()).expect("input");
            let db = dir.join(format!("rss-{runtime}-{n}.db"));
            let before = fsync_probe(dir);
            let t = Instant::now();
            let helper = Command::new(std::env::current_exe().expect("this binary"))
                .arg("--rss-of")
                .arg(weft)
                .env("WEFT_HOME", &home)
                .env_remove("RUST_LOG")
                .arg("run")
                .arg(&manifest)
                .args(["--runtime", runtime, "--json", "--db"])
                .arg(&db)
                .arg("--input")
                .arg(format!("@{}", input.display()))
                .stderr(Stdio::inherit())
                .output()
                .expect("the helper runs");
            let wall = t.elapsed();
            let text = String::from_utf8_lossy(&helper.stdout);
            let mut words = text.split_whitespace();
            let ok = words.next() == Some("ok");
            let peak: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let after = fsync_probe(dir);
            assert!(ok, "weft run --runtime {runtime} on {n} items failed");
            println!(
                "| {runtime} | 16 | {n} | {:.1} MiB | {:.2} s | {} → {} |",
                peak as f64 / (1024.0 * 1024.0),
                wall.as_secs_f64(),
                probe_text(before),
                probe_text(after)
            );
        }
    }
    println!();
}

fn parallel(sandbox: &Sandbox, dir: &Path) {
    println!("### parallel-10 + join, one run at a time\n");
    println!("| runtime | store | runs | runs/s | per run | fsync p50 / p99 µs, before → after |");
    println!("|---|---|---:|---:|---:|---|");
    let workflow = registered(sandbox, &parallel_manifest());
    let input = json!({"workflow": "order-fulfil", "step": "reserve-stock", "order_id": "ord_000123", "amount": 129900, "ok": true});
    let mut ids = Ids(1_000_000);
    let cases = [
        (false, Store::Memory),
        (false, Store::SqliteFull),
        (true, Store::SqliteFull),
        (true, Store::Memory),
    ];
    for (evented, store) in cases {
        let name = format!("parallel-{evented}-{}", store.name()).replace(' ', "-");
        let runtime = Runtime::new(evented, store.open(dir, &name));
        for _ in 0..50 {
            runtime.run(&workflow, ids.next(), input.clone());
        }
        let runs = 1_000;
        let before = (store == Store::SqliteFull).then(|| fsync_probe(dir));
        let t = Instant::now();
        for _ in 0..runs {
            runtime.run(&workflow, ids.next(), input.clone());
        }
        let elapsed = t.elapsed();
        let after = (store == Store::SqliteFull).then(|| fsync_probe(dir));
        let fsync = match (before, after) {
            (Some(b), Some(a)) => format!("{} → {}", probe_text(b), probe_text(a)),
            _ => "–".to_owned(),
        };
        println!(
            "| {} | {} | {runs} | {:.0} | {:.0} µs | {fsync} |",
            runtime.name(),
            store.name(),
            f64::from(runs) / elapsed.as_secs_f64(),
            us(elapsed) / f64::from(runs),
        );
    }
    println!();
}

/// A workflow nested `depth` levels around one echo step, as manifest
/// files in `dir`; returns the outermost one's path.
fn nested_manifests(dir: &Path, depth: usize) -> PathBuf {
    let leaf = dir.join("level-0.toml");
    std::fs::write(
        &leaf,
        format!(
            "id = \"level-0\"\nflow = [{{ step = \"echo\" }}]\n[steps.echo]\ncomponent = \"{}\"\n",
            echo().display()
        ),
    )
    .expect("manifest");
    let mut path = leaf;
    for level in 1..=depth {
        path = dir.join(format!("level-{level}.toml"));
        std::fs::write(
            &path,
            format!(
                "id = \"level-{level}\"\nflow = [{{ workflow = \"level-{}.toml\", id = \"inner\" }}]\n",
                level - 1
            ),
        )
        .expect("manifest");
    }
    path
}

/// Per-run time of one echo step nested 0–3 levels deep, one run at a
/// time on the in-memory store: the cost of a nesting level is the
/// difference from level 0, per level.
fn nested(sandbox: &Sandbox, dir: &Path) {
    println!("### nested workflows: overhead per level (in-memory store)\n");
    println!("| runtime | depth | per run (median of 5 × 2,000 runs) | overhead per level |");
    println!("|---|---:|---:|---:|");
    let mut ids = Ids(2_000_000);
    for evented in [false, true] {
        let mut base = None;
        for depth in 0..=3 {
            let sub = dir.join(format!("nested-{evented}-{depth}"));
            std::fs::create_dir_all(&sub).expect("dir");
            let workflow = registered_file(sandbox, &nested_manifests(&sub, depth));
            let runtime = Runtime::new(evented, Store::Memory.open(dir, "nested"));
            for _ in 0..200 {
                runtime.run(&workflow, ids.next(), json!({"n": 1}));
            }
            let runs = 2_000u32;
            let per_run = median(
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..runs {
                            runtime.run(&workflow, ids.next(), json!({"n": 1}));
                        }
                        t.elapsed() / runs
                    })
                    .collect(),
            );
            let base = *base.get_or_insert(per_run);
            let overhead = if depth == 0 {
                "–".to_owned()
            } else {
                format!(
                    "{:.1} µs",
                    (us(per_run) - us(base)) / f64::from(u32::try_from(depth).expect("depth"))
                )
            };
            println!(
                "| {} | {depth} | {:.1} µs | {overhead} |",
                runtime.name(),
                us(per_run)
            );
        }
    }
    println!();
}

/// 10,000 runs asleep in a SQLite store (left by `weft run --detach`, here
/// through the same runtime call), then a separate `weft recover` process
/// picks them all up: its peak RSS and wall time, and how long after the
/// last wake time it finished.
fn sleepers(sandbox: &Sandbox, dir: &Path) {
    println!("### 10,000 sleeping runs: `weft recover`\n");
    println!(
        "| runs | sleep | peak RSS of `weft recover` | wall time | finished after the last wake time | fsync p50 / p99 µs |"
    );
    println!("|---:|---:|---:|---:|---:|---|");
    let runs = 10_000;
    let sleep_ms = 20_000;
    let weft = Path::new(env!("CARGO_BIN_EXE_weft"));
    let home = dir.join("home");
    let manifest = dir.join("sleepers.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"sleepers\"\nflow = [{{ sleep-ms = {sleep_ms}, id = \"nap\" }}, {{ step = \"echo\" }}]\n\
             [steps.echo]\ncomponent = \"{}\"\n",
            echo().display()
        ),
    )
    .expect("manifest");
    let workflow = registered_file(sandbox, &manifest);
    let db = dir.join("sleepers.db");
    let store = Arc::new(
        SqliteStore::open_with(&db, weft_store_sqlite::Durability::Normal).expect("store"),
    );
    let runtime = DefaultRuntime::new(store, Arc::new(SystemClock));
    let t = Instant::now();
    for i in 0..runs {
        let id = RunId::new(&format!("sleeper-{i}")).expect("id");
        let run = runtime
            .start_detached(&workflow, id, json!({"i": i}), &mut NoObserver)
            .expect("run");
        assert_eq!(run.state().status(), RunStatus::Running);
    }
    let last_wake = SystemClock.now().plus_millis(sleep_ms);
    eprintln!(
        "created {runs} sleeping runs in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let probe = fsync_probe(dir);
    let t = Instant::now();
    let helper = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--rss-of")
        .arg(weft)
        .env("WEFT_HOME", &home)
        .env_remove("RUST_LOG")
        .args(["recover", "--db"])
        .arg(&db)
        .stderr(Stdio::inherit())
        .output()
        .expect("the helper runs");
    let wall = t.elapsed();
    let after_wake = SystemClock.now().micros_since(last_wake);
    let text = String::from_utf8_lossy(&helper.stdout);
    let mut words = text.split_whitespace();
    assert_eq!(words.next(), Some("ok"), "weft recover failed");
    let peak: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let done = SqliteStore::open(&db)
        .expect("store")
        .list_runs(Some(RunStatus::Success))
        .expect("runs")
        .len();
    assert_eq!(done, runs, "every sleeper completed");
    println!(
        "| {runs} | {} s | {:.1} MiB | {:.1} s | {:.2} s | {} |",
        sleep_ms / 1000,
        peak as f64 / (1024.0 * 1024.0),
        wall.as_secs_f64(),
        after_wake as f64 / 1e6,
        probe_text(probe)
    );
    println!();
}

/// 10,000 runs that each suspend at their first step, started at once in
/// this process (evented runtime, SQLite file, `synchronous=NORMAL`): the
/// process's resident memory before, at its peak, and once every run has
/// suspended — a suspended run lives in the store, not in memory.
fn suspended(sandbox: &Sandbox, dir: &Path) {
    println!("### 10,000 suspended runs in one process\n");
    println!(
        "| runs | RSS before | peak RSS (VmHWM) | RSS once all suspended, after `malloc_trim` | growth per suspended run | wall time |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let Suspended {
        runs,
        before,
        peak,
        after,
        wall,
    } = suspend_many(sandbox, dir, 10_000);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "| {runs} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} B | {:.1} s |",
        mib(before),
        mib(peak),
        mib(after),
        after.saturating_sub(before) as f64 / f64::from(runs),
        wall.as_secs_f64()
    );
    println!();
}

fn main() {
    let Some(args) = bench_args() else {
        return;
    };
    let max = option(&args, "max").unwrap_or(usize::MAX);
    const SECTIONS: [&str; 6] = [
        "foreach",
        "rss",
        "parallel",
        "nested",
        "sleepers",
        "suspended",
    ];
    let wanted = |name: &str| wanted(&args, &SECTIONS, name);
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    // Beside the target directory (on the same file system as a real
    // store would be), not in a tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    println!(
        "fsync probe (4 KiB pwrite + fsync, p50 / p99) in {}: {} µs\n",
        dir.path().display(),
        probe_text(fsync_probe(dir.path()))
    );
    if wanted("foreach") {
        foreach(&sandbox, dir.path(), max);
    }
    if wanted("parallel") {
        parallel(&sandbox, dir.path());
    }
    if wanted("rss") {
        rss(dir.path(), max);
    }
    if wanted("nested") {
        nested(&sandbox, dir.path());
    }
    if wanted("sleepers") {
        sleepers(&sandbox, dir.path());
    }
    if wanted("suspended") {
        suspended(&sandbox, dir.path());
    }
}
