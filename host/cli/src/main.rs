//! `weft`: run workflows of sandboxed WebAssembly steps.
//!
//! One file per subcommand; this file parses arguments, wires the concrete
//! types together and maps outcomes to exit codes (see [`exit`]).

mod cancel;
mod engine;
mod exit;
mod home;
mod input;
mod load;
mod output;
mod recover;
mod resume;
mod run;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run workflows whose steps are sandboxed WebAssembly components.
///
/// Exit codes: 0 success, 1 the run failed, 2 invalid manifest, input,
/// resume data or usage, 3 the run is suspended, 4 the run was canceled,
/// 5 any other error (I/O, internal).
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Where weft keeps saved runs and its compile cache
    /// [default: $WEFT_HOME, else $XDG_DATA_HOME/weft, else ~/.local/share/weft]
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,

    /// Log verbosity for weft itself (error, warn, info, debug, trace); also RUST_LOG
    #[arg(long, global = true, value_name = "LEVEL", default_value = "warn")]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a run of a workflow and drive it until it finishes or suspends
    Run(run::Args),
    /// Resume a suspended run
    Resume(resume::Args),
    /// Cancel a running or suspended run
    Cancel(cancel::Args),
    /// Drive runs left running by a crashed weft process to their end
    Recover(recover::Args),
    /// Show a stored run's status, steps and output
    Status(status::StatusArgs),
    /// List stored runs
    Runs(status::RunsArgs),
    /// Print a stored run's events, one per line
    Events(status::EventsArgs),
    /// Check a manifest and every component it names, without running anything
    Validate(validate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let home = home::Home::resolve(cli.home);
    let outcome = match cli.command {
        Command::Run(args) => run::run(&home, args),
        Command::Resume(args) => resume::run(&home, args),
        Command::Validate(args) => validate::run(&home, args),
        Command::Recover(args) => recover::run(&home, args),
        Command::Cancel(args) => cancel::run(&home, args),
        Command::Status(args) => status::status(&home, args),
        Command::Runs(args) => status::runs(&home, args),
        Command::Events(args) => status::events(&home, args),
    };
    match outcome {
        Ok(code) => code.into(),
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.code.into()
        }
    }
}
