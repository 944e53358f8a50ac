//! A Jepsen-style test of several hosts on one PostgreSQL: three `weft
//! serve` processes share one store while a nemesis kills (SIGKILL) and
//! restarts them, and pauses (SIGSTOP) and resumes (SIGCONT) them, and
//! clients start 300 runs of two mixed workflows (a foreach with
//! concurrency, a parallel, a sleep; a nested workflow that suspends and is
//! resumed through the API) against whichever host answers.
//!
//! Checked: every run settles with the result its input implies; every step
//! address of every run has exactly one committed completion; the lease
//! epoch each event was appended under (the store records it) never goes
//! back in a run's log — no event was appended under a stale epoch; every
//! run's log replays through the state machine; no run stays
//! claimable — running, unowned and due — longer than the lease TTL plus a
//! generous bound for a loaded machine.
//!
//! Seeded: the seed is printed; `WEFT_JEPSEN_SEED=N cargo test -p weft-cli
//! --test all jepsen` replays the nemesis's choices (the machine's timing
//! still varies). Tenants do not exist yet, so there is no tenant cap to
//! check.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::{Clock as _, Event, EventStore, RunId, RunState};
use weft_manifest::Manifest;
use weft_store_postgres::PostgresStore;

use crate::serve::{Server, TOKEN};
use crate::support::{PgSchema, guest};

/// Runs of each workflow.
const RUNS_EACH: usize = 150;
/// The lease TTL of every host: a paused or killed host's runs are taken
/// over this long after its last renewal.
const TTL: Duration = Duration::from_secs(2);
/// How long the whole test may take before it fails (with its seed): far
/// more than it needs on a loaded 2-core machine, so only a lost run or a
/// hang reaches it.
const DEADLINE: Duration = Duration::from_secs(600);
/// How long a run may stay claimable (due, unowned) beyond the TTL: hosts
/// look every third of the TTL; the rest is slack for a loaded machine.
const UNOWNED_SLACK: Duration = Duration::from_secs(30);

/// SplitMix64: the nemesis's choices, from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One host: its home (kept across restarts) and, while it runs, its
/// process.
struct Slot {
    home: PathBuf,
    server: Option<Server>,
    paused: bool,
}

/// The three hosts, shared by the nemesis and the clients.
#[derive(Clone)]
struct Cluster {
    slots: Arc<Mutex<Vec<Slot>>>,
    db: String,
}

impl Cluster {
    /// Starts host `index` (again), on its home; clients are not held up
    /// meanwhile.
    fn start(&self, index: usize) {
        let home = self.slots.lock().unwrap()[index].home.clone();
        let ttl = format!("{}s", TTL.as_secs());
        let server = Server::start(
            &home,
            &["--db", &self.db, "--lease-ttl", &ttl, "--workers", "2"],
        );
        let mut slots = self.slots.lock().unwrap();
        slots[index].server = Some(server);
        slots[index].paused = false;
    }

    /// The URL of a host that runs and is not paused, chosen by `pick`.
    fn url(&self, pick: u64) -> Option<String> {
        let slots = self.slots.lock().unwrap();
        let up: Vec<&Slot> = slots
            .iter()
            .filter(|s| s.server.is_some() && !s.paused)
            .collect();
        (!up.is_empty()).then(|| {
            let slot = up[usize::try_from(pick).unwrap() % up.len()];
            slot.server.as_ref().unwrap().url().to_owned()
        })
    }

    /// Hosts running and not paused.
    fn live(&self) -> usize {
        let slots = self.slots.lock().unwrap();
        slots
            .iter()
            .filter(|s| s.server.is_some() && !s.paused)
            .count()
    }
}

/// A client of whichever host answers: each request goes to a live host
/// and, when that host dies or hangs, is sent again (to any host) a bounded
/// number of times.
struct Client {
    cluster: Cluster,
    agent: ureq::Agent,
    turn: u64,
}

impl Client {
    fn new(cluster: &Cluster) -> Self {
        Self {
            cluster: cluster.clone(),
            // Short: a paused host is given up on and another one asked.
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            turn: 0,
        }
    }

