//! `weft`: run workflows of sandboxed WebAssembly steps.
//!
//! One file per subcommand; this file parses arguments, wires the concrete
//! types together and maps outcomes to exit codes (see [`exit`]).

mod bundle;
mod cancel;
mod client;
mod deploy;
mod engine;
mod exit;
mod home;
mod input;
mod load;
mod new;
mod output;
mod paged;
mod recover;
mod remote;
mod rerun;
mod resume;
mod run;
mod serve;
mod status;
mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

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

    /// Send run, runs, status, events, resume, cancel, rerun and deploy to
    /// this `weft serve` instead of a local store; also WEFT_SERVER
    #[arg(long, global = true, env = "WEFT_SERVER", value_name = "URL")]
    server: Option<String>,

    /// The server's API token (with --server); also WEFT_TOKEN
    #[arg(
        long,
        global = true,
        env = "WEFT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Log verbosity for weft itself (error, warn, info, debug, trace); also RUST_LOG
    #[arg(long, global = true, value_name = "LEVEL", default_value = "warn")]
    log: String,

    /// When a commit to the store is durable: `full` survives power loss
    /// (a flush per commit), `normal` survives a crash of weft but not of
    /// the machine (no flush per commit); also WEFT_DURABILITY
    #[arg(
        long,
        global = true,
        value_enum,
        env = "WEFT_DURABILITY",
        default_value = "full"
    )]
    durability: DurabilityArg,

    /// How long a run's lease lasts without renewal (`500ms`, `10s`, `2m`):
    /// a process driving a run renews it every third of this; after the
    /// process dies, another (`weft recover`) can take the run over this
    /// long after the last renewal, or at once when the dead process was on
    /// this host; also WEFT_LEASE_TTL
    #[arg(
        long,
        global = true,
        env = "WEFT_LEASE_TTL",
        default_value = "10s",
        value_parser = home::parse_duration
    )]
    lease_ttl: std::time::Duration,

    /// The largest component file weft reads (`64MiB`, `100MiB`); a larger
    /// one is refused from its size, unread; also WEFT_MAX_COMPONENT_SIZE
    #[arg(
        long,
        global = true,
        env = "WEFT_MAX_COMPONENT_SIZE",
        default_value = "64MiB",
        value_parser = home::parse_size
    )]
    max_component_size: u64,

    /// CPU time a component may take to compile, per MiB of its size
    /// (counting at least one): each is compiled in a child process stopped
    /// at this limit (`10s`, `500ms`; 60s in a debug build of weft, which
    /// compiles about three times slower); also WEFT_COMPILE_CPU
    #[arg(
        long,
        global = true,
        env = "WEFT_COMPILE_CPU",
        default_value = DEFAULT_COMPILE_CPU,
        value_parser = home::parse_duration
    )]
    compile_cpu: std::time::Duration,

    /// Memory (address space) the process compiling one component may use
    /// (`4GiB`, `512MiB`); also WEFT_COMPILE_MEMORY
    #[arg(
        long,
        global = true,
        env = "WEFT_COMPILE_MEMORY",
        default_value = "4GiB",
        value_parser = home::parse_size
    )]
    compile_memory: u64,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DurabilityArg {
    Full,
    Normal,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a run of a workflow and drive it until it finishes or suspends
    Run(run::Args),
    /// Resume a suspended run
    Resume(resume::Args),
    /// Cancel a running or suspended run
    Cancel(cancel::Args),
    /// Start a new run from an address of a finished, failed, suspended or
    /// canceled run, taking over its results before that address
    Rerun(rerun::Args),
    /// Drive runs left running by a crashed weft process to their end
    Recover(recover::Args),
    /// Show a stored run's status, steps and output
    Status(status::StatusArgs),
    /// List stored runs
    Runs(status::RunsArgs),
    /// Print a stored run's events, one per line
    Events(status::EventsArgs),
    /// Serve the HTTP API: host many runs in one process, recover runs at
    /// start-up, wake sleeping runs when due
    Serve(serve::Args),
    /// Upload a workflow (its manifest and every file it names) to a server
    Deploy(deploy::Args),
    /// Check a manifest and every component it names, without running anything
    Validate(validate::Args),
    /// Write a ready-to-build step project (source, WIT, build.sh, workflow.toml)
    New(new::Args),
    /// (internal) Compile one component under limits, for a weft process
    #[command(hide = true)]
    CompileComponent(CompileArgs),
}

/// `weft compile-component`: what `weft_sandbox::Compiler::Isolated` passes.
#[derive(Debug, clap::Args)]
struct CompileArgs {
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    cpu_ms: u64,
    #[arg(long)]
    memory_bytes: u64,
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(&cli.log);

