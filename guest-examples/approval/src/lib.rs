//! `approval`: suspends the run for a manual approval.
//!
//! Input: a `reserve-stock` output (`order_id`, `total_cents`).
//!
//! - `total_cents` <= 100000: completes at once with the input plus
//!   `"approved_by": "auto"`.
//! - Otherwise, first run: suspends with `{"reason": "manual approval required",
//!   "order_id", "total_cents"}` and the resume label `manager-approval`.
//! - Resumed with `{"approved": true, "approver": A}`: completes with
//!   `{"order_id", "total_cents", "approved_by": A}`.
//! - Resumed with `{"approved": false, "approver": A}`: bails the workflow with
//!   `{"order_id", "status": "rejected", "rejected_by": A}`.

use serde_json::{Value, json};
use weft::step::host;
use weft::step::types::{LogLevel, Suspension};

wit_bindgen::generate!({ path: "../../wit", world: "step" });

/// Orders up to this total (in cents) are approved without asking anyone.
const AUTO_APPROVE_CENTS: i64 = 100_000;

/// The label that resumes this step.
const LABEL: &str = "manager-approval";

fn bad(code: &str, message: &str) -> StepError {
    StepError {
        code: code.into(),
        message: message.into(),
        details: None,
        retryable: false,
        causes: Vec::new(),
    }
}

struct Approval;

impl Guest for Approval {
    fn run(input: Json, ctx: StepContext) -> Result<Outcome, StepError> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        let order_id = input.get("order_id").cloned().unwrap_or(Value::Null);
        let Some(total_cents) = input.get("total_cents").and_then(Value::as_i64) else {
            return Err(bad("bad-input", "input needs an integer `total_cents`"));
        };

        if total_cents <= AUTO_APPROVE_CENTS {
            let mut output = match input {
                Value::Object(map) => map,
                _ => unreachable!("has total_cents, so it is an object"),
            };
            output.insert("approved_by".into(), json!("auto"));
            return Ok(Outcome::Completed(Value::Object(output).to_string()));
        }

        let Some(resume) = ctx.resume_payload else {
            let payload = json!({
                "reason": "manual approval required",
                "order_id": order_id,
                "total_cents": total_cents,
            });
            return Ok(Outcome::Suspended(Suspension {
                payload: payload.to_string(),
                resume_labels: vec![LABEL.into()],
            }));
        };

        // Sanity check: the previous run of this step suspended for the same order.
        if let Some(suspended) = ctx.suspend_payload.as_deref() {
            let suspended: Value = serde_json::from_str(suspended).unwrap_or(Value::Null);
            if suspended.get("order_id") != Some(&order_id) {
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "suspended for order {}, resumed for order {order_id}",
                        suspended["order_id"]
                    ),
                );
            }
        }

        let resume: Value = serde_json::from_str(&resume)
            .map_err(|_| bad("bad-resume", "the resume payload is not JSON"))?;
        let approved = resume
            .get("approved")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let approver = resume.get("approver").cloned().unwrap_or(Value::Null);
        if approved {
            let output = json!({
                "order_id": order_id,
                "total_cents": total_cents,
                "approved_by": approver,
            });
            Ok(Outcome::Completed(output.to_string()))
        } else {
            let output = json!({
                "order_id": order_id,
                "status": "rejected",
                "rejected_by": approver,
            });
            Ok(Outcome::Bailed(output.to_string()))
        }
    }
}

export!(Approval);
