//! Compiled JSON Schemas.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// A JSON Schema that compiled, together with its source.
#[derive(Clone)]
pub struct Schema {
    source: Arc<Value>,
    validator: Arc<jsonschema::Validator>,
}

/// A schema that does not compile, or a value that fails a schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchemaError {
    /// What is wrong, naming the JSON pointer of each offending value.
    pub message: String,
}

impl Schema {
    /// Compiles `source` (any JSON Schema draft the `jsonschema` crate knows;
    /// 2020-12 when `$schema` is absent).
    ///
    /// # Errors
    /// When `source` is not a valid schema.
    pub fn compile(source: Value) -> Result<Self, SchemaError> {
        let validator = jsonschema::validator_for(&source).map_err(|e| SchemaError {
            message: format!(
                "invalid JSON Schema: {e} (at schema path `{}`)",
                e.schema_path()
            ),
        })?;
        Ok(Self {
            source: Arc::new(source),
            validator: Arc::new(validator),
        })
    }

    /// The schema as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Checks `value`.
    ///
    /// # Errors
    /// When `value` fails the schema; the message lists up to 5 violations,
    /// each with the JSON pointer of the offending value.
    pub fn validate(&self, value: &Value) -> Result<(), SchemaError> {
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let mut parts = Vec::new();
        for error in self.validator.iter_errors(value).take(5) {
            let at = error.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            parts.push(format!("{at}: {error}"));
        }
        Err(SchemaError {
            message: parts.join("; "),
        })
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schema").field(&self.source).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_and_names_the_pointer() {
        let schema = Schema::compile(json!({
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"]
        }))
        .unwrap();
        assert!(schema.validate(&json!({"n": 1})).is_ok());
        let err = schema.validate(&json!({"n": "x"})).unwrap_err();
        assert!(err.message.starts_with("/n: "), "{}", err.message);
    }

    #[test]
    fn rejects_invalid_schemas() {
        let err = Schema::compile(json!({"type": "no-such-type"})).unwrap_err();
        assert!(
            err.message.contains("invalid JSON Schema"),
            "{}",
            err.message
        );
    }
}
