//! `weft serve` under load: a release `weft serve` process on 127.0.0.1
//! (port chosen by the OS) driven through its HTTP API by this process.
//!
//! Run with `cargo bench -p weft-cli --bench serve` after
//! `./guest-examples/build.sh`. It measures, in one run, against one server
//! (store `$WEFT_HOME/weft.db`, `--durability full`, the default):
//!
//! - start → result of a 3-step run (`test-steps`, action `increment`)
//!   through `POST /v1/runs?wait=60s`, sequential requests: p50 and p99;
//! - the same workflow as a `weft run` process per run (evented runtime,
//!   its own SQLite file in the same directory): p50 wall time;
//! - runs/s with 64 concurrent clients (a thread and an HTTP agent each, a
//!   fixed number of waiting starts each);
//! - 100 SSE watchers of one run (a step, a 2 s sleep, a step): the delay
//!   from the `at` stamp of the run's last event (`run-completed`, stamped
//!   just before its commit) until each watcher has read `event: end`, and
//!   the server's RSS while they are open;
//! - the server's RSS idle, and holding 10,000 sleeping runs (a step, then a
//!   600 s sleep; started by 16 clients without `?wait`), once `/metrics`
//!   shows them all running with no attempt in flight; then how long a
//!   SIGTERM takes to stop it.
//!
//! The disk's flush latency (`pwrite` + `fsync` of 64 bytes, 100 times, in
//! the same directory) is probed before and after: it varies between ~40 µs
//! and ~4 ms on the reference VM, and every commit pays it.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a
//! smoke version of every section in a few seconds.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use serde_json::{Value, json};
use weft_core::Event;

/// Every request, and every wait for the server, ends within this.
const BOUND: Duration = Duration::from_secs(120);
/// The API token (given to the server with `--token-file`).
const TOKEN: &str = "bench-token-0123456789abcdef0123456789";

/// How much of each section a run does.
struct Sizes {
    /// Waiting starts before the latency is measured.
    warm: usize,
    /// Sequential waiting starts measured.
    latency: usize,
    /// `weft run` processes measured (after one warm-up).
    cli_runs: usize,
    /// Concurrent clients, and waiting starts each.
    clients: usize,
    per_client: usize,
    /// SSE watchers of one run, and that run's sleep.
    watchers: usize,
    watched_sleep_ms: u64,
    /// Sleeping runs held, and the clients starting them.
    sleepers: usize,
    sleeper_clients: usize,
}

const FULL: Sizes = Sizes {
    warm: 20,
    latency: 200,
    cli_runs: 20,
    clients: 64,
    per_client: 20,
    watchers: 100,
    watched_sleep_ms: 2_000,
    sleepers: 10_000,
    sleeper_clients: 16,
};

const SMOKE: Sizes = Sizes {
    warm: 1,
    latency: 3,
    cli_runs: 2,
    clients: 2,
    per_client: 2,
    watchers: 3,
    watched_sleep_ms: 500,
    sleepers: 20,
    sleeper_clients: 2,
};

/// A `weft serve` process, killed (SIGKILL) and reaped when dropped unless
/// it was stopped before.
struct Server {
    child: Option<Child>,
    pid: i32,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(home: &Path, token_file: &Path) -> Self {
        let log = home.join("server.log");
        let mut child = weft(home)
            .args(["serve", "--listen", "127.0.0.1:0", "--print-address"])
            .arg("--token-file")
            .arg(token_file)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("server log"))
            .spawn()
            .expect("weft serve starts");
        let pid = i32::try_from(child.id()).expect("a pid");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = crossbeam_channel::bounded(16);
        std::thread::spawn(move || {
            // To the end, so the server never writes to a closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.try_send(line);
            }
        });
        let mut server = Self {
            child: Some(child),
            pid,
            url: String::new(),
            log,
        };
        server.url = lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|e| panic!("the server printed no address ({e}): {}", server.log()));
        assert!(
            server.url.starts_with("http://127.0.0.1:"),
            "{}",
            server.url
        );
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The CPU time (user + system, every thread) the server has used.
    fn cpu(&self) -> Duration {
        cpu_time(&format!("/proc/{}/stat", self.pid))
    }

    /// A field of the server's `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the server's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("a kB figure")
            * 1024
    }

    /// Sends SIGTERM; returns the exit code and the time until the exit.
    fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("a running server");
        let t = Instant::now();
        #[allow(unsafe_code)]
        // SAFETY: signalling our own child, not reaped yet.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        while t.elapsed() < BOUND {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status.code(), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not stop within {BOUND:?} of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// User + system CPU time of every thread of a process, from its
