//! `charge-payment`: the structured-error example.
//!
//! Input: a `reserve-stock` output (`order_id`, `total_cents`, optionally
//! `approved_by`), optionally `"simulate_transient": true`.
//!
//! - `total_cents` above 500000: fails with `card-declined` (not retryable), with
//!   details and a two-link cause chain.
//! - `simulate_transient`: fails with the retryable `gateway-timeout` on attempt 1
//!   and succeeds on later attempts.
//! - Otherwise outputs `{"order_id", "charge_id": "ch-<order_id>",
//!   "idempotency_key": <ctx.idempotency-key>, "amount_cents"}` (plus
//!   `approved_by` when the input has it).

use serde_json::{Value, json};
use weft::step::types::ErrorCause;

wit_bindgen::generate!({ path: "../../wit", world: "step" });

/// The per-card limit, in cents.
const LIMIT_CENTS: i64 = 500_000;

struct ChargePayment;

impl Guest for ChargePayment {
    fn run(input: Json, ctx: StepContext) -> Result<Outcome, StepError> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        let order_id = input.get("order_id").and_then(Value::as_str);
        let total_cents = input.get("total_cents").and_then(Value::as_i64);
        let (Some(order_id), Some(total_cents)) = (order_id, total_cents) else {
            return Err(StepError {
                code: "bad-input".into(),
                message: "input needs a string `order_id` and an integer `total_cents`".into(),
                details: None,
                retryable: false,
                causes: Vec::new(),
            });
        };

        if total_cents > LIMIT_CENTS {
            return Err(StepError {
                code: "card-declined".into(),
                message: "card declined: amount over limit".into(),
                details: Some(
                    json!({
                        "order_id": order_id,
                        "total_cents": total_cents,
                        "limit_cents": LIMIT_CENTS,
                    })
                    .to_string(),
                ),
                retryable: false,
                causes: vec![
                    ErrorCause {
                        code: "issuer-declined".into(),
                        message: "issuer declined the authorization".into(),
                        details: Some(json!({ "issuer": "demo-bank" }).to_string()),
                    },
                    ErrorCause {
                        code: "limit-exceeded".into(),
                        message: "amount exceeds the per-card limit".into(),
                        details: None,
                    },
                ],
            });
        }

        let transient = input
            .get("simulate_transient")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if transient && ctx.attempt == 1 {
            return Err(StepError {
                code: "gateway-timeout".into(),
                message: "payment gateway timed out".into(),
                details: Some(json!({ "order_id": order_id, "attempt": ctx.attempt }).to_string()),
                retryable: true,
                causes: Vec::new(),
            });
        }

        let mut output = json!({
            "order_id": order_id,
            "charge_id": format!("ch-{order_id}"),
            "idempotency_key": ctx.idempotency_key,
            "amount_cents": total_cents,
        });
        if let Some(approved_by) = input.get("approved_by") {
            output["approved_by"] = approved_by.clone();
        }
        Ok(Outcome::Completed(output.to_string()))
    }
}

export!(ChargePayment);
