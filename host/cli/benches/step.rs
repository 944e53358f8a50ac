//! Per-step cost of the default runtime with a trivial guest (`echo`):
//! fresh store + instance from the cached `InstancePre`, the call, JSON in
//! and out, events applied to the state machine.
//!
//! Run with `cargo bench -p weft-cli --bench step` after `./guest-examples/build.sh`.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_main};
use serde_json::json;
use weft_core::{RunId, RunStatus};
use weft_manifest::Manifest;
use weft_runtime::SystemClock;
use weft_runtime::{DefaultRuntime, MemoryStore, NoObserver, Registered};
use weft_sandbox::{Sandbox, SandboxConfig, WorkflowSteps};

fn workflow(steps: usize) -> String {
    let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-examples/dist/echo.wasm");
    assert!(echo.exists(), "run ./guest-examples/build.sh first");
    let flow: Vec<String> = (0..steps)
        .map(|i| format!("{{ step = \"echo\", id = \"e{i}\" }}"))
        .collect();
    format!(
        "id = \"bench\"\nflow = [{}]\n[steps.echo]\ncomponent = \"{}\"\n",
        flow.join(", "),
        echo.display()
    )
}

fn bench(c: &mut Criterion) {
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let input = json!({"workflow": "order-fulfil", "step": "reserve-stock", "order_id": "ord_000123", "amount": 129900, "ok": true});
    let mut group = c.benchmark_group("default-runtime");
    // 1000 steps: the per-step cost must not grow with the sequence's length
    // (the interpreter resumes at the flow's cursor).
    for steps in [1usize, 10, 1000] {
        let text = workflow(steps);
        let manifest = Manifest::from_toml_str(&text, Path::new("bench.toml")).expect("manifest");
        let runner = WorkflowSteps::load(&sandbox, manifest.workflow()).expect("components");
        let registered = Arc::new(Registered {
            workflow: manifest.workflow().clone(),
            runner: Arc::new(runner),
            manifest: "bench.toml".into(),
            manifest_sha256: "0".repeat(64),
            workflow_digest: None,
        });
        let run_id = RunId::new("bench-run").expect("id");
        group.throughput(Throughput::Elements(steps as u64));
        // A 1000-step run takes ~20 ms: fewer samples keep the bench short.
        group.sample_size(if steps >= 1000 { 20 } else { 100 });
        group.bench_function(format!("{steps}-step workflow"), |b| {
            b.iter(|| {
                // A fresh in-memory store per run: the default runtime records
                // each run at its start and end, and the ids must not collide.
                let runtime =
                    DefaultRuntime::new(Arc::new(MemoryStore::new()), Arc::new(SystemClock));
                let run = runtime
                    .start(&registered, run_id.clone(), input.clone(), &mut NoObserver)
                    .expect("start");
                assert_eq!(run.state().status(), RunStatus::Success);
                run
            });
        });
    }
    group.finish();
}

// The macros generate undocumented items.
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(harness::benches);
