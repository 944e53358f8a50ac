//! Evented-runtime figures: per-step overhead, 3-step latency (p50/p99) and
//! steps/s with 100 concurrent 10-step runs, over the SQLite store (a file,
//! `synchronous=FULL`) and over the in-memory store (orchestration alone).
//!
//! Run with `cargo bench -p weft-cli --bench evented` after
//! `./guest-examples/build.sh`. Prints a Markdown table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::{EventStore, RunId, RunStatus, SystemClock};
use weft_manifest::Manifest;
use weft_runtime::{EventedRuntime, MemoryStore, Registered};
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};
use weft_store_sqlite::SqliteStore;

fn registered(sandbox: &Sandbox, steps: usize) -> Arc<Registered> {
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-examples/dist/echo.wasm");
    assert!(echo.exists(), "run ./guest-examples/build.sh first");
    let flow: Vec<String> = (0..steps)
        .map(|i| format!("{{ step = \"echo\", id = \"e{i}\" }}"))
        .collect();
    let text = format!(
        "id = \"bench\"\nflow = [{}]\n[steps.echo]\ncomponent = \"{}\"\n",
        flow.join(", "),
        echo.display()
    );
    let manifest = Manifest::from_toml_str(&text, Path::new("bench.toml")).expect("manifest");
    let runner = WorkflowSteps::load(sandbox, manifest.workflow()).expect("components");
    Arc::new(Registered {
        workflow: manifest.workflow().clone(),
        runner: Arc::new(runner),
        manifest: "bench.toml".into(),
        manifest_sha256: String::new(),
        workflow_digest: None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn measure(name: &str, store: Arc<dyn EventStore>, sandbox: &Sandbox) {
    let runtime = EventedRuntime::new(store, Arc::new(SystemClock), 2);
    let input = json!({"order_id": "ord_000123", "amount": 129900, "ok": true});
    let mut next = 0u64;
    let mut id = || {
        next += 1;
        RunId::new(&format!("{name}-{next}")).expect("id")
    };

    // Per-step overhead: sequential 10-step runs.
    let ten = registered(sandbox, 10);
    for _ in 0..20 {
        runtime
            .start(ten.clone(), id(), input.clone())
            .expect("warm-up");
    }
    let runs = 200;
    let started = Instant::now();
    for _ in 0..runs {
        let r = runtime
            .start(ten.clone(), id(), input.clone())
            .expect("run");
        assert_eq!(r.status, RunStatus::Success);
    }
    let per_step = started.elapsed() / (runs * 10);

    // 3-step latency, start to finish, one run at a time.
    let three = registered(sandbox, 3);
    let mut latencies: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            runtime
                .start(three.clone(), id(), input.clone())
                .expect("run");
            t.elapsed()
        })
        .collect();
    latencies.sort();

    // Throughput: 100 concurrent 10-step runs, three rounds.
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let pending: Vec<_> = (0..100)
            .map(|_| runtime.submit_start(ten.clone(), id(), input.clone()))
            .collect();
        for rx in pending {
            let r = rx.recv().expect("result").expect("run");
            assert_eq!(r.status, RunStatus::Success);
        }
        best = best.max(1000.0 / t.elapsed().as_secs_f64());
    }
    println!(
        "| {name} | {} | {} | {} | {:.0} |",
        us(per_step),
        us(percentile(&latencies, 0.5)),
        us(percentile(&latencies, 0.99)),
        best
    );
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this
    // binary runs without it and only checks that it starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "| store | per step (10-step runs, sequential) | 3-step p50 | 3-step p99 | steps/s (100 concurrent 10-step runs) |"
    );
    println!("|---|---:|---:|---:|---:|");
    let sqlite = SqliteStore::open(&dir.path().join("bench.db")).expect("store");
    measure("sqlite-full", Arc::new(sqlite), &sandbox);
    measure("memory", Arc::new(MemoryStore::new()), &sandbox);
}
