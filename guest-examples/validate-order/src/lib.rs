//! `validate-order`: a pure transform.
//!
//! Input: `{"order_id": string, "customer": string,
//!          "items": [{"sku": string, "qty": int, "unit_price_cents": int}]}`.
//! Output: the same fields plus `total_cents` (sum of qty * unit_price_cents) and
//! `item_count` (sum of qty).
//!
//! Errors: `bad-input` when the input does not have that shape; `invalid-order`
//! (not retryable) when there are no items, a quantity is not positive, or the
//! totals overflow. Its details name the offending item index.

use serde::Deserialize;
use serde_json::{Value, json};

wit_bindgen::generate!({ path: "../../wit", world: "step" });

#[derive(Deserialize)]
struct Order {
    order_id: String,
    customer: String,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    sku: String,
    qty: i64,
    unit_price_cents: i64,
}

fn error(code: &str, message: String, details: Value) -> StepError {
    StepError {
        code: code.into(),
        message,
        details: Some(details.to_string()),
        retryable: false,
        causes: Vec::new(),
    }
}

struct ValidateOrder;

impl Guest for ValidateOrder {
    fn run(input: Json, _ctx: StepContext) -> Result<Outcome, StepError> {
        let order: Order = serde_json::from_str(&input).map_err(|e| {
            error(
                "bad-input",
                format!("input is not an order: {e}"),
                json!({ "line": e.line(), "column": e.column() }),
            )
        })?;
        if order.items.is_empty() {
            return Err(error(
                "invalid-order",
                "the order has no items".into(),
                json!({ "order_id": order.order_id, "item_index": null, "reason": "no items" }),
            ));
        }
        let mut total_cents: i64 = 0;
        let mut item_count: i64 = 0;
        for (index, item) in order.items.iter().enumerate() {
            if item.qty <= 0 {
                return Err(error(
                    "invalid-order",
                    format!(
                        "item {index} ({}) has a non-positive quantity {}",
                        item.sku, item.qty
                    ),
                    json!({
                        "order_id": order.order_id,
                        "item_index": index,
                        "sku": item.sku,
                        "qty": item.qty,
                        "reason": "quantity must be positive",
                    }),
                ));
            }
            let line = item.qty.checked_mul(item.unit_price_cents);
            match (
                line.and_then(|l| total_cents.checked_add(l)),
                item_count.checked_add(item.qty),
            ) {
                (Some(t), Some(c)) => {
                    total_cents = t;
                    item_count = c;
                }
                _ => {
                    return Err(error(
                        "invalid-order",
                        format!("item {index} ({}) makes the order total overflow", item.sku),
                        json!({
                            "order_id": order.order_id,
                            "item_index": index,
                            "sku": item.sku,
                            "reason": "total overflows",
                        }),
                    ));
                }
            }
        }
        let items: Vec<Value> = order
            .items
            .iter()
            .map(|i| json!({ "sku": i.sku, "qty": i.qty, "unit_price_cents": i.unit_price_cents }))
            .collect();
        let output = json!({
            "order_id": order.order_id,
            "customer": order.customer,
            "items": items,
            "total_cents": total_cents,
            "item_count": item_count,
        });
        Ok(Outcome::Completed(output.to_string()))
    }
}

export!(ValidateOrder);
