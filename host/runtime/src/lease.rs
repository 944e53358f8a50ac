//! Leases on the runtime side: who this runtime is ([`owner_id`]), the
//! thread that keeps its leases alive ([`Keeper`]), and how to tell that
//! another owner is provably gone ([`owner_is_gone`]).
//!
//! A runtime holds the lease of every run it drives; the store fences every
//! append by the lease's epoch (see [`weft_core::EventStore`]). The keeper
//! renews all of the runtime's leases with one store call every third of
//! their time to live, and flags a run whose lease was taken over, so that
//! its driver stops at the next step boundary instead of at its next append.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use weft_core::{EventStore, Interrupt, Lease, Owner, RunId};

/// How a runtime leases the runs it drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long a lease lasts without renewal: after an owner dies, another
    /// process can take its runs over this long after its last renewal (at
    /// once, on the same host, when the owner's process is provably gone).
    /// The keeper renews every third of it. Default 10 s.
    pub ttl: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
        }
    }
}

/// A new owner id for a runtime of this process: unique per runtime
/// instance, and naming this host, boot and process so that a runtime on
/// the same host can tell when the owner's process is gone
/// ([`owner_is_gone`]). Format: `weft/HOST/BOOT/PID/START/N` (START: the
/// process's start time in clock ticks since boot, which tells a reused pid
/// apart), or `weft/PID/N/-` where `/proc` is unavailable.
pub fn owner_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    match (this_host(), process_start(pid)) {
        (Some((host, boot)), Some(start)) => format!("weft/{host}/{boot}/{pid}/{start}/{n}"),
        _ => format!("weft/{pid}/{n}/-"),
    }
}

/// Whether the owner `id` (from [`owner_id`]) is provably gone: it ran on
/// this host, and either the host has rebooted since or its process no
/// longer exists (no such pid, or a pid reused by a process that started
/// later). `false` whenever that cannot be proven (another host, no
/// `/proc`, an id of another format): then only the lease's expiry frees
/// the run.
pub fn owner_is_gone(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    let ["weft", host, boot, pid, start, _] = parts.as_slice() else {
        return false;
    };
    let Some((this_host, this_boot)) = this_host() else {
        return false;
    };
    if *host != this_host {
        return false;
    }
    if *boot != this_boot {
        return true;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    match process_start(pid) {
        None => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        Some(now) => now != *start,
    }
}

/// This host's name and boot id (with `/` and whitespace removed), on Linux.
fn this_host() -> Option<(String, String)> {
    let read = |path| {
        std::fs::read_to_string(path).ok().map(|s| {
            s.trim()
                .chars()
                .filter(|c| *c != '/' && !c.is_whitespace())
                .collect::<String>()
        })
    };
    let host = read("/proc/sys/kernel/hostname")?;
    let boot = read("/proc/sys/kernel/random/boot_id")?;
    (!host.is_empty() && !boot.is_empty()).then_some((host, boot))
}

/// A process's start time (field 22 of `/proc/PID/stat`), if it exists.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing one. Field 3 is the first after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19).map(str::to_owned)
}

