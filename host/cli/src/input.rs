//! JSON arguments: inline text or `@file`.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// Parses `arg` as JSON, or reads the file after `@` and parses that.
/// `what` names the argument in errors (e.g. `--input`).
///
/// # Errors
/// When the file cannot be read or the text is not JSON; the message names
/// the argument (and file) and the line and column.
pub fn json_arg(arg: &str, what: &str) -> anyhow::Result<Value> {
    match arg.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(Path::new(path))
                .with_context(|| format!("{what}: cannot read `{path}`"))?;
            serde_json::from_str(&text).with_context(|| format!("{what}: `{path}` is not JSON"))
        }
        None => serde_json::from_str(arg).with_context(|| format!("{what} is not JSON")),
    }
}
