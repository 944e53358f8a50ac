//! Several `weft serve` hosts on one PostgreSQL store, next to one host on
//! SQLite: release `weft serve` processes on 127.0.0.1 (ports chosen by the
//! OS), each with its own `WEFT_HOME`, driven through their HTTP API by this
//! process.
//!
//! Run with `cargo bench -p weft-cli --bench hosts` after
//! `./guest-examples/build.sh`. PostgreSQL is the one `WEFT_TEST_PG` names
//! (default `postgres://postgres@127.0.0.1:5432/test`), reached with `psql`
//! for setup and statistics; the bench creates a database of its own
//! (`weft_bench_hosts_PID`, a schema per section in it) and drops it at the
//! end. Without a reachable PostgreSQL (or `psql`) it says so and measures
//! SQLite only. In one run it measures:
//!
//! 1. durable steps/s: 100 runs of a 10-step sequential workflow started at
//!    once (a client thread each, `POST /v1/runs?wait=60s`, spread over the
//!    hosts round-robin), until every run has settled: 1 host on SQLite
//!    (`--durability full`), 1, 2 and 3 hosts on one PostgreSQL schema;
//!    with the CPU each side used over the measured rounds;
//! 2. start → result of a 3-step run (`POST /v1/runs?wait=30s`, sequential):
//!    p50 and p99, on SQLite FULL and on PostgreSQL (1 host);
//! 3. lease takeover after kill -9: two hosts with `--lease-ttl 2s`, a run
//!    (step, 500 ms sleep, step) started on host A and asleep there, A
//!    killed (SIGKILL); the time from the kill to the run's next committed
//!    event (read from host B's events API), and to its settling;
//! 4. the database-side cost of a step on PostgreSQL (1 host): deltas of
//!    `pg_stat_database` (commits, rows inserted/updated) over the 100 × 10
//!    burst, net of an identical host lifetime without the burst; client →
//!    server TCP data segments of the host's connections (`ss`: one per
//!    round trip of the synchronous client); `pg_stat_statements` calls
//!    when the server preloads it;
//! 5. the disk's flush latency (before and after) and the server's
//!    `synchronous_commit`, `fsync` and `wal_sync_method`.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does a
//! smoke version of every section in a few seconds.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

mod common;

use serde_json::{Value, json};

/// Every request, and every wait for a server, ends within this.
const BOUND: Duration = Duration::from_secs(120);
/// The API token (given to the servers with `--token-file`).
const TOKEN: &str = "bench-token-0123456789abcdef0123456789";

/// How much of each section a run does.
struct Sizes {
    /// Runs of the 10-step workflow started at once, per round.
    runs: usize,
    /// Unmeasured rounds, then measured rounds, per configuration.
    warm_rounds: usize,
    rounds: usize,
    /// Host counts on PostgreSQL.
    hosts: &'static [usize],
    /// Waiting 3-step starts before the latency is measured, and measured.
    latency_warm: usize,
    latency: usize,
    /// Takeover rounds, the lease ttl and the run's sleep.
    takeovers: usize,
    ttl_ms: u64,
    nap_ms: u64,
    /// How long each host lives in the database-cost section, and the
    /// runs of `ten` it does one at a time in one of them.
    lifetime: Duration,
    one_at_a_time: usize,
}

const FULL: Sizes = Sizes {
    runs: 100,
    warm_rounds: 1,
    rounds: 5,
    hosts: &[1, 2, 3],
    latency_warm: 20,
    latency: 200,
    takeovers: 5,
    ttl_ms: 2_000,
    nap_ms: 500,
    lifetime: Duration::from_secs(4),
    one_at_a_time: 20,
};

const SMOKE: Sizes = Sizes {
    runs: 4,
    warm_rounds: 0,
    rounds: 1,
    hosts: &[1, 2],
    latency_warm: 1,
    latency: 2,
    takeovers: 1,
    ttl_ms: 1_000,
    nap_ms: 300,
    lifetime: Duration::from_secs(1),
    one_at_a_time: 2,
};

/// Steps of the throughput workflow.
const TEN: u64 = 10;

