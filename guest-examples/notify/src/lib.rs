//! `notify`: publishes custom events.
//!
//! Emits `notification` `{"channel": "email", "order_id"}` and `progress`
//! `{"percent": 100}`, then completes with `{"notified": true, "order_id",
//! "events": 2, "customer"}`, `customer` being read from the workflow input
//! (`null` when it has none).

use serde_json::{Value, json};
use weft::step::host;

wit_bindgen::generate!({ path: "../../wit", world: "step" });

struct Notify;

impl Guest for Notify {
    fn run(input: Json, _ctx: StepContext) -> Result<Outcome, StepError> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        let order_id = input.get("order_id").cloned().unwrap_or(Value::Null);
        let workflow_input: Value =
            serde_json::from_str(&host::workflow_input()).unwrap_or(Value::Null);
        let customer = workflow_input
            .get("customer")
            .cloned()
            .unwrap_or(Value::Null);

        host::emit(
            "notification",
            &json!({ "channel": "email", "order_id": order_id }).to_string(),
        );
        host::emit("progress", &json!({ "percent": 100 }).to_string());

        let output = json!({
            "notified": true,
            "order_id": order_id,
            "events": 2,
            "customer": customer,
        });
        Ok(Outcome::Completed(output.to_string()))
    }
}

export!(Notify);
