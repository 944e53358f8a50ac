//! `weft deploy`: upload a workflow bundle to a server.

use std::path::PathBuf;

use serde_json::Value;

use crate::client::Client;
use crate::exit::{Code, Failure, Outcome};
use crate::{bundle, output};

/// Arguments of `weft deploy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workflow manifest (.toml or .json); the bundle holds it and
    /// every file it names (schemas, nested manifests, components)
    manifest: PathBuf,
    /// Print the server's answer as one JSON object
    #[arg(long)]
    json: bool,
}

/// Runs `weft deploy`: packs the bundle, uploads it, prints the workflow
/// id and the version's digest.
pub fn run(server: Option<&Client>, args: Args) -> Outcome {
    let client = server.ok_or_else(|| {
        Failure::invalid(anyhow::anyhow!(
            "weft deploy uploads to a server: give --server URL (or set WEFT_SERVER)"
        ))
    })?;
    let bytes = bundle::pack(&args.manifest).map_err(Failure::invalid)?;
    let answer = client
        .post_bytes("/v1/workflows", "application/x-tar", &bytes)?
        .ok()?;
    output::print(|out| {
        if args.json {
            serde_json::to_writer(&mut *out, &answer)?;
            return writeln!(out);
        }
        let text = |name: &str| answer.get(name).and_then(Value::as_str).unwrap_or("");
        let new = answer.get("new").and_then(Value::as_bool).unwrap_or(false);
        writeln!(
            out,
            "{} {} ({})",
            output::escape(text("id")),
            output::escape(text("digest")),
            if new {
                "deployed"
            } else {
                "unchanged: deployed already"
            }
        )
    })?;
    Ok(Code::Success)
}