/// A `weft serve` process, killed (SIGKILL) and reaped when dropped unless
/// it was stopped before.
struct Server {
    child: Option<Child>,
    pid: i32,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `weft serve` with its home in `home` and `args`, and waits
    /// until `/readyz` answers 200.
    fn start(home: &Path, token_file: &Path, args: &[String]) -> Self {
        std::fs::create_dir_all(home).expect("home");
        let log = home.join("server.log");
        let mut child = weft(home)
            .args(["serve", "--listen", "127.0.0.1:0", "--print-address"])
            .args(args)
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
        let client = agent();
        let deadline = Instant::now() + BOUND;
        while get_text(&client, &format!("{}/readyz", server.url)).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "not ready within {BOUND:?}: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of its log at WARN or ERROR, but for the answers to this
    /// bench's `/readyz` polls before it is ready.
    fn warnings(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| !l.contains("start-up recovery is still running"))
            .map(str::to_owned)
            .collect()
    }

    /// The CPU time (user + system, every thread) the server has used.
    fn cpu(&self) -> Duration {
        cpu_time(&format!("/proc/{}/stat", self.pid))
    }

    fn signal(&self, signal: i32) {
        #[allow(unsafe_code)]
        // SAFETY: signalling our own child, not reaped yet.
        unsafe {
            libc::kill(self.pid, signal);
        }
    }

    /// Sends SIGTERM and waits for the exit; its code.
    fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("a running server");
        self.signal(libc::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < BOUND {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not stop within {BOUND:?} of SIGTERM");
    }

    /// Sends SIGKILL (the returned instant is just before) and reaps it.
    fn kill9(&mut self) -> Instant {
        let mut child = self.child.take().expect("a running server");
        let t = Instant::now();
        self.signal(libc::SIGKILL);
        child.wait().expect("the killed server is reaped");
        t
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
/// `/proc/…/stat` (zero once it is gone).
fn cpu_time(stat: &str) -> Duration {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return Duration::ZERO;
    };
    // The fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let Some((_, after)) = text.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|t| t.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|t| t.parse().ok()).unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    #[allow(unsafe_code)]
    // SAFETY: `sysconf` reads a configuration value; no memory is involved.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(per_second)
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100) as f64
}

/// The machine's busy CPU time (every core: user, nice, system, irq,
/// softirq, steal) from `/proc/stat`.
fn machine_busy() -> Duration {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks())
}

/// The CPU time of each PostgreSQL process by pid: the backends connected
/// to `database` (their process title names it), and the others (the
/// server's own processes, other databases' sessions).
fn postgres_cpu(database: Option<&str>) -> [HashMap<u32, Duration>; 2] {
    let mut cpu = [HashMap::new(), HashMap::new()];
    let Some(database) = database else {
        return cpu;
    };
    let needle = format!(" {database} ");
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        let title = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&title).contains(&needle);
        cpu[usize::from(!ours)].insert(pid, cpu_time(&format!("/proc/{pid}/stat")));
    }
    cpu
}

/// CPU used between two moments, split by who used it.
struct Cpu {
    hosts: Duration,
    /// The bench's database's backends, and PostgreSQL's other processes.
    postgres: [HashMap<u32, Duration>; 2],
    bench: Duration,
    machine: Duration,
}

/// What [`Cpu::since`] splits CPU time into.
const CPU_PARTS: [&str; 5] = [
    "hosts",
    "PG backends",
    "other PG processes",
    "bench",
    "machine",
];

impl Cpu {
    fn now(hosts: &[Server], database: Option<&str>) -> Self {
        Self {
            hosts: hosts.iter().map(Server::cpu).sum(),
            postgres: postgres_cpu(database),
            bench: cpu_time("/proc/self/stat"),
            machine: machine_busy(),
        }
    }

    /// CPU seconds used since `before`, as [`CPU_PARTS`] names them.
    fn since(&self, before: &Self) -> [f64; 5] {
        let postgres = |i: usize| -> Duration {
            self.postgres[i]
                .iter()
                .map(|(pid, t)| {
                    t.saturating_sub(before.postgres[i].get(pid).copied().unwrap_or_default())
                })
                .sum()
        };
        [
            self.hosts.saturating_sub(before.hosts),
            postgres(0),
            postgres(1),
            self.bench.saturating_sub(before.bench),
            self.machine.saturating_sub(before.machine),
        ]
        .map(|d| d.as_secs_f64())
    }
}

