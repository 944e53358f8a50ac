//! `weft validate`: check a manifest and its components without running anything.

use std::path::PathBuf;

use crate::exit::{Code, Outcome};
use crate::home::Home;
use crate::load::load;
use crate::output::{self, escape};

/// Arguments of `weft validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workflow manifest (.toml or .json)
    manifest: PathBuf,
}

/// Runs `weft validate`.
pub fn run(home: &Home, args: Args) -> Outcome {
    let loaded = load(home, &args.manifest)?;
    let workflow = loaded.workflow();
    output::print(|out| {
        writeln!(
            out,
            "ok: {}: workflow `{}`, {} steps, {} flow nodes",
            escape(&args.manifest.display().to_string()),
            workflow.id(),
            workflow.steps().count(),
            workflow.flow().len()
        )
    })?;
    Ok(Code::Success)
}
