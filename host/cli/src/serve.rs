//! `weft serve`: one long-running process hosting many runs, with an HTTP
//! API (see [`api`]).
//!
//! Start-up: open (and migrate) the store, set up access, bind the
//! listener, then take over every `running` run no live process holds
//! (recovery; `/readyz` answers 503 until it is done) while serving. From
//! then on a loop takes over each run that becomes claimable — its driver
//! died, or `weft run --detach` left it waiting for a timer — when it is
//! due. Several servers (and `weft run`) on one store are safe: a run has
//! one lease holder at a time.
//!
//! Shutdown (SIGTERM or Ctrl-C): stop accepting and end event streams, let
//! the runtime finish what is in flight within `--grace` (runs that only
//! wait for a timer are let go: they stay in the store with their wake
//! time), release leases, exit 0. A second signal exits at once (130);
//! nothing is lost, the next start recovers.

mod api;
mod auth;
mod host;
pub mod logs;
mod metrics;
mod notify;
mod problem;
mod traces;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use weft_core::EventStore;
use weft_runtime::{RuntimeKind, SystemClock};

use crate::engine;
use crate::exit::{Code, Failure, Outcome};
use crate::home::Home;

/// Arguments of `weft serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on (port 0: one the OS chooses; the address
    /// is logged and, with --print-address, printed)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// The event store [default: $WEFT_HOME/weft.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Threads running step attempts [default: one per core]
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// How long attempts in flight may take to finish at shutdown
    #[arg(long, default_value = "10s", value_parser = crate::home::parse_duration)]
    grace: Duration,
    /// Read the API token from this file instead of generating one
    #[arg(long, value_name = "PATH", conflicts_with = "no_auth")]
    token_file: Option<PathBuf>,
    /// Serve without a token (only on a loopback address)
    #[arg(long)]
    no_auth: bool,
    /// The largest workflow bundle `POST /v1/workflows` takes
    #[arg(long, default_value = "256MiB", value_parser = crate::home::parse_size)]
    max_bundle_size: u64,
    /// The most event streams (SSE) open at once
    #[arg(long, default_value = "1024", value_name = "N")]
    max_streams: usize,
    /// Export a trace per run to this OpenTelemetry collector (OTLP over
    /// HTTP, protobuf: spans are posted to URL/v1/traces)
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Print the address listened on as the first line of stdout, once
    /// listening (for scripts and tests that listen on port 0)
    #[arg(long)]
    print_address: bool,
}

/// Runs `weft serve` until a signal stops it.
pub fn run(home: &Home, args: Args) -> Outcome {
    if args.no_auth && !args.listen.ip().is_loopback() {
        return Err(Failure::invalid(anyhow!(
            "--no-auth is only accepted on a loopback address (not {})",
            args.listen
        )));
    }
    let access = if args.no_auth {
        auth::Access::Open
    } else {
        let (access, generated) =
            auth::setup(args.token_file.as_deref(), &home.token_digest_path())
                .map_err(Failure::invalid)?;
        if let Some(token) = generated {
            eprintln!(
                "weft serve: generated the API token (shown this once; its SHA-256 is in {}):\n{token}",
                home.token_digest_path().display()
            );
        }
        access
    };
    let store = engine::open_store(home, args.db.as_ref())?;
    let changes = notify::changes();
    let meter = Arc::new(metrics::Meter::new());
    let tracer = match args.otlp_endpoint.as_deref().filter(|url| !url.is_empty()) {
        Some(endpoint) => {
            tracing::info!(endpoint, "exporting traces");
            Some(
                traces::Tracer::start(endpoint, Arc::clone(&store))
                    .context("cannot start the trace exporter")
                    .map_err(Failure::other)?,
            )
        }
        None => None,
    };
    let announcing: Arc<dyn EventStore> = Arc::new(notify::Announcing::new(
        Arc::clone(&store) as Arc<dyn EventStore>,
        changes.clone(),
        Arc::clone(&meter),
        tracer,
    ));
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let runtime = RuntimeKind::Evented.build(
        announcing,
        Arc::new(SystemClock),
        workers,
        engine::leases(home),
    );
    let host = Arc::new(host::Host::new(home.clone(), store, runtime, changes));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's I/O threads")
        .map_err(Failure::other)?;
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let server = Arc::new(api::Server {
        host: Arc::clone(&host),
        meter,
        access,
        streams: Arc::new(tokio::sync::Semaphore::new(args.max_streams.max(1))),
        shutdown,
        max_bundle: usize::try_from(args.max_bundle_size).unwrap_or(usize::MAX),
    });
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {}", args.listen))
        .map_err(Failure::other)?;
    let address = listener
        .local_addr()
        .context("cannot read the address listened on")
        .map_err(Failure::other)?;
    tracing::info!(%address, "listening");
    eprintln!("weft serve: listening on http://{address}");
    if args.print_address {
        crate::output::print(|out| writeln!(out, "http://{address}"))?;
    }
    // Recovery, then the loop that takes over claimable runs, on a thread
    // of its own: it blocks on the store and the runtime.
    let (stop_recovery, recovery_stops) = crossbeam_channel::bounded::<()>(1);
    let tick = (home.lease_ttl() / 3).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let recovery = {
        let host = Arc::clone(&host);
        std::thread::Builder::new()
            .name("weft-recovery".into())
            .spawn(move || host.recover(tick, &recovery_stops))
            .context("cannot start the recovery thread")
            .map_err(Failure::other)?
    };
    let app = api::router(server);
    let closing = Arc::clone(&host);
    let served = tokio.block_on(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                signalled().await;
                tracing::info!("shutting down: no new requests");
                eprintln!("weft serve: shutting down (a second signal exits at once)");
                let _ = shutdown_tx.send(true);
                closing.close();
                // A second signal: exit now; the next start recovers.
                tokio::spawn(async {
                    signalled().await;
                    eprintln!("weft serve: exiting at once");
                    std::process::exit(130);
                });
            })
            .await
    });
    let _ = stop_recovery.send(());
    let _ = recovery.join();
    // Connections still open (idle keep-alives) and their tasks go with the
    // I/O threads; requests waiting on runs were answered by `close`.
    tokio.shutdown_timeout(Duration::from_secs(1));
    served
        .context("the server failed")
        .map_err(Failure::other)?;
    // Requests are done: nothing else holds the host.
    let Ok(host) = Arc::try_unwrap(host) else {
        tracing::warn!("a request still holds the server's state; exiting without draining");
        return Ok(Code::Success);
    };
    let runtime = host.into_runtime();
    // Draining starts no new attempt: those in flight finish and are
    // recorded, then every run is let go, its lease released in one commit,
    // for the next host to carry on. Past the grace period the process
    // exits with attempts still running; their runs are recovered (the
    // attempts delivered again) at the next start.
    let (dropped, done) = crossbeam_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        runtime.drain();
        drop(runtime);
        let _ = dropped.send(());
    });
    if done.recv_timeout(args.grace).is_err() {
        tracing::warn!("the grace period ended with work in flight; the next start recovers it");
        eprintln!("weft serve: grace period over; runs in flight continue at the next start");
    }
    tracing::info!("stopped");
    Ok(Code::Success)
}

/// The first SIGTERM or Ctrl-C (SIGINT).
async fn signalled() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