/// "hosts 1.02, PG backends 0.40, …" of `cores`.
fn cores_text(cores: &[f64; 5]) -> String {
    CPU_PARTS
        .iter()
        .zip(cores)
        .map(|(part, c)| format!("{part} {c:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `weft` binary, with its home in `home`.
fn weft(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command
        .env("WEFT_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("WEFT_SERVER")
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_DB")
        .env_remove("WEFT_LEASE_TTL")
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

/// GETs `url` as JSON, expecting 200.
fn get_json(agent: &ureq::Agent, url: &str) -> Value {
    let (status, text) = get_text(agent, url);
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e})"))
}

/// The input of every run: `increment` adds 1 to `n` and returns its
/// input, so each step's output is the next step's input.
fn input() -> Value {
    json!({"action": "increment", "n": 0})
}

/// Starts a run of `workflow` and waits (`?wait=`) for its result
/// (`steps` steps);
/// the time it took and the run id.
fn start_and_wait(
    agent: &ureq::Agent,
    url: &str,
    wait: &str,
    workflow: &str,
    steps: u64,
) -> (Duration, String) {
    let t = Instant::now();
    let (status, run) = post(
        agent,
        &format!("{url}/v1/runs?wait={wait}"),
        &json!({"workflow": workflow, "input": input()}),
    );
    let took = t.elapsed();
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["output"]["n"], steps, "{run}");
    let id = run["run_id"].as_str().expect("a run id").to_owned();
    (took, id)
}

/// p-th percentile (0–100) of sorted samples.
fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Writes the manifest `id` (flow `flow`, every step the `test-steps`
/// guest) into `dir`; its path.
fn manifest(dir: &Path, id: &str, flow: &str, steps: &[String]) -> PathBuf {
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

/// The PostgreSQL the bench uses, reached with `psql`: a database of its
/// own, dropped when this is dropped.
struct Pg {
    /// The URL as given (`WEFT_TEST_PG`), without its query.
    admin: String,
    /// `scheme://user@host:port`, and the bench's database.
    server: String,
    database: String,
    port: String,
    /// Whether the server preloads `pg_stat_statements` (then the bench's
    /// database has the extension).
    statements: bool,
}

impl Pg {
    /// Connects and creates the bench's database; why not, when it cannot.
    fn open() -> Result<Self, String> {
        let given = std::env::var("WEFT_TEST_PG")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
        let admin = given.split('?').next().unwrap_or_default().to_owned();
        let authority_at = admin.find("://").ok_or("not a postgres:// URL")? + 3;
        let server = match admin[authority_at..].find('/') {
            Some(slash) => admin[..authority_at + slash].to_owned(),
            None => admin.clone(),
        };
        let host_port = server[authority_at..]
            .rsplit('@')
            .next()
            .unwrap_or_default();
        let port = host_port
            .rsplit_once(':')
            .map_or("5432", |(_, p)| p)
            .to_owned();
        let mut pg = Self {
            admin,
            server,
            database: format!("weft_bench_hosts_{}", std::process::id()),
            port,
            statements: false,
        };
        pg.admin_sql("SELECT 1")
            .map_err(|e| format!("{} does not answer: {e}", pg.admin))?;
        pg.admin_sql(&format!("CREATE DATABASE {}", pg.database))
            .map_err(|e| format!("cannot create a database: {e}"))?;
        pg.statements = pg
            .admin_sql("SELECT current_setting('shared_preload_libraries')")
            .is_ok_and(|l| l.contains("pg_stat_statements"))
            && pg
                .own_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .is_ok();
        Ok(pg)
    }

    /// The store URL of `schema` in the bench's database.
    fn store(&self, schema: &str) -> String {
        format!("{}/{}?schema={schema}", self.server, self.database)
    }

    fn admin_sql(&self, sql: &str) -> Result<String, String> {
        psql(&self.admin, sql)
    }

    fn own_sql(&self, sql: &str) -> Result<String, String> {
        psql(&format!("{}/{}", self.server, self.database), sql)
    }

    /// Waits until no session is connected to the bench's database (so
    /// that every backend has flushed its statistics at its exit).
    fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self
                .admin_sql(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
                    self.database
                ))
                .expect("pg_stat_activity");
            if n.trim() == "0" {
                break;
            }
            assert!(Instant::now() < deadline, "{n} sessions stay connected");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    /// `pg_stat_database` of the bench's database: commits, rollbacks,
    /// rows inserted, updated, deleted.
    fn stats(&self) -> [i64; 5] {
        let text = self
            .admin_sql(&format!(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted \
                 FROM pg_stat_database WHERE datname = '{}'",
                self.database
            ))
            .expect("pg_stat_database");
        let values: Vec<i64> = text
            .trim()
            .split('\u{1f}')
            .map(|v| v.parse().expect("a counter"))
            .collect();
        values.try_into().expect("five counters")
    }

    /// `pg_stat_statements` calls in the bench's database by statement,
    /// when the server preloads it.
    fn statements(&self) -> Option<HashMap<String, (i64, String)>> {
        if !self.statements {
            return None;
        }
        let text = self
            .own_sql(&format!(
                "SELECT queryid, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) \
                 FROM pg_stat_statements WHERE dbid = \
                 (SELECT oid FROM pg_database WHERE datname = '{}')",
                self.database
            ))
            .ok()?;
        Some(
            text.split('\u{1e}')
                .filter_map(|record| {
                    let mut fields = record.split('\u{1f}');
                    let id = fields.next()?.trim().to_owned();
                    let calls = fields.next()?.parse().ok()?;
                    Some((id, (calls, fields.next().unwrap_or_default().to_owned())))
                })
                .collect(),
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Err(e) = self.admin_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        )) {
            eprintln!("cannot drop the database {}: {e}", self.database);
        }
    }
}

/// Runs one statement with `psql` (unaligned, tuples only; fields split by
/// U+1F, records by U+1E); its output.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-F", "\u{1f}", "-R", "\u{1e}", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGOPTIONS", "-c statement_timeout=30000")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Client → server TCP data segments of each connection of `pid` to
/// `port`, by local address (`ss -tinp`).
fn segments(pid: i32, port: &str) -> HashMap<String, u64> {
    let out = Command::new("ss")
        .args(["-tinpH", &format!("dport = :{port}")])
        .output();
    let Ok(out) = out else {
        return HashMap::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let owner = format!("pid={pid},");
    let mut by_socket = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = line.contains(&owner).then(|| {
                line.split_whitespace()
                    .nth(3)
                    .unwrap_or_default()
                    .to_owned()
            });
        } else if let Some(socket) = &current
            && let Some(n) = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("data_segs_out:"))
                .and_then(|n| n.parse::<u64>().ok())
        {
            by_socket.insert(socket.clone(), n);
        }
    }
    by_socket
}

