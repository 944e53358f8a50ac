//! `{{name}}`: a weft step (world `step` of `wit/step.wit`).
//!
//! Build with `./build.sh` (a `wasm32-unknown-unknown` core module carrying
//! wit-bindgen's component-type metadata; weft turns it into a component when
//! it loads it), run with `weft run workflow.toml --input '{"name": "Ada"}'`.

use serde_json::{Value, json};
use weft::step::host;
use weft::step::types::LogLevel;

wit_bindgen::generate!({ path: "wit", world: "step" });

struct Step;

impl Guest for Step {
    /// `input` is the step's input as JSON text; `ctx` tells the run, the
    /// step, the attempt, and the resume payload after a suspension.
    fn run(input: Json, ctx: StepContext) -> Result<Outcome, StepError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| StepError {
            code: "invalid-input".into(),
            message: format!("the input is not JSON: {e}"),
            details: None,
            retryable: false,
            causes: Vec::new(),
        })?;
        let name = input.get("name").and_then(Value::as_str).unwrap_or("world");
        host::log(
            LogLevel::Info,
            &format!("greeting {name} (attempt {})", ctx.attempt),
        );
        // Other outcomes: `Outcome::Suspended(Suspension { payload, resume_labels })`
        // pauses the run until `weft resume`, `Outcome::Bailed(output)` ends the
        // workflow now; `Err(StepError { .. })` fails the step (retried when
        // `retryable` and the manifest's retry policy allow). `host::get_state`,
        // `host::set_state`, `host::emit` and `host::step_result` reach the run.
        let output = json!({ "greeting": format!("Hello, {name}!"), "lang": "rust" });
        Ok(Outcome::Completed(output.to_string()))
    }
}

export!(Step);