    /// The answer of some host to `method path body`, or why none came.
    fn call(&mut self, post: Option<&Value>, path: &str) -> Result<(u16, Value), String> {
        let mut last = String::from("no host was up");
        for _ in 0..50 {
            self.turn += 1;
            let Some(url) = self.cluster.url(self.turn) else {
                // Every host is down or paused for a moment (the nemesis
                // keeps one up; a restart takes a while on a loaded machine).
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let auth = format!("Bearer {TOKEN}");
            let sent = match post {
                Some(body) => self
                    .agent
                    .post(format!("{url}{path}"))
                    .header("Authorization", &auth)
                    .send_json(body),
                None => self
                    .agent
                    .get(format!("{url}{path}"))
                    .header("Authorization", &auth)
                    .call(),
            };
            match sent {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    if status == 503 {
                        // Not ready yet (recovering at start-up): another host.
                        last = format!("503 from {url}: {text}");
                        continue;
                    }
                    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return Ok((status, body));
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(last)
    }
}

/// The two workflows (in `dir`), by id.
fn workflows(dir: &Path) -> BTreeMap<&'static str, PathBuf> {
    let component = guest("test-steps");
    let c = component.display();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    write(
        "child.toml",
        format!(
            "id = \"child\"\nflow = [\n  {{ map = {{ action = \"'suspend'\", payload = \"input.n\", labels = \"['go']\" }}, id = \"ask\" }},\n  {{ step = \"t\", id = \"gate\" }},\n]\n[steps.t]\ncomponent = \"{c}\"\n"
        ),
    );
    let fan = write(
        "fan.toml",
        format!(
            "id = \"fan\"\nflow = [\n  {{ step = \"t\", id = \"a\" }},\n  {{ foreach = [{{ map = {{ action = \"'increment'\", n = \"input\" }}, id = \"prep\" }}, {{ step = \"t\", id = \"inc\" }}], id = \"items\", concurrency = 2 }},\n  {{ map = {{ action = \"'complete'\", output = \"input.map(x, x.n)\" }}, id = \"wrap\" }},\n  {{ parallel = [{{ step = \"t\", id = \"left\" }}, {{ step = \"t\", id = \"right\" }}], id = \"both\" }},\n  {{ sleep-ms = 1000, id = \"nap\" }},\n]\n[steps.t]\ncomponent = \"{c}\"\n"
        ),
    );
    let nested = write(
        "nested.toml",
        format!(
            "id = \"nested\"\nflow = [\n  {{ step = \"t\", id = \"first\" }},\n  {{ workflow = \"child.toml\", id = \"sub\" }},\n  {{ map = {{ n = \"input.resumed_with.n\", asked = \"input.suspended_with\" }}, id = \"done\" }},\n]\n[steps.t]\ncomponent = \"{c}\"\n"
        ),
    );
    BTreeMap::from([("fan", fan), ("nested", nested)])
}

/// Run `i` of `workflow`: its id, input and expected output. A nested run
/// is resumed with `{"n": 2 × its suspend payload}`.
fn run_of(workflow: &str, i: i64) -> (String, Value, Value) {
    match workflow {
        "fan" => (
            format!("fan-{i}"),
            json!({"action": "complete", "output": [i, i + 1, i + 2]}),
            json!({"left": [i + 1, i + 2, i + 3], "right": [i + 1, i + 2, i + 3]}),
        ),
        _ => (
            format!("nested-{i}"),
            json!({"action": "increment", "n": i}),
            json!({"n": 2 * (i + 1), "asked": i + 1}),
        ),
    }
}

/// The nemesis: until `stop`, every 0.15–0.75 s, kills a host (SIGKILL) and
/// starts it again, or pauses one (SIGSTOP) for 0.3–1.8 s (past the lease
/// TTL or not); it never takes down or pauses the last live host. Returns
/// what it did.
fn nemesis(cluster: &Cluster, seed: u64, stop: &AtomicBool) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut done = Vec::new();
    // Bounded: at most this many faults, whatever happens.
    for _ in 0..200 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Pacing between faults (this is the fault schedule, not a wait
        // for something to happen).
        std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
        let host = usize::try_from(rng.below(3)).unwrap();
        // The first four alternate, so every schedule kills and pauses.
        let kill = if done.len() < 4 {
            done.len() % 2 == 0
        } else {
            rng.below(2) == 0
        };
        let pause_ms = 300 + rng.below(1500);
        if cluster.live() < 2 {
            continue;
        }
        if kill {
            let server = {
                let mut slots = cluster.slots.lock().unwrap();
                if slots[host].paused {
                    continue;
                }
                slots[host].server.take()
            };
            let Some(server) = server else { continue };
            server.kill();
            done.push(format!("kill -9 host {host}, restart"));
            cluster.start(host);
        } else {
            let pid = {
                let mut slots = cluster.slots.lock().unwrap();
                let slot = &mut slots[host];
                let Some(server) = slot.server.as_ref().filter(|_| !slot.paused) else {
                    continue;
                };
                let pid = server.pid();
                slot.paused = true;
                pid
            };
            signal(pid, libc::SIGSTOP);
            done.push(format!("pause host {host} for {pause_ms} ms"));
            std::thread::sleep(Duration::from_millis(pause_ms));
            signal(pid, libc::SIGCONT);
            cluster.slots.lock().unwrap()[host].paused = false;
        }
    }
    done
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: signalling a child process this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Watches the store until `stop`: fails (returns the run) when a run stays
/// claimable — running, unowned, due — longer than the TTL plus slack.
fn watch_unowned(db: &str, stop: &AtomicBool) -> Result<u64, String> {
    let store = PostgresStore::open(db).map_err(|e| e.to_string())?;
    let mut since: HashMap<RunId, Instant> = HashMap::new();
    let mut samples = 0;
    while !stop.load(Ordering::SeqCst) {
        let now = weft_runtime::SystemClock.now();
        let claimable = store.claimable(now).map_err(|e| e.to_string())?;
        let seen: Vec<RunId> = claimable.into_iter().map(|c| c.run).collect();
        since.retain(|run, _| seen.contains(run));
        for run in seen {
            let first = *since.entry(run.clone()).or_insert_with(Instant::now);
            if first.elapsed() > TTL + UNOWNED_SLACK {
                return Err(format!(
                    "run {run} stayed claimable (running, unowned, due) for {:?}",
                    first.elapsed()
                ));
            }
        }
        samples += 1;
        // A sample every quarter second (sampling, not waiting).
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(samples)
}

#[test]
fn three_hosts_on_postgres_survive_kills_and_pauses() {
    let seed = std::env::var("WEFT_JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            u64::from(nanos)
        });
    eprintln!(
        "jepsen seed {seed}: replay with WEFT_JEPSEN_SEED={seed} cargo test -p weft-cli --test all jepsen"
    );
    let schema = PgSchema::new(&format!("jepsen_{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    let flows = workflows(dir.path());
    let homes: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cluster = Cluster {
        slots: Arc::new(Mutex::new(
            homes
                .iter()
                .map(|h| Slot {
                    home: h.path().to_owned(),
                    server: None,
                    paused: false,
                })
                .collect(),
        )),
        db: schema.url().to_owned(),
    };
    for host in 0..3 {
        cluster.start(host);
        let slots = cluster.slots.lock().unwrap();
        let server = slots[host].server.as_ref().unwrap();
        // Each host has the bundles in its own home (the store has the locks).
        for manifest in flows.values() {
            server.deploy(manifest);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let faults = {
        let (cluster, stop) = (cluster.clone(), Arc::clone(&stop));
        std::thread::spawn(move || nemesis(&cluster, seed, &stop))
    };
    let watcher = {
        let (db, stop) = (cluster.db.clone(), Arc::clone(&stop));
        std::thread::spawn(move || watch_unowned(&db, &stop))
    };
    let started = Instant::now();
    let fail = |why: String| -> ! {
        stop.store(true, Ordering::SeqCst);
        panic!("seed {seed}: {why}");
    };

    // Start every run (two client threads, one per workflow).
    let mut expected: BTreeMap<String, (&str, Value)> = BTreeMap::new();
    let starters: Vec<_> = ["fan", "nested"]
        .into_iter()
        .map(|workflow| {
            let cluster = cluster.clone();
            std::thread::spawn(move || {
                let mut client = Client::new(&cluster);
                for i in 0..RUNS_EACH {
                    if i % 15 == 14 {
                        // The load's schedule: runs start over several
                        // seconds, while the nemesis works.
                        std::thread::sleep(Duration::from_millis(400));
                    }
                    let (id, input, _) = run_of(workflow, i64::try_from(i).unwrap());
                    let body = json!({"workflow": workflow, "input": input, "run_id": id});
                    // Sent again after a host died mid-request, the start
                    // finds the run the first one created: 200 (the same
                    // run, same body) or 409.
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        match client.call(Some(&body), "/v1/runs") {
                            Ok((200 | 201 | 409, _)) => break,
                            Ok((status, answer)) if tries > 20 => {
                                return Err(format!("starting {id}: {status} {answer}"));
                            }
                            Err(e) if tries > 20 => return Err(format!("starting {id}: {e}")),
                            _ => {}
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for starter in starters {
        if let Err(e) = starter.join().unwrap() {
            fail(e);
        }
    }
    for workflow in ["fan", "nested"] {
        for i in 0..RUNS_EACH {
            let (id, _, output) = run_of(workflow, i64::try_from(i).unwrap());
            expected.insert(id, (workflow, output));
        }
    }

    // Resume what suspends; wait until nothing runs or is suspended.
    let mut client = Client::new(&cluster);
    loop {
        if started.elapsed() > DEADLINE {
            fail(format!("runs did not settle within {DEADLINE:?}"));
        }
        let list = |client: &mut Client, status: &str| -> Vec<Value> {
            match client.call(None, &format!("/v1/runs?status={status}&limit=1000")) {
                Ok((200, page)) => page["runs"].as_array().cloned().unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        let suspended = list(&mut client, "suspended");
        for run in &suspended {
            let id = run["run_id"].as_str().unwrap();
            let Ok((200, detail)) = client.call(None, &format!("/v1/runs/{id}")) else {
                continue;
            };
            let Some(payload) = detail["suspended"][0]["payload"].as_i64() else {
                continue;
            };
            // 409 (not suspended): an earlier resume whose answer was lost.
            let _ = client.call(
                Some(&json!({"label": "go", "data": {"n": 2 * payload}})),
                &format!("/v1/runs/{id}/resume"),
            );
        }
        let running = list(&mut client, "running");
        let settled = match client.call(None, "/v1/runs?status=success&limit=1000") {
            Ok((200, page)) => page["runs"].as_array().map_or(0, Vec::len),
            _ => 0,
        };
        if running.is_empty() && suspended.is_empty() && settled == expected.len() {
            break;
        }
        // Pacing between sweeps of the run list (polling the hosts).
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let faults = faults.join().unwrap();
    let samples = watcher.join().unwrap().unwrap_or_else(|e| fail(e));
    eprintln!(
        "jepsen seed {seed}: {} runs settled in {:?} under {} faults ({}); {samples} ownership samples",
        expected.len(),
        started.elapsed(),
        faults.len(),
        faults.join(", ")
    );
    for fault in ["kill -9", "pause"] {
        assert!(
            faults.iter().any(|f| f.starts_with(fault)),
            "seed {seed}: no {fault} in {faults:?}"
        );
    }
    {
        // Every host back (none stays paused), then stopped.
        let mut slots = cluster.slots.lock().unwrap();
        for slot in slots.iter_mut() {
            if let Some(server) = slot.server.take() {
                signal(server.pid(), libc::SIGCONT);
                server.kill();
            }
        }
    }

    // The store, checked run by run.
    let store = PostgresStore::open(schema.url()).unwrap();
    let loaded: HashMap<&str, std::sync::Arc<weft_core::Workflow>> = flows
        .iter()
        .map(|(id, path)| (*id, Arc::clone(Manifest::load(path).unwrap().workflow())))
        .collect();
    for (id, (workflow, output)) in &expected {
        let run = RunId::new(id).unwrap();
        let (_, events) = store.load(&run).unwrap();
        // Fencing, audited: the epoch each event was appended under never
        // goes back (an append under a lease already taken over would).
        let epochs = store.event_epochs(&run).unwrap();
        assert_eq!(epochs.len(), events.len(), "seed {seed}: run {id}");
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]) && epochs[0] >= 1,
            "seed {seed}: run {id}: an event was appended under a stale epoch: {epochs:?}"
        );
        let state = RunState::replay(Arc::clone(&loaded[workflow]), &events)
            .unwrap_or_else(|e| panic!("seed {seed}: run {id}: its log does not replay: {e}"));
        let result = state.result();
        assert_eq!(
            serde_json::to_value(result.status).unwrap(),
            "success",
            "seed {seed}: run {id}"
        );
        assert_eq!(
            result.output.as_ref(),
            Some(output),
            "seed {seed}: run {id}"
        );
        let mut completed: BTreeMap<String, usize> = BTreeMap::new();
        let mut started: BTreeMap<String, usize> = BTreeMap::new();
        for event in &events {
            match event {
                Event::StepStarted { path, .. } => {
                    *started.entry(path.to_string()).or_default() += 1;
                }
                Event::StepCompleted { path, .. } => {
                    *completed.entry(path.to_string()).or_default() += 1;
                }
                _ => {}
            }
        }
        assert_eq!(
            completed.keys().collect::<Vec<_>>(),
            started.keys().collect::<Vec<_>>(),
            "seed {seed}: run {id}: every started step completed"
        );
        for (address, n) in &completed {
            assert_eq!(
                *n, 1,
                "seed {seed}: run {id}: {address} has {n} committed completions"
            );
        }
    }
}