/// Which store a configuration's hosts share.
#[derive(Clone)]
enum Db {
    Sqlite,
    Postgres(String),
}

impl Db {
    fn args(&self, lease_ttl: Option<u64>) -> Vec<String> {
        let mut args = match self {
            Self::Sqlite => vec!["--durability".into(), "full".into()],
            Self::Postgres(url) => vec!["--db".into(), url.clone()],
        };
        if let Some(ms) = lease_ttl {
            args.extend(["--lease-ttl".into(), format!("{ms}ms")]);
        }
        args
    }
}

/// Starts `runs` runs of `ten` at once, a client thread each (connected
/// before the clock starts), spread over `urls`; waits until all have
/// settled. The time from the start to the last result, one run's id, and
/// the CPU used meanwhile (`cpu` is read at the start and the end).
fn burst(urls: &[String], runs: usize, cpu: &dyn Fn() -> Cpu) -> (Duration, String, [f64; 5]) {
    let barrier = Arc::new(Barrier::new(runs + 1));
    let clients: Vec<_> = (0..runs)
        .map(|i| {
            let (barrier, url) = (Arc::clone(&barrier), urls[i % urls.len()].clone());
            std::thread::spawn(move || {
                let agent = agent();
                assert_eq!(get_text(&agent, &format!("{url}/healthz")).0, 200);
                barrier.wait();
                start_and_wait(&agent, &url, "60s", "ten", TEN).1
            })
        })
        .collect();
    let before = cpu();
    barrier.wait();
    let t = Instant::now();
    let ids: Vec<String> = clients
        .into_iter()
        .map(|c| c.join().expect("a client"))
        .collect();
    let took = t.elapsed();
    let used = cpu().since(&before);
    (took, ids.into_iter().next().expect("a run"), used)
}

