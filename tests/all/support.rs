//! Helpers shared by the test modules.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use weft_core::Event;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A guest example built by `guest-examples/build.sh`.
pub fn guest(name: &str) -> PathBuf {
    let path = root()
        .join("guest-examples/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run ./guest-examples/build.sh (./scripts/test does)",
        path.display()
    );
    path
}

/// The on-disk compile cache the tests share, under the target directory:
/// the debug-built test binary compiles a large guest (an 18 MB Python
/// component takes minutes in a debug host) once per machine and host
/// version, not once per test run. The sandbox keys its artifacts by the
/// engine's configuration and version, so a changed host never reads them.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-compile-cache")
}

/// The `weft` binary, with its home in `home`.
pub fn weft(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.env("WEFT_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("WEFT_SERVER")
        .env_remove("WEFT_TOKEN")
        .env_remove("WEFT_DB")
        .current_dir(root());
    cmd
}

/// A `weft run --watch --json` process whose events are read as it prints
/// them: on the evented runtime each once it is committed, on the default
/// runtime as it happens. Waiting on them is waiting on the condition, not
/// a guess at timing; every wait is bounded (a hang fails the test), and a
/// dropped `Watched` kills its process.
pub struct Watched {
    child: Child,
    events: Receiver<Event>,
}

/// How long a [`Watched`] wait lasts before it fails the test.
const WATCH_BOUND: Duration = Duration::from_secs(120);

impl Watched {
    /// Spawns `run` (a `weft run` command) with `--watch --json` added.
    pub fn spawn(run: Command) -> Self {
        Self::spawn_with_stderr(run, Stdio::null())
    }

    /// [`Watched::spawn`], with the process's stderr (weft's log) going
    /// to `stderr`.
    pub fn spawn_with_stderr(mut run: Command, stderr: impl Into<Stdio>) -> Self {
        let mut child = run
            .args(["--watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("weft run starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end (the run's result, which follows its events,
            // is not one), so the process never meets a closed stdout.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Event>(&line) {
                    let _ = sender.send(event);
                }
            }
        });
        Self { child, events }
    }

    /// The next event `found` accepts, skipping others; `None` when the
    /// process ended first.
    pub fn until(&mut self, found: impl FnMut(&Event) -> bool) -> Option<Event> {
        self.until_within(WATCH_BOUND, found)
    }

    /// [`Watched::until`], failing the test after `bound` instead.
    pub fn until_within(
        &mut self,
        bound: Duration,
        mut found: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + bound;
        loop {
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(event) if found(&event) => return Some(event),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => panic!("no awaited event in {bound:?}"),
            }
        }
    }

    /// Waits for the process to exit (once it has printed everything);
    /// returns its exit code.
    pub fn exit_code(self) -> Option<i32> {
        self.exit_code_within(WATCH_BOUND)
    }

    /// [`Watched::exit_code`], failing the test (and killing the process)
    /// if it has not finished printing within `bound`.
    pub fn exit_code_within(mut self, bound: Duration) -> Option<i32> {
        assert!(self.until_within(bound, |_| false).is_none());
        self.child.wait().expect("weft run is reaped").code()
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (a no-op if it already exited) and
    /// reaps it.
    pub fn kill(self) {
        drop(self); // see `Drop`
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stdout of a finished command, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a finished command, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A manifest whose steps are all the `test-steps` guest; `steps` are
/// `(id, extra TOML lines)` and the flow runs them in order.
pub fn test_steps_manifest(dir: &Path, steps: &[(&str, &str)]) -> PathBuf {
    let component = guest("test-steps");
    let flow: Vec<String> = steps
        .iter()
        .map(|(id, _)| format!("{{ step = \"{id}\" }}"))
        .collect();
    let mut text = format!("id = \"test\"\nflow = [{}]\n", flow.join(", "));
    for (id, extra) in steps {
        text.push_str(&format!(
            "\n[steps.{id}]\ncomponent = \"{}\"\n{extra}\n",
            component.display()
        ));
    }
    let path = dir.join("workflow.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The types of a stored run's events, via `weft events --json`.
pub fn event_types(home: &Path, run_id: &str) -> Vec<String> {
    let out = weft(home)
        .args(["events", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The peak resident set size of a `weft` child process, measured while it
/// runs: its own high-water mark (`VmHWM`), sampled until it exits, then
/// checked against `wait4`'s `ru_maxrss` when it is reaped. (`ru_maxrss`
/// alone would count this test process's memory, which a child spawned with
/// vfork records when it execs.)
#[cfg(target_os = "linux")]
pub struct PeakRss {
    pid: u32,
    sampler: std::thread::JoinHandle<u64>,
}

#[cfg(target_os = "linux")]
impl PeakRss {
    /// Starts sampling `child` (spawned a moment ago).
    pub fn watch(child: &Child) -> Self {
        let pid = child.id();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0u64;
            let status = format!("/proc/{pid}/status");
            while let Some((name, hwm)) = std::fs::read_to_string(&status).ok().and_then(|text| {
                let name = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Name:"))
                    .map(|n| n.trim().to_owned())?;
                let hwm = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?;
                Some((name, hwm))
            }) {
                // Until it execs, the child is a copy of this process (its
                // figures are ours): count `weft` only.
                if name == "weft" {
                    peak = peak.max(hwm * 1024);
                }
                // A sampling period, not a wait for anything: the loop ends
                // when the child has exited (a zombie has no memory lines).
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        });
        Self { pid, sampler }
    }

    /// Reaps the child (its output read to the end first) with `wait4`:
    /// its exit code and peak RSS in bytes. The child must not have been
    /// waited on (dropping a `Child` does not wait).
    #[allow(unsafe_code)]
    pub fn reap(self) -> (Option<i32>, u64) {
        let pid = libc::pid_t::try_from(self.pid).expect("a pid");
        let mut status = 0;
        // SAFETY: `rusage` is plain integers, valid all zeros; `wait4` writes
        // into both locals, which outlive the call. The child is the
        // caller's and not reaped yet.
        let (reaped, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let reaped = libc::wait4(pid, &mut status, 0, &mut usage);
            (reaped, usage)
        };
        assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        let peak = self.sampler.join().expect("no panic");
        // `ru_maxrss` (kibibytes) bounds the child's peak from above — up to
        // the kernel's per-thread batching of RSS counters (64 pages a
        // thread), which lets the two readings differ by a few hundred KiB.
        let bound = u64::try_from(usage.ru_maxrss).expect("a size") * 1024 + (4 << 20);
        assert!(peak > 0 && peak <= bound, "sampled {peak}, bound {bound}");
        (code, peak)
    }
}

/// The PostgreSQL the tests use: `WEFT_TEST_PG`, else
/// `postgres://postgres@127.0.0.1:5432/test` (`./scripts/test` makes sure
/// one is reachable: `scripts/postgres`).
pub fn postgres_url() -> String {
    std::env::var("WEFT_TEST_PG")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of the test PostgreSQL for one test's store, dropped (with
/// everything in it) when this goes. A test that cannot reach PostgreSQL
/// fails here, saying so.
pub struct PgSchema {
    url: String,
}

impl PgSchema {
    /// The store URL of schema `name` (lower-case letters, digits and `_`;
    /// unique per test and process), emptied first.
    pub fn new(name: &str) -> Self {
        let base = postgres_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}schema={name}");
        if let Err(e) = weft_store_postgres::PostgresStore::drop_schema(&url) {
            panic!(
                "this test needs PostgreSQL: set WEFT_TEST_PG to its URL, or run \
                 ./scripts/test (scripts/postgres starts one): {e}"
            );
        }
        Self { url }
    }

    /// The store's URL (`postgres://…?schema=NAME`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = weft_store_postgres::PostgresStore::drop_schema(&self.url);
    }
}
