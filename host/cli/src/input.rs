//! JSON arguments: inline text or `@file`.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// The largest file `--input @FILE` and `--data @FILE` read: 16 MiB. A
/// workflow input or resume payload is data for one step (1 MiB by default,
/// `limits.max-input-bytes`); larger data belongs in a store the step reads,
/// passed by reference.
pub const MAX_JSON_FILE_BYTES: u64 = 16 << 20;

/// Parses `arg` as JSON, or reads the file after `@` and parses that. The
/// file must be a regular file (symlinks are followed) of at most
/// [`MAX_JSON_FILE_BYTES`]. `what` names the argument in errors (e.g. `--input`).
///
/// # Errors
/// When the file cannot be read, is not a regular file or is too large, or
/// the text is not JSON; the message names the argument (and file) and the
/// line and column.
pub fn json_arg(arg: &str, what: &str) -> anyhow::Result<Value> {
    match arg.strip_prefix('@') {
        Some(path) => {
            let bytes = weft_manifest::read_file(Path::new(path), MAX_JSON_FILE_BYTES)
                .with_context(|| format!("{what}: cannot read `{path}`"))?;
            serde_json::from_slice(&bytes).with_context(|| format!("{what}: `{path}` is not JSON"))
        }
        None => serde_json::from_str(arg).with_context(|| format!("{what} is not JSON")),
    }
}