    let durability = match cli.durability {
        DurabilityArg::Full => weft_store_sqlite::Durability::Full,
        DurabilityArg::Normal => weft_store_sqlite::Durability::Normal,
    };
    let home =
        home::Home::resolve(cli.home, durability, cli.lease_ttl).with_loading(home::Loading {
            max_component_bytes: cli.max_component_size,
            compile: weft_sandbox::CompileLimits {
                cpu_per_mib: cli.compile_cpu,
                memory_bytes: cli.compile_memory,
            },
        });
    let client = cli
        .server
        .as_deref()
        .filter(|url| !url.is_empty())
        .map(|url| client::Client::new(url, cli.token.clone()));
    let server = client.as_ref();
    let outcome = match cli.command {
        Command::Run(args) => run::run(&home, server, args),
        Command::Resume(args) => resume::run(&home, server, args),
        Command::Validate(args) => validate::run(&home, args),
        Command::Recover(args) => recover::run(&home, args),
        Command::Cancel(args) => cancel::run(&home, server, args),
        Command::Rerun(args) => rerun::run(&home, server, args),
        Command::Status(args) => status::status(&home, server, args),
        Command::Runs(args) => status::runs(&home, server, args),
        Command::Events(args) => status::events(&home, server, args),
        Command::New(args) => new::run(args),
        Command::Serve(args) => serve::run(&home, args),
        Command::Deploy(args) => deploy::run(server, args),
        Command::CompileComponent(args) => {
            return match weft_sandbox::compile_in_child(
                &args.input,
                &args.output,
                args.cpu_ms,
                args.memory_bytes,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(reason) => {
                    eprintln!("{reason}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match outcome {
        Ok(code) => code.into(),
        Err(failure) => {
            // `Failure`'s Display prints the cause chain once, escaped.
            eprintln!("error: {failure}");
            failure.code.into()
        }
    }
}

/// The command line, with the options whose values may start with `-`
/// (`--input -1`, `--data -5`, `--reason "-- see ticket"`, a label or run id
/// such as `-urgent`) marked so: clap would otherwise take such a value for
/// an unknown flag. Set here rather than in each subcommand's `Args` so that
/// the list is in one place.
fn command() -> clap::Command {
    const HYPHEN_VALUES: &[(&str, &[&str])] = &[
        ("run", &["input", "run_id"]),
        ("resume", &["data", "label"]),
        ("cancel", &["reason"]),
    ];
    let mut command = Cli::command();
    for (subcommand, args) in HYPHEN_VALUES {
        command = command.mut_subcommand(*subcommand, |mut sub| {
            for arg in *args {
                sub = sub.mut_arg(*arg, |a| a.allow_hyphen_values(true));
            }
            sub
        });
    }
    command
}

/// weft's own log on stderr (`--log LEVEL`, or `RUST_LOG`).
///
/// The default of `--compile-cpu`: a release build compiles about three
/// times faster than a debug one (whose dependencies are built at
/// opt-level 1), so a debug build — the tests' — gets three times the time.
const DEFAULT_COMPILE_CPU: &str = if cfg!(debug_assertions) { "60s" } else { "20s" };

/// Colour only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>). Every field, the message included, is escaped
/// with [`output::escape`]: step log lines are guest text, and a raw CR/LF
/// or ESC in them would forge or hide log lines.
fn init_logging(level: &str) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::field::MakeExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let colour = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(writer, "{}", output::escape(&text))
        } else {
            write!(writer, "{}={}", field.name(), output::escape(&text))
        }
    })
    .delimited(" ");
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .fmt_fields(fields)
        .with_filter(filter);
    // Guest log lines also go to the OTLP exporter while `weft serve` runs one.
    let guest = serve::logs::GuestLogs.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        meta.target() == weft_runtime::GUEST_LOG_TARGET
    }));
    tracing_subscriber::registry().with(log).with(guest).init();
}

/// Whether weft's log is coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }

    #[test]
    fn values_may_start_with_a_hyphen() {
        let value = |args: &[&str], name: &str| {
            let matches = command()
                .try_get_matches_from(args)
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let (_, sub) = matches.subcommand().unwrap();
            sub.get_one::<String>(name).cloned()
        };
        let run = ["weft", "run", "wf.toml", "--input", "-1", "--run-id", "-x"];
        assert_eq!(value(&run, "input").as_deref(), Some("-1"));
        assert_eq!(value(&run, "run_id").as_deref(), Some("-x"));
        let resume = [
            "weft", "resume", "r", "--data", "-2.5", "--label", "-urgent",
        ];
        assert_eq!(value(&resume, "data").as_deref(), Some("-2.5"));
        assert_eq!(value(&resume, "label").as_deref(), Some("-urgent"));
        let cancel = ["weft", "cancel", "r", "--reason", "-- see ticket 12"];
        assert_eq!(
            value(&cancel, "reason").as_deref(),
            Some("-- see ticket 12")
        );
    }
}
