//! `conformance`: the conformance step in Rust (see `../CONFORMANCE.md`),
//! built for `wasm32-wasip2` so that its `probe` action reads WASI through
//! std: `println!`, `SystemTime`, `std::env`; std has no public API for
//! random bytes nor for the monotonic clock's reading (`Instant` is opaque),
//! so those two come from the `wasip2` bindings crate, as does the pollable
//! `sleep` blocks on with `"via": "pollable"`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use weft::step::host;
use weft::step::types::{ErrorCause, LogLevel, Suspension};

wit_bindgen::generate!({ path: "../../wit", world: "step" });

/// JSON text the host passes in, parsed (echoed back as a string if it is not JSON).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn parse_opt(text: Option<&str>) -> Value {
    text.map_or(Value::Null, parse)
}

fn field(value: &Value, key: &str) -> Value {
    value.get(key).cloned().unwrap_or(Value::Null)
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn completed(value: Value) -> Result<Outcome, StepError> {
    Ok(Outcome::Completed(value.to_string()))
}

fn error(code: &str, message: String, retryable: bool) -> StepError {
    StepError {
        code: code.into(),
        message,
        details: None,
        retryable,
        causes: Vec::new(),
    }
}

fn transform(input: &Value) -> Result<Outcome, StepError> {
    let mut state = match parse(&host::get_state()) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let count = state.get("count").and_then(Value::as_i64).unwrap_or(0) + 1;
    state.insert("count".into(), json!(count));
    host::set_state(&Value::Object(state).to_string())
        .map_err(|e| error("state-rejected", e, false))?;
    let n = int(input, "n");
    host::emit("transformed", &json!({ "n": n }).to_string());
    let text = text(input, "text");
    host::log(LogLevel::Info, &format!("transformed {text}"));
    completed(json!({ "text": text.to_ascii_uppercase(), "n": n * 2, "count": count }))
}

fn fail() -> Result<Outcome, StepError> {
    Err(StepError {
        code: "declined".into(),
        message: "card declined".into(),
        details: Some(json!({ "reason": "insufficient-funds" }).to_string()),
        retryable: false,
        causes: vec![
            ErrorCause {
                code: "bank".into(),
                message: "bank said no".into(),
                details: None,
            },
            ErrorCause {
                code: "network".into(),
                message: "timed out".into(),
                details: Some(json!({ "ms": 30 }).to_string()),
            },
        ],
    })
}

fn flaky(input: &Value, ctx: &StepContext) -> Result<Outcome, StepError> {
    let until = int(input, "until");
    if i64::from(ctx.attempt) < until {
        let message = format!("attempt {} of {until}", ctx.attempt);
        return Err(error("transient", message, true));
    }
    completed(json!({ "attempt": ctx.attempt }))
}

fn approve(input: &Value, ctx: &StepContext) -> Result<Outcome, StepError> {
    let Some(resume) = ctx.resume_payload.as_deref() else {
        return Ok(Outcome::Suspended(Suspension {
            payload: json!({ "amount": int(input, "amount") }).to_string(),
            resume_labels: vec!["manager".into()],
        }));
    };
    let resume = parse(resume);
    completed(json!({
        "approved": resume.get("approved").and_then(Value::as_bool).unwrap_or(false),
        "by": text(&resume, "by"),
        "asked": parse_opt(ctx.suspend_payload.as_deref()),
    }))
}

fn context(input: &Value, ctx: &StepContext) -> Result<Outcome, StepError> {
    completed(json!({
        "step_path": ctx.step_path,
        "attempt": ctx.attempt,
        "key": ctx.idempotency_key,
        "iteration": ctx.iteration,
        "result": parse_opt(host::step_result(text(input, "of")).as_deref()),
        "workflow_input": parse(&host::workflow_input()),
    }))
}

fn probe() -> Result<Outcome, StepError> {
    println!("probe from rust");
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mono_ns = wasip2::clocks::monotonic_clock::now();
    let bytes = wasip2::random::random::get_random_bytes(16);
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    completed(json!({
        "lang": "rust",
        "wall_ms": u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        "mono_ms": mono_ns / 1_000_000,
        "random": random,
        "env": std::env::vars_os().count(),
    }))
}

/// Sleeps `ms` milliseconds (none if negative): through std
/// (`thread::sleep`, which blocks on a `wasi:clocks` pollable itself), or,
/// with `"via": "pollable"`, by blocking on
/// `wasi:clocks/monotonic-clock.subscribe-duration` directly.
fn sleep(input: &Value) -> Result<Outcome, StepError> {
    let ms = int(input, "ms");
    let wait = u64::try_from(ms).unwrap_or(0);
    match text(input, "via") {
        "" => std::thread::sleep(Duration::from_millis(wait)),
        "pollable" => {
            wasip2::clocks::monotonic_clock::subscribe_duration(wait.saturating_mul(1_000_000))
                .block();
        }
        via => return Err(error("unknown-via", format!("unknown via {via}"), false)),
    }
    completed(json!({ "slept_ms": ms }))
}

struct Conformance;

impl Guest for Conformance {
    fn run(input: Json, ctx: StepContext) -> Result<Outcome, StepError> {
        let data = parse(&input);
        let action = match data.get("action") {
            Some(Value::String(action)) => action.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        match action.as_str() {
            "transform" => transform(&data),
            "fail" => fail(),
            "flaky" => flaky(&data, &ctx),
            "approve" => approve(&data, &ctx),
            "bail" => Ok(Outcome::Bailed(field(&data, "output").to_string())),
            "context" => context(&data, &ctx),
            "probe" => probe(),
            "sleep" => sleep(&data),
            "echo" => Ok(Outcome::Completed(input)),
            _ => Err(error(
                "unknown-action",
                format!("unknown action {action}"),
                false,
            )),
        }
    }
}

export!(Conformance);
