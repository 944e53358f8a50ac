//! `reserve-stock`: uses the workflow state and an earlier step's result.
//!
//! Reads the output of the step with id `validate` (a `validate-order` step;
//! `missing-validation` error if there is none), records the reservation in the
//! workflow state (`reserved` and an incremented `reservations` counter, the
//! rest of the state kept), logs a line, and outputs
//! `{"order_id", "reservation_id": "res-<order_id>", "total_cents"}`.

use serde_json::{Map, Value, json};
use weft::step::host;
use weft::step::types::LogLevel;

wit_bindgen::generate!({ path: "../../wit", world: "step" });

/// The id the validation step has in the workflow manifests.
const VALIDATE_STEP: &str = "validate";

fn error(code: &str, message: String, details: Option<Value>) -> StepError {
    StepError {
        code: code.into(),
        message,
        details: details.map(|d| d.to_string()),
        retryable: false,
        causes: Vec::new(),
    }
}

struct ReserveStock;

impl Guest for ReserveStock {
    fn run(_input: Json, _ctx: StepContext) -> Result<Outcome, StepError> {
        let Some(validated) = host::step_result(VALIDATE_STEP) else {
            return Err(error(
                "missing-validation",
                format!("step `{VALIDATE_STEP}` has no result"),
                Some(json!({ "step_id": VALIDATE_STEP })),
            ));
        };
        let validated: Value = serde_json::from_str(&validated).map_err(|e| {
            error(
                "missing-validation",
                format!("step `{VALIDATE_STEP}` result is not JSON: {e}"),
                None,
            )
        })?;
        let order_id = validated
            .get("order_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let total_cents = validated.get("total_cents").cloned().unwrap_or(Value::Null);
        let units = validated.get("item_count").cloned().unwrap_or(json!(0));
        if order_id.is_empty() {
            return Err(error(
                "missing-validation",
                format!("step `{VALIDATE_STEP}` result has no order_id"),
                None,
            ));
        }

        let mut state = match serde_json::from_str::<Value>(&host::get_state()) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => Map::new(),
            Ok(other) => {
                return Err(error(
                    "bad-state",
                    "the workflow state is not an object".into(),
                    Some(json!({ "state": other })),
                ));
            }
            Err(e) => {
                return Err(error(
                    "bad-state",
                    format!("the workflow state is not JSON: {e}"),
                    None,
                ));
            }
        };
        let reservations = state
            .get("reservations")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            + 1;
        state.insert(
            "reserved".into(),
            json!({ "order_id": order_id, "units": units }),
        );
        state.insert("reservations".into(), json!(reservations));
        host::set_state(&Value::Object(state).to_string()).map_err(|e| {
            error(
                "state-rejected",
                format!("the host refused the new state: {e}"),
                None,
            )
        })?;

        host::log(
            LogLevel::Info,
            &format!("reserved {units} unit(s) for order {order_id} (reservation #{reservations})"),
        );
        let output = json!({
            "order_id": order_id,
            "reservation_id": format!("res-{order_id}"),
            "total_cents": total_cents,
        });
        Ok(Outcome::Completed(output.to_string()))
    }
}

export!(ReserveStock);
