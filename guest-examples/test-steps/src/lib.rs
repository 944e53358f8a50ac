//! `test-steps`: one step for the test suite, whose behaviour is chosen by its
//! input `{"action": ..., ...}`. See README.md for the list of actions. Missing
//! fields are read as `null` (or 0, `""`, `[]`, `false`) rather than trapping.

use serde_json::{Map, Value, json};
use weft::step::host;
use weft::step::types::{ErrorCause, LogLevel, Suspension};

wit_bindgen::generate!({ path: "../../wit", world: "step" });

/// Parses a JSON text the host passed in; text that is not JSON is kept as a string.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn parse_opt(text: Option<&str>) -> Value {
    text.map(parse).unwrap_or(Value::Null)
}

/// Optional JSON details: absent or `null` is `none`.
fn details(value: Option<&Value>) -> Option<Json> {
    value.filter(|v| !v.is_null()).map(Value::to_string)
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn field(value: &Value, key: &str) -> Value {
    value.get(key).cloned().unwrap_or(Value::Null)
}

fn completed(value: &Value) -> Result<Outcome, StepError> {
    Ok(Outcome::Completed(value.to_string()))
}

fn simple_error(code: &str, message: String, retryable: bool) -> StepError {
    StepError {
        code: code.into(),
        message,
        details: None,
        retryable,
        causes: Vec::new(),
    }
}

fn level(name: &str) -> LogLevel {
    match name {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

struct TestSteps;

impl Guest for TestSteps {
    fn run(input: Json, ctx: StepContext) -> Result<Outcome, StepError> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        act(&input, &ctx)
    }
}

/// The node id of the step's address: the last segment of its step path, with
/// any `[n]` (foreach item) or `#n` (loop iteration) suffix removed.
fn node_id(path: &str) -> &str {
    let last = path.rsplit('/').next().unwrap_or_default();
    let end = last.find(['[', '#']).unwrap_or(last.len());
    &last[..end]
}

/// Performs one action input (`per-node` recurses into the chosen one).
fn act(input: &Value, ctx: &StepContext) -> Result<Outcome, StepError> {
    let action = input
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match action {
        "complete" => completed(&field(&input, "output")),

        "fail" => {
            let causes = input
                .get("causes")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| ErrorCause {
                    code: str_of(c, "code").into(),
                    message: str_of(c, "message").into(),
                    details: details(c.get("details")),
                })
                .collect();
            Err(StepError {
                code: str_of(&input, "code").into(),
                message: str_of(&input, "message").into(),
                details: details(input.get("details")),
                retryable: input
                    .get("retryable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                causes,
            })
        }

        "fail-until" => {
            let until = input.get("attempt").and_then(Value::as_u64).unwrap_or(0);
            if u64::from(ctx.attempt) < until {
                Err(simple_error(
                    "transient",
                    format!(
                        "attempt {} fails, attempt {until} will succeed",
                        ctx.attempt
                    ),
                    true,
                ))
            } else {
                completed(&field(&input, "output"))
            }
        }

        "suspend" => match ctx.resume_payload.as_deref() {
            None => {
                let labels = input
                    .get("labels")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect();
                Ok(Outcome::Suspended(Suspension {
                    payload: field(&input, "payload").to_string(),
                    resume_labels: labels,
                }))
            }
            Some(resume) => completed(&json!({
                "resumed_with": parse(resume),
                "suspended_with": parse_opt(ctx.suspend_payload.as_deref()),
            })),
        },

        "bail" => Ok(Outcome::Bailed(field(&input, "output").to_string())),

        "set-state" => {
            host::set_state(&field(&input, "state").to_string())
                .map_err(|e| simple_error("state-rejected", e, false))?;
            completed(&field(&input, "output"))
        }

        "set-state-then-fail" => {
            host::set_state(&field(&input, "state").to_string())
                .map_err(|e| simple_error("state-rejected", e, false))?;
            Err(simple_error(
                "after-state",
                "failed after setting the state".into(),
                false,
            ))
        }

        "get-state" => completed(&parse(&host::get_state())),

        "step-result" => completed(&parse_opt(
            host::step_result(str_of(&input, "id")).as_deref(),
        )),

        "workflow-input" => completed(&parse(&host::workflow_input())),

        "emit" => {
            let events = input
                .get("events")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for event in events {
                host::emit(str_of(event, "kind"), &field(event, "data").to_string());
            }
            completed(&field(&input, "output"))
        }

        "context" => {
            let mut map = Map::new();
            map.insert("run_id".into(), json!(ctx.run_id));
            map.insert("workflow_id".into(), json!(ctx.workflow_id));
            map.insert("step_id".into(), json!(ctx.step_id));
            map.insert("step_path".into(), json!(ctx.step_path));
            map.insert("attempt".into(), json!(ctx.attempt));
            map.insert("idempotency_key".into(), json!(ctx.idempotency_key));
            map.insert(
                "resume_payload".into(),
                parse_opt(ctx.resume_payload.as_deref()),
            );
            map.insert(
                "suspend_payload".into(),
                parse_opt(ctx.suspend_payload.as_deref()),
            );
            map.insert("iteration".into(), json!(ctx.iteration));
            completed(&Value::Object(map))
        }

        "invalid-json" => Ok(Outcome::Completed("not json{".into())),

        "panic" => panic!("boom"),

        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = core::hint::black_box(n.wrapping_add(1));
            }
        }

        "grow" => {
            let mib = input.get("mb").and_then(Value::as_u64).unwrap_or(0) as usize;
            let len = mib.saturating_mul(1 << 20);
            let mut buffer = vec![0u8; len];
            // Write one byte in every 4 KiB so the memory is really touched.
            for offset in (0..len).step_by(4096) {
                buffer[offset] = 1;
            }
            core::hint::black_box(&mut buffer);
            completed(&json!({ "grown_mb": mib }))
        }

        "big-output" => {
            let bytes = input.get("bytes").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut text = String::with_capacity(bytes + 2);
            text.push('"');
            text.extend(core::iter::repeat_n('x', bytes));
            text.push('"');
            Ok(Outcome::Completed(text))
        }

        "per-node" => {
            let node = node_id(&ctx.step_path);
            let chosen = input
                .get("nodes")
                .and_then(|nodes| nodes.get(node))
                .or_else(|| input.get("default"));
            match chosen {
                Some(chosen) => act(chosen, ctx),
                None => Err(StepError {
                    code: "no-node-input".into(),
                    message: format!("no input for node {node:?} and no default"),
                    details: Some(json!({ "node": node }).to_string()),
                    retryable: false,
                    causes: Vec::new(),
                }),
            }
        }

        "increment" => {
            let mut object = input.as_object().cloned().unwrap_or_default();
            let by = object.get("by").and_then(Value::as_i64).unwrap_or(1);
            let n = object.get("n").and_then(Value::as_i64).unwrap_or(0);
            object.insert("n".into(), json!(n + by));
            completed(&Value::Object(object))
        }

        "spin" => {
            // Logs `marker` (so a test can count executions across
            // processes), burns `iterations` loop turns (a step that is
            // still running when another process looks), then completes
            // with `output`.
            host::log(LogLevel::Info, str_of(&input, "marker"));
            let iterations = input.get("iterations").and_then(Value::as_u64).unwrap_or(0);
            let mut n: u64 = 0;
            while n < iterations {
                n = core::hint::black_box(n + 1);
            }
            completed(&field(&input, "output"))
        }

        "log" => {
            host::log(level(str_of(&input, "level")), str_of(&input, "message"));
            completed(&Value::Null)
        }

        _ => Err(StepError {
            code: "unknown-action".into(),
            message: format!("unknown action {:?}", action),
            details: Some(json!({ "action": field(&input, "action") }).to_string()),
            retryable: false,
            causes: Vec::new(),
        }),
    }
}

export!(TestSteps);
