//! Measures what one step attempt costs: a fresh store and instance, the call
//! of `run` and the classification of its result, as the runtimes pay it.
//!
//! ```sh
//! cargo run --release -p weft-sandbox --example step-cost -- guest-examples/dist/echo.wasm
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::{Limits, RunId, StepId, StepPath, StepTask, StepView};
use weft_sandbox::{Sandbox, SandboxConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("guest-examples/dist/echo.wasm"));
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let started = Instant::now();
    let step = sandbox.load_file(&path, &[])?;
    println!(
        "{}: loaded in {:?}; pagemap_scan: {}",
        path.display(),
        started.elapsed(),
        sandbox.pagemap_scan()
    );

    let id = StepId::new("echo")?;
    let task = StepTask {
        run: RunId::new("run-1")?,
        workflow: StepId::new("bench")?,
        step: id.clone(),
        path: StepPath::root(&id),
        attempt: 1,
        idempotency_key: "run-1/echo".into(),
        // The 100-byte input of perf-floor.md.
        input: json!({"workflow":"order-fulfil","step":"reserve-stock","order_id":"ord_000123","amount":129900,"ok":true}).into(),
        resume_payload: None,
        suspend_payload: None,
        iteration: None,
        not_before: None,
        started_at: weft_core::Timestamp::default(),
    };
    let view = StepView::default();
    let limits = Limits::default();

    let report = step.run(&task, &view, &limits);
    println!("outcome: {:?}", report.outcome);

    let iterations = 20_000u32;
    let mut means = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..iterations {
            let report = step.run(&task, &view, &limits);
            std::hint::black_box(report);
        }
        means.push(started.elapsed() / iterations);
    }
    means.sort();
    let median: Duration = means[means.len() / 2];
    println!(
        "per step: median {median:?} (min {:?}, max {:?})",
        means[0],
        means[means.len() - 1]
    );
    Ok(())
}