/// What one configuration measured.
struct Throughput {
    label: String,
    /// Steps/s of each measured round.
    rates: Vec<f64>,
    /// Cores used over the measured rounds ([`CPU_PARTS`]).
    cores: [f64; 5],
    /// Events a 10-step run records.
    events: usize,
}

/// Paths and manifests every section uses.
struct Setup {
    dir: PathBuf,
    token_file: PathBuf,
    manifests: Vec<PathBuf>,
}

impl Setup {
    /// Starts `n` hosts on `db` (homes `dir/NAME-hI`) and deploys every
    /// workflow to each.
    fn hosts(&self, name: &str, n: usize, db: &Db, lease_ttl: Option<u64>) -> Vec<Server> {
        (0..n)
            .map(|i| {
                let home = self.dir.join(format!("{name}-h{i}"));
                let server = Server::start(&home, &self.token_file, &db.args(lease_ttl));
                for m in &self.manifests {
                    deploy(&home, &server.url, m);
                }
                server
            })
            .collect()
    }
}

/// Section 1 for one configuration (and section 2 when it has one host).
fn throughput(
    setup: &Setup,
    sizes: &Sizes,
    label: &str,
    name: &str,
    n: usize,
    db: &Db,
    database: Option<&str>,
) -> (Throughput, Vec<Server>) {
    let servers = setup.hosts(name, n, db, None);
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    if n == 1 {
        let client = agent();
        for _ in 0..sizes.latency_warm {
            start_and_wait(&client, &urls[0], "30s", "three", 3);
        }
        let mut latencies: Vec<Duration> = (0..sizes.latency)
            .map(|_| start_and_wait(&client, &urls[0], "30s", "three", 3).0)
            .collect();
        latencies.sort();
        row(
            &format!(
                "{label}: 3-step run, start → result (`POST /v1/runs?wait=30s`), {} sequential after {} warm-up",
                sizes.latency, sizes.latency_warm
            ),
            &format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                ms(pct(&latencies, 50)),
                ms(pct(&latencies, 99))
            ),
        );
    }
    let cpu = || Cpu::now(&servers, database);
    for _ in 0..sizes.warm_rounds {
        burst(&urls, sizes.runs, &cpu);
    }
    let mut wall = Duration::ZERO;
    let mut used = [0.0; 5];
    let mut rates = Vec::new();
    let mut one = String::new();
    for _ in 0..sizes.rounds {
        let (took, id, spent) = burst(&urls, sizes.runs, &cpu);
        wall += took;
        for (total, more) in used.iter_mut().zip(spent) {
            *total += more;
        }
        rates.push((sizes.runs as u64 * TEN) as f64 / took.as_secs_f64());
        one = id;
    }
    let cores = used.map(|seconds| seconds / wall.as_secs_f64());
    let events = get_json(
        &agent(),
        &format!("{}/v1/runs/{one}/events?limit=1000", urls[0]),
    )["events"]
        .as_array()
        .expect("events")
        .len();
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    row(
        &format!(
            "{label}: {} × {TEN}-step runs at once, {} measured rounds after {} warm-up",
            sizes.runs, sizes.rounds, sizes.warm_rounds
        ),
        &format!(
            "**{:.0} steps/s** (rounds: {}); CPU (cores): {}",
            sorted[sorted.len() / 2],
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            cores_text(&cores)
        ),
    );
    (
        Throughput {
            label: label.to_owned(),
            rates: sorted,
            cores,
            events,
        },
        servers,
    )
}

/// What a host does in its lifetime in section 4.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    Idle,
    /// `runs` runs of `ten` at once.
    Burst,
    /// `one_at_a_time` runs of `ten`, each started when the last settled.
    OneAtATime,
}

/// What one host lifetime cost the database (section 4).
struct Lifetime {
    stats: [i64; 5],
    statements: Option<HashMap<String, (i64, String)>>,
    segments: u64,
}