/// `/proc/…/stat`.
fn cpu_time(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).expect("a process's stat");
    // The fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .expect("a stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    #[allow(unsafe_code)]
    // SAFETY: `sysconf` reads a configuration value; no memory is involved.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// The `weft` binary, with its home in `home`.
fn weft(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command
        .env("WEFT_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("WEFT_SERVER")
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_DURABILITY");
    command
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(BOUND))
        .build()
        .into()
}

/// POSTs `body` as JSON; the status and the JSON answer.
fn post(agent: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut response = agent
        .post(url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let answer = response
        .body_mut()
        .read_json::<Value>()
        .unwrap_or_else(|e| panic!("POST {url}: not JSON ({e})"));
    (status, answer)
}

/// GETs `url`; the status and the answer as text.
fn get_text(agent: &ureq::Agent, url: &str) -> (u16, String) {
    let mut response = agent
        .get(url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (status, text)
}

/// A sample of a gauge or counter in Prometheus text (`name{labels} value`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The input of every run: `increment` adds 1 to `n` and returns its
/// input, so each step's output is the next step's input.
fn input() -> Value {
    json!({"action": "increment", "n": 0})
}

/// Starts a run of `three` and waits for its result; the time it took.
fn start_and_wait(agent: &ureq::Agent, url: &str) -> Duration {
    let t = Instant::now();
    let (status, run) = post(
        agent,
        &format!("{url}/v1/runs?wait=60s"),
        &json!({"workflow": "three", "input": input()}),
    );
    let took = t.elapsed();
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["output"]["n"], 3, "{run}");
    took
}

/// p-th percentile (0–100) of sorted samples.
fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Writes the manifest `id` (flow `flow`, every step the `test-steps`
/// guest) into `dir`; its path.
fn manifest(dir: &Path, id: &str, flow: &str, steps: &[&str]) -> PathBuf {
    let component =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest-examples/dist/test-steps.wasm");
    assert!(
        component.exists(),
        "{} is missing: run ./guest-examples/build.sh",
        component.display()
    );
    let mut text = format!("id = \"{id}\"\nflow = [{flow}]\n");
    for step in steps {
        text.push_str(&format!(
            "[steps.{step}]\ncomponent = \"{}\"\n",
            component.display()
        ));
    }
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).expect("manifest");
    path
}

fn deploy(home: &Path, url: &str, manifest: &Path) {
    let out = weft(home)
        .arg("deploy")
        .arg(manifest)
        .args(["--server", url, "--token", TOKEN])
        .output()
        .expect("weft deploy runs");
    assert!(
        out.status.success(),
        "weft deploy {}: {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One table row.
fn row(measure: &str, figure: &str) {
    println!("| {measure} | {figure} |");
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let three = manifest(
        dir.path(),
        "three",
        "{ step = \"a\" }, { step = \"b\" }, { step = \"c\" }",
        &["a", "b", "c"],
    );
    let watched = manifest(
        dir.path(),
        "watched",
        &format!(
            "{{ step = \"a\" }}, {{ sleep-ms = {}, id = \"nap\" }}, {{ step = \"b\" }}",
            sizes.watched_sleep_ms
        ),
        &["a", "b"],
    );
    let nap = manifest(
        dir.path(),
        "nap",
        "{ step = \"a\" }, { sleep-ms = 600000, id = \"nap\" }, { step = \"b\" }",
        &["a", "b"],
    );

    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let (flush_p50, flush_p99) = common::fsync_probe(dir.path());
    println!(
        "weft serve bench ({}); commit {commit}; load average at start {}; fsync probe (64 B pwrite + fsync × 100) in {}: p50 {:.0} µs, p99 {:.0} µs\n",
        if full {
            "full"
        } else {
            "smoke: pass --bench to measure"
        },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        dir.path().display(),
        flush_p50.as_secs_f64() * 1e6,
        flush_p99.as_secs_f64() * 1e6,
    );

    let mut server = Server::start(&home, &token_file);
    let url = server.url.clone();
    for m in [&three, &watched, &nap] {
        deploy(&home, &url, m);
    }
    let client = agent();
    let (status, _) = get_text(&client, &format!("{url}/readyz"));
    assert_eq!(status, 200, "not ready: {}", server.log());
    let idle_fresh = server.memory("VmRSS");

    println!("| measure | figure |");
    println!("|---|---:|");

    // 1. Start → result, sequential.
    for _ in 0..sizes.warm {
        start_and_wait(&client, &url);
    }
    let mut latencies: Vec<Duration> = (0..sizes.latency)
        .map(|_| start_and_wait(&client, &url))
        .collect();
    latencies.sort();
    row(
        &format!(
            "3-step run, start → result through the API (`POST /v1/runs?wait=60s`), {} sequential requests after {} warm-up",
            sizes.latency, sizes.warm
        ),
        &format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            ms(pct(&latencies, 50)),
            ms(pct(&latencies, 99))
        ),
    );

    // 2. The same as a `weft run` process per run.
    let cli_db = dir.path().join("cli.db");
    let cli_input = input().to_string();
    let cli_run = || {
        let t = Instant::now();
        let out = weft(&home)
            .arg("run")
            .arg(&three)
            .args(["--input", &cli_input, "--db"])
            .arg(&cli_db)
            .stdout(Stdio::null())
            .output()
            .expect("weft run runs");
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "weft run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    cli_run();
    let mut cli: Vec<Duration> = (0..sizes.cli_runs).map(|_| cli_run()).collect();
    cli.sort();
    row(
        &format!(
            "same workflow, a `weft run` process per run (evented, SQLite FULL, own file), {} sequential after 1 warm-up",
            sizes.cli_runs
        ),
        &format!(
            "p50 {:.2} ms, p99 {:.2} ms ({:.1}× the API's p50)",
            ms(pct(&cli, 50)),
            ms(pct(&cli, 99)),
            ms(pct(&cli, 50)) / ms(pct(&latencies, 50))
        ),
    );

    // 3. Concurrent clients.
    let barrier = Arc::new(Barrier::new(sizes.clients + 1));
    let clients: Vec<_> = (0..sizes.clients)
        .map(|_| {
            let (barrier, url, runs) = (Arc::clone(&barrier), url.clone(), sizes.per_client);
            std::thread::spawn(move || {
                let agent = agent();
                // Connected before the clock starts.
                assert_eq!(get_text(&agent, &format!("{url}/healthz")).0, 200);
                barrier.wait();
                (0..runs)
                    .map(|_| start_and_wait(&agent, &url))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let (server_cpu, own_cpu) = (server.cpu(), cpu_time("/proc/self/stat"));
    let mut each: Vec<Duration> = Vec::new();
    for client in clients {
        each.extend(client.join().expect("a client"));
    }
    let wall = t.elapsed();
    let cores = |used: Duration| used.as_secs_f64() / wall.as_secs_f64();
    let (server_cores, client_cores) = (
        cores(server.cpu().saturating_sub(server_cpu)),
        cores(cpu_time("/proc/self/stat").saturating_sub(own_cpu)),
    );
    each.sort();
    row(
        &format!(
            "{} concurrent clients × {} waiting starts ({} runs, 3 steps each)",
            sizes.clients,
            sizes.per_client,
            each.len()
        ),
        &format!(
            "**{:.0} runs/s** ({:.0} steps/s); per request p50 {:.1} ms, p99 {:.1} ms; CPU: server {:.2} cores, clients {:.2}",
            each.len() as f64 / wall.as_secs_f64(),
            3.0 * each.len() as f64 / wall.as_secs_f64(),
            ms(pct(&each, 50)),
            ms(pct(&each, 99)),
            server_cores,
            client_cores
        ),
    );

    // 4. SSE watchers of one run.
    let before_watch = server.memory("VmRSS");
    let (delays, open_rss) = watch(&server, &client, sizes.watchers);
    row(
        &format!(
            "{} SSE watchers of one run (step, {} s sleep, step): run-completed's `at` → `event: end` read",
            sizes.watchers,
            sizes.watched_sleep_ms as f64 / 1e3
        ),
        &format!(
            "p50 {:.1} ms, max {:.1} ms (first {:.1} ms)",
            ms(pct(&delays, 50)),
            ms(delays[delays.len() - 1]),
            ms(delays[0])
        ),
    );
    row(
        &format!(
            "server RSS with the {} streams open (before opening them)",
            sizes.watchers
        ),
        &format!("{:.1} MiB ({:.1} MiB)", mib(open_rss), mib(before_watch)),
    );

    // 5. Sleeping runs.
    let idle = server.memory("VmRSS");
    row(
        "server RSS idle: after start-up and 3 deploys (after the sections above)",
        &format!("{:.1} MiB ({:.1} MiB)", mib(idle_fresh), mib(idle)),
    );
    let held = sleepers(&server, &client, &sizes);
    row(
        &format!(
            "server RSS holding {} sleeping runs (step, then 600 s sleep), once all asleep",
            sizes.sleepers
        ),
        &format!(
            "**{:.1} MiB**, {:.0} B per run over idle; peak (VmHWM) {:.1} MiB",
            mib(held.rss),
            (held.rss as f64 - idle as f64) / sizes.sleepers as f64,
            mib(held.peak)
        ),
    );
    row(
        &format!(
            "starting them: {} clients, `POST /v1/runs` without wait",
            sizes.sleeper_clients
        ),
        &format!(
            "{:.1} s ({:.0} starts/s); all asleep {:.1} s after the first start; `GET /metrics` then {:.1} ms",
            held.started.as_secs_f64(),
            sizes.sleepers as f64 / held.started.as_secs_f64(),
            held.asleep.as_secs_f64(),
            ms(held.scrape)
        ),
    );
    let (code, took) = server.terminate();
    assert_eq!(
        code,
        Some(0),
        "exit code of a terminated server: {}",
        server.log()
    );
    row(
        &format!("SIGTERM → exit, holding {} sleeping runs", sizes.sleepers),
        &format!("{:.0} ms (exit code 0)", ms(took)),
    );

    let (after_p50, after_p99) = common::fsync_probe(dir.path());
    let log = server.log();
    let noted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    println!(
        "\nfsync probe after: p50 {:.0} µs, p99 {:.0} µs; server log: {} warning/error lines{}; wall time of this bench: {:.1} s",
        after_p50.as_secs_f64() * 1e6,
        after_p99.as_secs_f64() * 1e6,
        noted.len(),
        noted
            .first()
            .map(|l| format!(" (first: {l})"))
            .unwrap_or_default(),
        began.elapsed().as_secs_f64()
    );
}

/// Starts a run of `watched` and opens `n` SSE streams of it while it
/// sleeps; returns each watcher's delay from the `at` of the run's last
/// event to its reading `event: end` (sorted), and the server's RSS while
/// every stream is open.
fn watch(server: &Server, client: &ureq::Agent, n: usize) -> (Vec<Duration>, u64) {
    let url = &server.url;
    let (status, run) = post(
        client,
        &format!("{url}/v1/runs"),
        &json!({"workflow": "watched", "input": input()}),
    );
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().expect("a run id").to_owned();
    let (opened_tx, opened) = crossbeam_channel::bounded(n);
    let watchers: Vec<_> = (0..n)
        .map(|_| {
            let (url, run_id, opened_tx) = (url.clone(), run_id.clone(), opened_tx.clone());
            std::thread::spawn(move || {
                let response = agent()
                    .get(format!("{url}/v1/runs/{run_id}/events"))
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .header("Accept", "text/event-stream")
                    .call()
                    .expect("an event stream");
                assert_eq!(response.status().as_u16(), 200);
                opened_tx.send(()).expect("the bench waits");
                let mut last_at = None;
                let mut ending = false;
                // Ends with the stream: the server closes it after `end`,
                // and the agent's global timeout bounds it.
                for line in BufReader::new(response.into_body().into_reader())
                    .lines()
                    .map_while(Result::ok)
                {
                    if line == "event: end" || line == "event:end" {
                        ending = true;
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if ending {
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .expect("after 1970");
                            let end: Value = serde_json::from_str(data.trim()).expect("end data");
                            assert_eq!(end["status"], "success", "{end}");
                            return (now, last_at.expect("events before the end"));
                        }
                        let event: Event = serde_json::from_str(data.trim()).expect("an event");
                        last_at = Some(event.at());
                    }
                }
                panic!("the stream closed before its end");
            })
        })
        .collect();
    let deadline = Instant::now() + BOUND;
    for _ in 0..n {
        opened
            .recv_deadline(deadline)
            .expect("every watcher opened its stream");
    }
    let rss = server.memory("VmRSS");
    let (_, current) = get_text(client, &format!("{url}/v1/runs/{run_id}"));
    let current: Value = serde_json::from_str(&current).expect("a run");
    assert_eq!(
        current["status"], "running",
        "the run ended before every watcher was open: lengthen its sleep"
    );
    let mut delays: Vec<Duration> = watchers
        .into_iter()
        .map(|w| {
            let (read, at) = w.join().expect("a watcher");
            read.saturating_sub(Duration::from_micros(at.0))
        })
        .collect();
    delays.sort();
    (delays, rss)
}

/// What [`sleepers`] measured.
struct Held {
    /// The server's VmRSS and VmHWM once every run sleeps.
    rss: u64,
    peak: u64,
    /// Until every start was answered; until every run was asleep.
    started: Duration,
    asleep: Duration,
    /// The last `GET /metrics`.
    scrape: Duration,
}

/// Starts `sizes.sleepers` runs of `nap` from `sizes.sleeper_clients`
/// clients and waits until all of them sleep.
fn sleepers(server: &Server, client: &ureq::Agent, sizes: &Sizes) -> Held {
    let url = &server.url;
    let metrics = || {
        let t = Instant::now();
        let (status, text) = get_text(client, &format!("{url}/metrics"));
        assert_eq!(status, 200, "{text}");
        (text, t.elapsed())
    };
    let slept =
        |text: &str| metric(text, "weft_events_total{type=\"sleep-started\"}").unwrap_or(0.0);
    let slept_before = slept(&metrics().0);
    let t = Instant::now();
    let clients: Vec<_> = (0..sizes.sleeper_clients)
        .map(|c| {
            let url = url.clone();
            let runs = (c..sizes.sleepers).step_by(sizes.sleeper_clients).count();
            std::thread::spawn(move || {
                let agent = agent();
                for _ in 0..runs {
                    let (status, run) = post(
                        &agent,
                        &format!("{url}/v1/runs"),
                        &json!({"workflow": "nap", "input": input()}),
                    );
                    assert_eq!(status, 201, "{run}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client");
    }
    let started = t.elapsed();
    let want = sizes.sleepers as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    let scrape = loop {
        let (text, took) = metrics();
        let running = metric(&text, "weft_runs{status=\"running\"}");
        let in_flight = metric(&text, "weft_attempts_in_flight");
        if running == Some(want) && in_flight == Some(0.0) && slept(&text) - slept_before >= want {
            break took;
        }
        assert!(
            Instant::now() < deadline,
            "not all asleep in 300 s: running {running:?}, in flight {in_flight:?}, slept {}",
            slept(&text) - slept_before
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let asleep = t.elapsed();
    Held {
        rss: server.memory("VmRSS"),
        peak: server.memory("VmHWM"),
        started,
        asleep,
        scrape,
    }
}
