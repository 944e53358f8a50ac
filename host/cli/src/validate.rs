//! `weft validate`: check a manifest and its components without running anything.

use std::path::PathBuf;

use crate::exit::{Code, Outcome};
use crate::home::Home;
use crate::load::load;

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
    println!(
        "ok: {}: workflow `{}`, {} steps, {} flow nodes",
        args.manifest.display(),
        workflow.id(),
        workflow.steps().count(),
        workflow.flow().len()
    );
    Ok(Code::Success)
}