/// Starts a host on `url` with its home in `home` (workflows deployed
/// already), keeps it `sizes.lifetime`, with a burst of runs in it when
/// `load`; stops it and waits until its sessions are gone.
fn lifetime(pg: &Pg, setup: &Setup, home: &Path, url: &str, sizes: &Sizes, load: Load) -> Lifetime {
    pg.wait_idle();
    let stats = pg.stats();
    let statements = pg.statements();
    let mut server = Server::start(
        home,
        &setup.token_file,
        &Db::Postgres(url.into()).args(None),
    );
    let t = Instant::now();
    let mut sent = 0;
    if load != Load::Idle {
        let before = segments(server.pid, &pg.port);
        if load == Load::Burst {
            let servers = std::slice::from_ref(&server);
            burst(&[server.url.clone()], sizes.runs, &|| {
                Cpu::now(servers, None)
            });
        } else {
            let client = agent();
            for _ in 0..sizes.one_at_a_time {
                start_and_wait(&client, &server.url, "60s", "ten", TEN);
            }
        }
        let after = segments(server.pid, &pg.port);
        sent = after
            .iter()
            .map(|(socket, n)| n.saturating_sub(before.get(socket).copied().unwrap_or(0)))
            .sum();
    }
    std::thread::sleep(sizes.lifetime.saturating_sub(t.elapsed()));
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    pg.wait_idle();
    let after = pg.stats();
    let statements = statements.zip(pg.statements()).map(|(before, after)| {
        after
            .into_iter()
            .map(|(id, (calls, text))| {
                let was = before.get(&id).map_or(0, |(c, _)| *c);
                (id, (calls - was, text))
            })
            .filter(|(_, (calls, _))| *calls > 0)
            .collect()
    });
    Lifetime {
        stats: std::array::from_fn(|i| after[i] - stats[i]),
        statements,
        segments: sent,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let ten_steps: Vec<String> = (0..TEN).map(|i| format!("s{i}")).collect();
    let ten_flow = ten_steps
        .iter()
        .map(|s| format!("{{ step = \"{s}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ab: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let manifests = vec![
        manifest(dir.path(), "ten", &ten_flow, &ten_steps),
        manifest(
            dir.path(),
            "three",
            "{ step = \"a\" }, { step = \"b\" }, { step = \"c\" }",
            &ab,
        ),
        manifest(
            dir.path(),
            "nap",
            &format!(
                "{{ step = \"a\" }}, {{ sleep-ms = {}, id = \"nap\" }}, {{ step = \"b\" }}",
                sizes.nap_ms
            ),
            &ab[..2],
        ),
    ];
    let setup = Setup {
        dir: dir.path().to_owned(),
        token_file,
        manifests,
    };

    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let probe = common::fsync_probe(dir.path());
    let pg = Pg::open();
    println!(
        "weft hosts bench ({}); commit {commit}; {} cores; load average at start {}; fsync probe (4 KiB pwrite + fsync × 200) in {}: p50 / p99 {} µs",
        if full {
            "full"
        } else {
            "smoke: pass --bench to measure"
        },
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        dir.path().display(),
        common::probe_text(probe),
    );
    match &pg {
        Ok(pg) => {
            let settings = pg
                .admin_sql(
                    "SELECT current_setting('server_version'), current_setting('synchronous_commit'), \
                     current_setting('fsync'), current_setting('wal_sync_method'), \
                     current_setting('full_page_writes'), current_setting('commit_delay'), \
                     current_setting('shared_preload_libraries')",
                )
                .unwrap_or_default();
            let s: Vec<&str> = settings.trim().split('\u{1f}').collect();
            let at = |i: usize| s.get(i).copied().unwrap_or("?");
            println!(
                "PostgreSQL {} at {} (database {}): synchronous_commit={}, fsync={}, wal_sync_method={}, full_page_writes={}, commit_delay={}, shared_preload_libraries='{}'\n",
                at(0),
                pg.server,
                pg.database,
                at(1),
                at(2),
                at(3),
                at(4),
                at(5),
                at(6)
            );
        }
        Err(why) => println!("PostgreSQL unreachable ({why}): SQLite only\n"),
    }
    let pg = pg.ok();
    let database = pg.as_ref().map(|p| p.database.as_str());

    println!("| measure | figure |");
    println!("|---|---:|");
    let mut results = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    // 1 and 2: SQLite, then PostgreSQL with 1, 2, 3 hosts (a schema each).
    let (sqlite, servers) = throughput(
        &setup,
        &sizes,
        "SQLite FULL, 1 host",
        "sqlite",
        1,
        &Db::Sqlite,
        None,
    );
    for mut s in servers {
        warnings.extend(s.warnings());
        assert_eq!(s.terminate(), Some(0), "{}", s.log());
    }
    results.push(sqlite);
    let mut cost_home = None;
    if let Some(pg) = &pg {
        for &n in sizes.hosts {
            let url = pg.store(&format!("bench_hosts_{n}"));
            let (result, mut servers) = throughput(
                &setup,
                &sizes,
                &format!("PostgreSQL, {n} host{}", if n == 1 { "" } else { "s" }),
                &format!("pg{n}"),
                n,
                &Db::Postgres(url.clone()),
                database,
            );
            warnings.extend(servers.iter().flat_map(Server::warnings));
            for s in &mut servers {
                assert_eq!(s.terminate(), Some(0), "{}", s.log());
            }
            if n == 1 {
                cost_home = Some((setup.dir.join("pg1-h0"), url, result.events));
            }
            results.push(result);
        }
    }

    // 3. Lease takeover after kill -9.
    if let Some(pg) = &pg {
        let url = Db::Postgres(pg.store("bench_hosts_takeover"));
        let ttl = Some(sizes.ttl_ms);
        let mut b = setup.hosts("takeover-b", 1, &url, ttl).remove(0);
        let a_home = setup.dir.join("takeover-a-h0");
        let client = agent();
        let mut next_event = Vec::new();
        let mut settled = Vec::new();
        let mut kinds = Vec::new();
        for round in 0..sizes.takeovers {
            let mut a = if round == 0 {
                setup.hosts("takeover-a", 1, &url, ttl).remove(0)
            } else {
                Server::start(&a_home, &setup.token_file, &url.args(ttl))
            };
            let (status, run) = post(
                &client,
                &format!("{}/v1/runs", a.url),
                &json!({"workflow": "nap", "input": input()}),
            );
            assert_eq!(status, 201, "{run}");
            let id = run["run_id"].as_str().expect("a run id").to_owned();
            // Until the run sleeps on A.
            let deadline = Instant::now() + Duration::from_secs(30);
            let seen = loop {
                let page = get_json(&client, &format!("{}/v1/runs/{id}/events", a.url));
                let events = page["events"].as_array().expect("events");
                if events.iter().any(|e| e["type"] == "sleep-started") {
                    break page["next"].as_u64().expect("next");
                }
                assert!(Instant::now() < deadline, "the run never slept: {page}");
                std::thread::sleep(Duration::from_millis(2));
            };
            warnings.extend(a.warnings());
            let killed = a.kill9();
            let deadline = killed + Duration::from_secs(60);
            loop {
                let page = get_json(
                    &client,
                    &format!("{}/v1/runs/{id}/events?after={seen}", b.url),
                );
                if let Some(first) = page["events"].as_array().and_then(|e| e.first()) {
                    next_event.push(killed.elapsed());
                    kinds.push(first["type"].as_str().unwrap_or("?").to_owned());
                    break;
                }
                assert!(Instant::now() < deadline, "B never took the run {id} over");
                std::thread::sleep(Duration::from_millis(5));
            }
            loop {
                let run = get_json(&client, &format!("{}/v1/runs/{id}", b.url));
                if run["status"] != "running" {
                    assert_eq!(run["status"], "success", "{run}");
                    assert_eq!(run["output"]["n"], 2, "{run}");
                    settled.push(killed.elapsed());
                    break;
                }
                assert!(Instant::now() < deadline, "the run {id} never settled");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        warnings.extend(b.warnings());
        assert_eq!(b.terminate(), Some(0), "{}", b.log());
        kinds.sort();
        kinds.dedup();
        let spread = |mut v: Vec<Duration>| {
            v.sort();
            format!(
                "median {:.0} ms (min {:.0}, max {:.0})",
                ms(v[v.len() / 2]),
                ms(v[0]),
                ms(v[v.len() - 1])
            )
        };
        row(
            &format!(
                "lease takeover, 2 hosts on PostgreSQL, `--lease-ttl {}ms` (renewed every {:.0} ms; B looks for claimable runs every {:.0} ms): run asleep on A ({} ms sleep), kill -9 A → B commits the run's next event ({}), {} rounds",
                sizes.ttl_ms,
                sizes.ttl_ms as f64 / 3.0,
                (sizes.ttl_ms as f64 / 3.0).clamp(50.0, 1000.0),
                sizes.nap_ms,
                kinds.join(", "),
                sizes.takeovers
            ),
            &format!("**{}**", spread(next_event)),
        );
        row(
            "kill -9 A → the run settled (B's step after the sleep)",
            &spread(settled),
        );
    }

    // 4. The database's cost per step: one host, with and without a burst.
    if let (Some(pg), Some((home, url, events))) = (&pg, cost_home) {
        let idle = lifetime(pg, &setup, &home, &url, &sizes, Load::Idle);
        for (load, runs, how) in [
            (Load::Burst, sizes.runs, "at once"),
            (Load::OneAtATime, sizes.one_at_a_time, "one at a time"),
        ] {
            let busy = lifetime(pg, &setup, &home, &url, &sizes, load);
            let steps = (runs as u64 * TEN) as f64;
            let per_step = |i: usize| (busy.stats[i] - idle.stats[i]) as f64 / steps;
            row(
                &format!(
                    "PostgreSQL, 1 host, {runs} × {TEN}-step runs {how}: database cost per step (`pg_stat_database` deltas of a {:.0} s host lifetime with the runs minus one without; a run records {events} events); client → server TCP data segments of the host's connections while the runs ran (`ss`; ≈ round trips)",
                    sizes.lifetime.as_secs_f64()
                ),
                &format!(
                    "**{:.2} commits**, {:.2} rows inserted, {:.2} updated, {:.2} deleted, {:.2} rollbacks; **{:.2} segments** (idle lifetime alone: {} commits)",
                    per_step(0),
                    per_step(2),
                    per_step(3),
                    per_step(4),
                    per_step(1),
                    busy.segments as f64 / steps,
                    idle.stats[0]
                ),
            );
            match busy.statements {
                Some(statements) => {
                    let mut top: Vec<(i64, String)> = statements.into_values().collect();
                    top.sort_by_key(|(calls, _)| std::cmp::Reverse(*calls));
                    let calls: i64 = top.iter().map(|(c, _)| c).sum();
                    row(
                        &format!("`pg_stat_statements` calls, runs {how} (whole lifetime)"),
                        &format!(
                            "{:.2} per step; most called: {}",
                            calls as f64 / steps,
                            top.iter()
                                .take(6)
                                .map(|(c, q)| format!("{:.2}× `{q}`", *c as f64 / steps))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    );
                }
                None if load == Load::Burst => row(
                    "`pg_stat_statements`",
                    "not loaded by the server (not in `shared_preload_libraries`): skipped",
                ),
                None => {}
            }
        }
    }

    if let Some(base) = results.first().map(|r| r.rates[r.rates.len() / 2]) {
        println!("\nsummary (median steps/s; ratio to SQLite FULL, 1 host):");
        for r in &results {
            let median = r.rates[r.rates.len() / 2];
            println!(
                "  {:<22} {:>6.0} steps/s  ({:.2}×)  min {:.0} max {:.0}; CPU (cores): {}",
                r.label,
                median,
                median / base,
                r.rates[0],
                r.rates[r.rates.len() - 1],
                cores_text(&r.cores)
            );
        }
    }
    let after = common::fsync_probe(dir.path());
    println!(
        "\nfsync probe after: p50 / p99 {} µs; hosts' logs: {} warning/error lines (up to 5 below); load average at the end {}; wall time of this bench: {:.1} s{}",
        common::probe_text(after),
        warnings.len(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        began.elapsed().as_secs_f64(),
        warnings
            .iter()
            .take(5)
            .map(|l| format!("\n  {l}"))
            .collect::<String>(),
    );
    drop(pg);
}