/// Keeps a runtime's leases alive: a thread renews them all every third of
/// their ttl, and flags the runs whose lease was lost. Dropping the keeper
/// stops the thread and releases the leases it still watches.
pub(crate) struct Keeper {
    store: Arc<dyn EventStore>,
    owner: Owner,
    watched: Arc<Mutex<Watching>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A lease a driver wants to hear about.
struct Watched {
    lease: Lease,
    lost: Interrupt,
    /// The renewal round under way when the watch began: a renewal that
    /// began before the lease was granted cannot list it, so only later
    /// rounds judge it.
    since: u64,
}

/// The watched leases, and the number of renewal rounds begun.
#[derive(Default)]
struct Watching {
    leases: HashMap<RunId, Watched>,
    round: u64,
}

impl Keeper {
    /// Starts the renewal thread for a new owner with `options`.
    pub(crate) fn start(store: Arc<dyn EventStore>, options: LeaseOptions) -> Self {
        let owner = Owner {
            id: owner_id(),
            ttl: options.ttl,
        };
        let watched: Arc<Mutex<Watching>> = Arc::default();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let every = (options.ttl / 3).max(Duration::from_millis(1));
        let thread = {
            let store = Arc::clone(&store);
            let owner = owner.clone();
            let watched = Arc::clone(&watched);
            std::thread::Builder::new()
                .name("weft-leases".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        renew(&*store, &owner, &watched);
                    }
                })
                .expect("spawn the lease renewal thread")
        };
        Self {
            store,
            owner,
            watched,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Who this runtime is, for the store.
    pub(crate) fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Watches `lease`: the returned signal fires once the keeper finds it
    /// taken over (the attempt in flight then stops).
    pub(crate) fn watch(&self, lease: &Lease) -> Interrupt {
        let lost = Interrupt::new();
        let mut watching = lock(&self.watched);
        let since = watching.round;
        watching.leases.insert(
            lease.run.clone(),
            Watched {
                lease: lease.clone(),
                lost: lost.clone(),
                since,
            },
        );
        lost
    }

    /// Stops watching the run's lease (it settled, or was released).
    pub(crate) fn unwatch(&self, run: &RunId) {
        lock(&self.watched).leases.remove(run);
    }

    /// Releases `leases` in one commit (best effort, as [`Keeper::release`])
    /// and stops watching them.
    pub(crate) fn release_all(&self, leases: &[Lease]) {
        if leases.is_empty() {
            return;
        }
        {
            let mut watched = lock(&self.watched);
            for lease in leases {
                watched.leases.remove(&lease.run);
            }
        }
        if let Err(e) = self.store.release_all(leases) {
            tracing::warn!(
                runs = leases.len(),
                "cannot release the leases (they expire by themselves): {e}"
            );
        }
    }

    /// Releases `lease` (best effort: if the store fails, the lease expires
    /// on its own) and stops watching it.
    pub(crate) fn release(&self, lease: &Lease) {
        self.unwatch(&lease.run);
        if let Err(e) = self.store.release(lease) {
            tracing::warn!(run = %lease.run, "cannot release the run's lease (it expires by itself): {e}");
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let watched: Vec<Lease> = lock(&self.watched)
            .leases
            .drain()
            .map(|(_, w)| w.lease)
            .collect();
        let _ = self.store.release_all(&watched);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One renewal: every lease of `owner`; watched runs whose lease is no
/// longer held at its epoch are flagged lost.
fn renew(store: &dyn EventStore, owner: &Owner, watched: &Mutex<Watching>) {
    let round = {
        let mut watching = lock(watched);
        watching.round += 1;
        watching.round
    };
    match store.renew(owner) {
        Ok(held) => {
            let held: HashMap<RunId, u64> = held.into_iter().collect();
            for (run, w) in &lock(watched).leases {
                // A lease granted after this round began may be missing
                // from `held` though it is live: the next round judges it.
                if w.since >= round {
                    continue;
                }
                if held.get(run) != Some(&w.lease.epoch) {
                    w.lost.fire();
                }
            }
        }
        // The leases run out if this keeps failing; the fencing of every
        // append keeps that safe, and the next renewal may succeed.
        Err(e) => tracing::warn!("cannot renew this process's leases: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;
    use weft_core::{Event, RunMeta, StepId, Takeover, Timestamp};

    use crate::MemoryStore;
    use crate::tests::hooked::{Call, Hooked};

    fn started(run: &RunId) -> Event {
        Event::RunStarted {
            run: run.clone(),
            workflow: StepId::new("wf").unwrap(),
            input: serde_json::Value::Null,
            state: serde_json::json!({}),
            at: Timestamp(1),
            origin: None,
        }
    }

    /// A lease granted while a renewal is under way is missing from what
    /// that renewal read, yet live: it is not flagged lost. A lease taken
    /// over is, by the next renewal.
    #[test]
    fn a_lease_granted_during_a_renewal_is_not_taken_for_lost() {
        let (renewed, renewals_rx) = bounded(0);
        let (go_tx, gone) = bounded(0);
        // Its renewal pauses after it has read the leases, until the test
        // lets it go on: a lease can then be granted in between.
        let store = Arc::new(Hooked::new(Arc::new(MemoryStore::new()), move |call| {
            if call == Call::Renewed {
                let _ = renewed.send(());
                let _ = gone.recv();
            }
            Ok(())
        }));
        // A round every 10 ms; each pauses until the test lets it go on.
        let keeper = Keeper::start(
            store.clone(),
            LeaseOptions {
                ttl: Duration::from_millis(30),
            },
        );
        // Declared after the keeper, so dropped before it (even when an
        // assertion fails): its thread, paused in a round, then goes on
        // and stops instead of waiting for the test forever.
        let (renewals, go) = (renewals_rx, go_tx);
        // A generous bound on the keeper thread's next round, so that a
        // broken keeper fails the test instead of hanging it.
        let next_round = || {
            renewals
                .recv_timeout(Duration::from_secs(120))
                .expect("the keeper renews");
        };
        next_round();
        // The renewal has read the leases: none. Now a lease is granted.
        let run = RunId::new("r").unwrap();
        let meta = RunMeta {
            run_id: run.clone(),
            workflow_id: StepId::new("wf").unwrap(),
            manifest: "wf.toml".into(),
            manifest_sha256: String::new(),
            workflow_digest: None,
        };
        let lease = store
            .create_run(&meta, &[started(&run)], keeper.owner(), None)
            .unwrap();
        let lost = keeper.watch(&lease);
        go.send(()).unwrap();
        next_round();
        assert!(!lost.is_fired(), "a live lease was flagged lost");
        // Taken over by another owner: the next round sees it.
        let other = Owner {
            id: "someone else".into(),
            ttl: Duration::from_secs(60),
        };
        // (The memory store renews an owner's expired leases too, so a
        // slow round loses nothing here.)
        store.acquire(&run, &other, Takeover::Force).unwrap();
        go.send(()).unwrap();
        next_round();
        go.send(()).unwrap();
        next_round();
        assert!(lost.is_fired(), "a lease taken over was not flagged lost");
    }

    #[test]
    fn this_process_is_not_gone_and_a_dead_pid_is() {
        let id = owner_id();
        assert!(!owner_is_gone(&id), "{id}");
        if id.ends_with("/-") {
            return; // No /proc: nothing can be proven.
        }
        let mut parts: Vec<String> = id.split('/').map(str::to_owned).collect();
        // A pid above the kernel's maximum (4,194,304) cannot exist.
        parts[3] = "4999999".into();
        assert!(owner_is_gone(&parts.join("/")));
        // This pid, but started at another time: a reused pid.
        let mut reused = id.split('/').map(str::to_owned).collect::<Vec<_>>();
        reused[4] = "1".into();
        assert!(owner_is_gone(&reused.join("/")));
        // Another host: unprovable.
        let mut elsewhere = id.split('/').map(str::to_owned).collect::<Vec<_>>();
        elsewhere[1] = "another-host".into();
        assert!(!owner_is_gone(&elsewhere.join("/")));
        assert!(!owner_is_gone("someone else"));
    }
}
