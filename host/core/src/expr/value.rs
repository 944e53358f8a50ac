//! Values between JSON and CEL (the rules are in the parent module's documentation).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::Value as Cel;
use cel::objects::{Key, Map};
use serde_json::{Number, Value as Json};

use super::message::{show, type_name};

/// The CEL value of a JSON value (see the module's documentation).
pub(super) fn to_cel(value: &Json) -> Cel {
    match value {
        Json::Null => Cel::Null,
        Json::Bool(b) => Cel::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Cel::String(Arc::new(s.clone())),
        Json::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(fields) => {
            let map: HashMap<Key, Cel> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Cel::Map(Map { map: Arc::new(map) })
        }
    }
}

/// The JSON value of a CEL value (see the module's documentation).
pub(super) fn to_json(value: &Cel) -> Result<Json, String> {
    Ok(match value {
        Cel::Null => Json::Null,
        Cel::Bool(b) => Json::Bool(*b),
        Cel::Int(i) => Json::from(*i),
        Cel::UInt(u) => Json::from(*u),
        Cel::Float(f) => {
            Json::Number(Number::from_f64(*f).ok_or_else(|| {
                format!("the double {} is not representable in JSON", show(value))
            })?)
        }
        Cel::String(s) => Json::String(s.to_string()),
        Cel::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Cel::Map(map) => {
            let mut fields = BTreeMap::new();
            for (key, item) in map.map.iter() {
                let name = match key {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                if fields.insert(name.clone(), to_json(item)?).is_some() {
                    return Err(format!(
                        "the map has two keys that both become the JSON key \"{name}\""
                    ));
                }
            }
            Json::Object(fields.into_iter().collect())
        }
        Cel::Timestamp(_) | Cel::Duration(_) => Json::String(time_text(value).unwrap_or_default()),
        other => {
            return Err(format!(
                "a value of type {} is not representable in JSON",
                type_name(other)
            ));
        }
    })
}

/// A timestamp or duration as CEL's `string()` prints it: a timestamp in
/// UTC with `Z` and a fractional second only when not zero, trimmed
/// (`2026-11-29T10:00:01.5Z`); a duration in seconds, with a trimmed
/// fractional part when not whole, then `s` (`1.5s`, `-2s`). `None` for
/// other values. (Matching here lets the chrono types stay unnamed, so weft
/// does not depend on chrono itself.)
pub(super) fn time_text(value: &Cel) -> Option<String> {
    let fraction = |nanos: u32| {
        let digits = format!("{nanos:09}");
        digits.trim_end_matches('0').to_owned()
    };
    match value {
        Cel::Timestamp(t) => {
            let base = t.naive_utc().format("%Y-%m-%dT%H:%M:%S");
            // Leap seconds are nanoseconds past 1e9.
            let nanos = t.timestamp_subsec_nanos() % 1_000_000_000;
            Some(if nanos == 0 {
                format!("{base}Z")
            } else {
                format!("{base}.{}Z", fraction(nanos))
            })
        }
        Cel::Duration(d) => {
            let seconds = d.num_seconds();
            let nanos = d.subsec_nanos();
            let sign = if seconds < 0 || nanos < 0 { "-" } else { "" };
            let seconds = seconds.unsigned_abs();
            Some(match nanos.unsigned_abs() {
                0 => format!("{sign}{seconds}s"),
                nanos => format!("{sign}{seconds}.{}s", fraction(nanos)),
            })
        }
        _ => None,
    }
}
