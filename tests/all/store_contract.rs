//! The store contract (`weft_core::Store`: the event log with leases and
//! wake times, the workflow registry, the run index), one suite for every
//! store:
//! the in-memory store, SQLite (a file, so that several handles can
//! share it) and PostgreSQL (a schema of its own per check). A new store
//! adds one test calling [`suite`].
//!
//! Lease expiry is tested without waiting: a lease granted with a zero
//! time to live has expired as soon as it is granted, by any store's clock.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use weft_core::{
    Append, CustomEvent, Deployment, Event, Owner, Pin, RunCursor, RunFilter, RunId, RunMeta,
    RunStatus, StepId, StepPath, Store, StoreError, Takeover, Timestamp,
};
use weft_runtime::MemoryStore;
use weft_store_postgres::PostgresStore;
use weft_store_sqlite::SqliteStore;

/// Makes handles on one store (each call: another handle on the same store).
type Factory<'a> = &'a dyn Fn() -> Arc<dyn Store>;

/// Makes a fresh, empty store, as a factory of handles on it.
type Fresh<'a> = &'a dyn Fn() -> Box<dyn Fn() -> Arc<dyn Store>>;

/// Every check, by name, so that a failure names the one that broke.
fn suite(fresh: Fresh<'_>) {
    type Check = fn(Factory<'_>);
    let checks: &[(&str, Check)] = &[
        (
            "runs are created once, with a lease",
            creates_runs_with_a_lease,
        ),
        ("appends are fenced by epoch and sequence", fences_appends),
        ("a batch lands whole or not at all", batches_are_atomic),
        ("a live lease is held against others", live_leases_hold),
        ("an expired lease is taken over", expired_leases_are_taken),
        (
            "a proven-gone holder's lease is taken",
            gone_holders_are_replaced,
        ),
        ("renewal lists what an owner holds", renewal_lists_held_runs),
        ("release frees the run, once", release_frees),
        ("a run that settles releases its lease", settling_releases),
        (
            "a forced takeover appends in the same transaction",
            takes_and_appends_at_once,
        ),
        ("claimable runs: free, running, due", claimable_runs),
        ("concurrent owners never interleave", concurrent_owners),
        ("the run index filters and pages", run_index_pages),
        ("workflow locks and pins", workflow_registry),
        ("deployments: once per version, newest first", deployments),
        ("a run's trace context: the first record wins", traces),
        ("a run's log reads page by page", pages_events),
    ];
    for (name, check) in checks {
        let handles = fresh();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*handles)));
        if let Err(panic) = result {
            eprintln!("store contract check failed: {name}");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn the_memory_store_meets_the_contract() {
    suite(&|| {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        Box::new(move || Arc::clone(&store))
    });
}

#[test]
fn the_sqlite_store_meets_the_contract() {
    suite(&|| {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let file = dir.path().join("weft.db");
        // Each handle is its own connection to the file, as another
        // process would have; the closure keeps the directory alive.
        Box::new(move || {
            let _keep = &dir;
            Arc::new(SqliteStore::open(&file).unwrap()) as Arc<dyn Store>
        })
    });
}

/// Each check in a schema of its own on the test database, dropped when
/// the check ends; each handle is its own store (its own pool of
/// connections), as another host would have.
#[test]
fn the_postgres_store_meets_the_contract() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    suite(&|| {
        let schema = crate::support::PgSchema::new(&format!(
            "weft_contract_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Box::new(move || Arc::new(PostgresStore::open(schema.url()).unwrap()) as Arc<dyn Store>)
    });
}

fn owner(id: &str) -> Owner {
    Owner {
        id: id.to_owned(),
        ttl: Duration::from_secs(300),
    }
}

/// An owner whose leases expire as soon as they are granted.
fn expired(id: &str) -> Owner {
    Owner {
        id: id.to_owned(),
        ttl: Duration::ZERO,
    }
}

fn run(id: &str) -> RunId {
    RunId::new(id).unwrap()
}

fn meta(id: &str) -> RunMeta {
    RunMeta {
        run_id: run(id),
        workflow_id: StepId::new("wf").unwrap(),
        manifest: "/contract/workflow.toml".into(),
        manifest_sha256: "00".repeat(32),
        workflow_digest: None,
    }
}

fn started(id: &str, at: u64) -> Event {
    Event::RunStarted {
        run: run(id),
        workflow: StepId::new("wf").unwrap(),
        input: json!({}),
        state: json!({}),
        at: Timestamp(at),
        origin: None,
    }
}

fn custom(n: u64) -> Event {
    Event::Custom {
        path: StepPath::parse("a").unwrap(),
        event: CustomEvent {
            kind: "tick".into(),
            data: json!(n),
        },
        at: Timestamp(100 + n),
    }
}

fn completed() -> Event {
    Event::RunCompleted {
        output: json!("done"),
        at: Timestamp(999),
    }
}

fn append<'a>(run: &'a RunId, expected: u64, epoch: u64, events: &'a [Event]) -> Append<'a> {
    Append {
        run,
        expected,
        epoch,
        events,
        wake: None,
    }
}

fn create(store: &dyn Store, id: &str, by: &Owner) -> weft_core::Lease {
    store
        .create_run(&meta(id), &[started(id, 1)], by, None)
        .unwrap()
}

fn creates_runs_with_a_lease(handles: Factory<'_>) {
    let store = handles();
    let lease = create(&*store, "r", &owner("a"));
    assert_eq!(
        (lease.run.as_str(), lease.owner.as_str(), lease.epoch),
        ("r", "a", 1)
    );
    assert!(matches!(
        store.create_run(&meta("r"), &[started("r", 2)], &owner("b"), None),
        Err(StoreError::Exists { .. })
    ));
    let (stored, events) = handles().load(&run("r")).unwrap();
    assert_eq!(stored, meta("r"));
    assert_eq!(events, [started("r", 1)]);
    assert!(matches!(
        store.load(&run("nobody")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.acquire(&run("nobody"), &owner("a"), Takeover::Force),
        Err(StoreError::NotFound { .. })
    ));
    create(&*store, "s", &owner("a"));
    let listed: Vec<String> = store
        .list_runs(Some(RunStatus::Running))
        .unwrap()
        .into_iter()
        .map(|s| s.meta.run_id.to_string())
        .collect();
    assert_eq!(listed.len(), 2);
}

fn fences_appends(handles: Factory<'_>) {
    let store = handles();
    let r = run("r");
    create(&*store, "r", &owner("a"));
    let one = [custom(1)];
    // A wrong epoch is refused before the sequence is even looked at.
    assert!(matches!(
        store.append_batch(&[append(&r, 1, 2, &one)]),
        Err(StoreError::Fenced {
            epoch: 2,
            current: 1,
            ..
        })
    ));
    assert!(matches!(
        store.append_batch(&[append(&r, 0, 1, &one)]),
        Err(StoreError::Conflict {
            expected: 0,
            actual: 1,
            ..
        })
    ));
    store.append_batch(&[append(&r, 1, 1, &one)]).unwrap();
    assert_eq!(handles().events_after(&r, 1).unwrap(), one);
    assert!(matches!(
        store.append_batch(&[append(&run("ghost"), 0, 1, &one)]),
        Err(StoreError::NotFound { .. })
    ));
}

fn batches_are_atomic(handles: Factory<'_>) {
    let store = handles();
    let (a, b) = (run("a"), run("b"));
    create(&*store, "a", &owner("x"));
    create(&*store, "b", &owner("x"));
    let one = [custom(1)];
    let two = [custom(2)];
    // The second append of the batch is stale: neither lands.
    assert!(
        store
            .append_batch(&[append(&a, 1, 1, &one), append(&b, 7, 1, &one)])
            .is_err()
    );
    assert_eq!(store.load(&a).unwrap().1.len(), 1);
    // Two appends to one run in one batch, the second after the first.
    store
        .append_batch(&[
            append(&a, 1, 1, &one),
            append(&a, 2, 1, &two),
            append(&b, 1, 1, &two),
        ])
        .unwrap();
    assert_eq!(store.load(&a).unwrap().1[1..], [custom(1), custom(2)]);
    assert_eq!(store.load(&b).unwrap().1[1..], [custom(2)]);
}

fn live_leases_hold(handles: Factory<'_>) {
    let store = handles();
    let r = run("r");
    create(&*store, "r", &owner("a"));
    match handles().acquire(&r, &owner("b"), Takeover::IfFree) {
        Err(StoreError::Leased {
            owner,
            remaining_ms,
            ..
        }) => {
            assert_eq!(owner, "a");
            assert!(remaining_ms <= 300_000, "{remaining_ms}");
        }
        other => panic!("a live lease was not held: {other:?}"),
    }
    // The holder may take it again: a new epoch, which fences its own
    // older appends too.
    let again = store.acquire(&r, &owner("a"), Takeover::IfFree).unwrap();
    assert_eq!(again.epoch, 2);
    assert!(matches!(
        store.append_batch(&[append(&r, 1, 1, &[custom(1)])]),
        Err(StoreError::Fenced { .. })
    ));
    // A cancel takes it whatever holds it.
    let forced = handles().acquire(&r, &owner("c"), Takeover::Force).unwrap();
    assert_eq!((forced.owner.as_str(), forced.epoch), ("c", 3));
    assert!(matches!(
        store.append_batch(&[append(&r, 1, 2, &[custom(1)])]),
        Err(StoreError::Fenced { current: 3, .. })
    ));
}

fn expired_leases_are_taken(handles: Factory<'_>) {
    let store = handles();
    let r = run("r");
    create(&*store, "r", &expired("dead"));
    let taken = handles()
        .acquire(&r, &owner("b"), Takeover::IfFree)
        .unwrap();
    assert_eq!(taken.epoch, 2);
    // The old owner's late append is refused; the new owner's lands.
    assert!(matches!(
        store.append_batch(&[append(&r, 1, 1, &[custom(1)])]),
        Err(StoreError::Fenced {
            epoch: 1,
            current: 2,
            ..
        })
    ));
    handles()
        .append_batch(&[append(&r, 1, 2, &[custom(2)])])
        .unwrap();
    assert_eq!(store.load(&r).unwrap().1[1..], [custom(2)]);
    // Renewing an expired lease that nobody took keeps it.
    create(&*store, "s", &expired("slow"));
    let held = store.renew(&owner("slow")).unwrap();
    assert_eq!(held, [(run("s"), 1)]);
    assert!(matches!(
        handles().acquire(&run("s"), &owner("b"), Takeover::IfFree),
        Err(StoreError::Leased { .. })
    ));
}

fn gone_holders_are_replaced(handles: Factory<'_>) {
    let store = handles();
    let r = run("r");
    create(&*store, "r", &owner("gone"));
    // Naming another holder takes nothing.
    assert!(matches!(
        store.acquire(&r, &owner("b"), Takeover::From("someone-else")),
        Err(StoreError::Leased { .. })
    ));
    let taken = store
        .acquire(&r, &owner("b"), Takeover::From("gone"))
        .unwrap();
    assert_eq!((taken.owner.as_str(), taken.epoch), ("b", 2));
}

fn renewal_lists_held_runs(handles: Factory<'_>) {
    let store = handles();
    create(&*store, "r", &owner("a"));
    create(&*store, "s", &owner("a"));
    create(&*store, "t", &expired("b"));
    let mut held = store.renew(&owner("a")).unwrap();
    held.sort();
    assert_eq!(held, [(run("r"), 1), (run("s"), 1)]);
    // After a takeover, the old owner holds it no more.
    handles()
        .acquire(&run("s"), &owner("c"), Takeover::Force)
        .unwrap();
    assert_eq!(store.renew(&owner("a")).unwrap(), [(run("r"), 1)]);
    assert!(store.renew(&owner("nobody")).unwrap().is_empty());
}

fn release_frees(handles: Factory<'_>) {
    let store = handles();
    let r = run("r");
    let lease = create(&*store, "r", &owner("a"));
    assert_eq!(handles().holder(&r).unwrap().as_deref(), Some("a"));
    assert_eq!(store.holder(&run("ghost")).unwrap(), None);
    store.release(&lease).unwrap();
    assert_eq!(store.holder(&r).unwrap(), None);
    assert!(store.renew(&owner("a")).unwrap().is_empty());
    let taken = handles()
        .acquire(&r, &owner("b"), Takeover::IfFree)
        .unwrap();
    // Releasing a lease already taken over changes nothing.
    store.release(&lease).unwrap();
    assert!(matches!(
        store.acquire(&r, &owner("c"), Takeover::IfFree),
        Err(StoreError::Leased { .. })
    ));
    store.release(&taken).unwrap();
    store.acquire(&r, &owner("c"), Takeover::IfFree).unwrap();
    // Many at once: each held one is freed, a stale one changes nothing.
    let held: Vec<_> = ["m1", "m2", "m3"]
        .iter()
        .map(|id| create(&*store, id, &owner("d")))
        .collect();
    store.release(&held[2]).unwrap();
    let other = handles()
        .acquire(&run("m3"), &owner("e"), Takeover::IfFree)
        .unwrap();
    store.release_all(&held).unwrap();
    store.release_all(&[]).unwrap();
    assert!(store.renew(&owner("d")).unwrap().is_empty());
    assert_eq!(
        store.renew(&owner("e")).unwrap(),
        [(run("m3"), other.epoch)]
    );
    for id in ["m1", "m2"] {
        store
            .acquire(&run(id), &owner("f"), Takeover::IfFree)
            .unwrap();
    }
}

fn settling_releases(handles: Factory<'_>) {
    let store = handles();
    // A run created already settled (its first events end it) is not held.
    store
        .create_run(
            &meta("born-done"),
            &[started("born-done", 1), completed()],
            &owner("a"),
            None,
        )
        .unwrap();
    assert!(store.renew(&owner("a")).unwrap().is_empty());
    let r = run("r");
    create(&*store, "r", &owner("a"));
    store
        .append_batch(&[append(&r, 1, 1, &[completed()])])
        .unwrap();
    assert_eq!(store.list_runs(None).unwrap()[0].status, RunStatus::Success);
    assert!(store.renew(&owner("a")).unwrap().is_empty());
    let next = handles()
        .acquire(&r, &owner("b"), Takeover::IfFree)
        .unwrap();
    assert_eq!(next.epoch, 2);
}

fn takes_and_appends_at_once(handles: Factory<'_>) {
    let store = handles();
    let r = run("r");
    create(&*store, "r", &owner("a"));
    let canceled = [Event::RunCanceled {
        reason: Some("stop".into()),
        at: Timestamp(500),
    }];
    // Behind the log: refused whole, the holder keeps its lease and epoch.
    assert!(matches!(
        store.acquire_and_append(&r, &owner("b"), Takeover::Force, 0, &canceled, None),
        Err(StoreError::Conflict {
            expected: 0,
            actual: 1,
            ..
        })
    ));
    assert_eq!(store.renew(&owner("a")).unwrap(), [(r.clone(), 1)]);
    // A live lease is taken only as `takeover` allows (decided before the
    // log's end is looked at).
    for expected in [0, 1] {
        assert!(matches!(
            store.acquire_and_append(&r, &owner("b"), Takeover::IfFree, expected, &canceled, None),
            Err(StoreError::Leased { .. })
        ));
    }
    assert_eq!(handles().load(&r).unwrap().1.len(), 1);
    // Forced: the holder is fenced out, and the run is settled (so held by
    // nobody) in the same transaction.
    let lease = store
        .acquire_and_append(&r, &owner("b"), Takeover::Force, 1, &canceled, None)
        .unwrap();
    assert_eq!(lease.epoch, 2);
    assert!(store.renew(&owner("a")).unwrap().is_empty());
    assert!(store.renew(&owner("b")).unwrap().is_empty());
    assert_eq!(
        store.list_runs(None).unwrap()[0].status,
        RunStatus::Canceled
    );
    assert_eq!(handles().events_after(&r, 1).unwrap(), canceled);
    assert!(matches!(
        store.append_batch(&[append(&r, 2, 1, &[custom(2)])]),
        Err(StoreError::Fenced { current: 2, .. })
    ));
    // On a running run that stays running, the new owner holds it.
    let s = run("s");
    create(&*store, "s", &owner("a"));
    let lease = store
        .acquire_and_append(&s, &owner("c"), Takeover::Force, 1, &[custom(1)], None)
        .unwrap();
    assert_eq!(
        store.renew(&owner("c")).unwrap(),
        [(s.clone(), lease.epoch)]
    );
    store
        .append_batch(&[append(&s, 2, lease.epoch, &[completed()])])
        .unwrap();
}

fn claimable_runs(handles: Factory<'_>) {
    let store = handles();
    let ids = |runs: Vec<weft_core::Claimable>| -> Vec<(String, Option<u64>)> {
        runs.into_iter()
            .map(|c| (c.run.to_string(), c.wake.map(|w| w.0)))
            .collect()
    };
    // Free and due now; free and sleeping until 500 or 300; held live;
    // finished.
    let now = create(&*store, "now", &owner("a"));
    store.release(&now).unwrap();
    for (id, wake) in [("late", 500), ("soon", 300)] {
        let lease = create(&*store, id, &expired("dead"));
        store
            .append_batch(&[Append {
                wake: Some(Timestamp(wake)),
                ..append(&run(id), 1, lease.epoch, &[custom(1)])
            }])
            .unwrap();
    }
    create(&*store, "held", &owner("live"));
    let done = create(&*store, "done", &expired("dead"));
    store
        .append_batch(&[append(&run("done"), 1, done.epoch, &[completed()])])
        .unwrap();

    let other = handles();
    assert_eq!(
        ids(other.claimable(Timestamp(u64::MAX)).unwrap()),
        [
            ("now".to_owned(), None),
            ("soon".to_owned(), Some(300)),
            ("late".to_owned(), Some(500)),
        ]
    );
    assert_eq!(
        ids(other.claimable(Timestamp(400)).unwrap()),
        [("now".to_owned(), None), ("soon".to_owned(), Some(300))]
    );
    // A wake time is cleared by an append that has work to do now.
    let taken = other
        .acquire(&run("soon"), &owner("b"), Takeover::IfFree)
        .unwrap();
    other
        .append_batch(&[append(&run("soon"), 2, taken.epoch, &[custom(2)])])
        .unwrap();
    other.release(&taken).unwrap();
    assert_eq!(
        ids(store.claimable(Timestamp(0)).unwrap()),
        [("now".to_owned(), None), ("soon".to_owned(), None)]
    );
}

/// Several owners (each its own handle, as separate processes) race to take
/// one run over and append to it, many times: each append lands only under
/// the epoch that was current, so the log is exactly the appends that
/// succeeded, in order, without gaps.
fn concurrent_owners(handles: Factory<'_>) {
    const OWNERS: usize = 4;
    const ROUNDS: u64 = 25;
    let r = run("r");
    let first = create(&*handles(), "r", &expired("creator"));
    drop(first);
    let barrier = Barrier::new(OWNERS);
    let landed: Vec<Vec<Event>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..OWNERS)
            .map(|i| {
                let store = handles();
                let (barrier, r) = (&barrier, &r);
                s.spawn(move || {
                    let me = expired(&format!("owner-{i}"));
                    let mut mine = Vec::new();
                    barrier.wait();
                    for n in 0..ROUNDS {
                        let Ok(lease) = store.acquire(r, &me, Takeover::IfFree) else {
                            continue;
                        };
                        let seen = store.load(r).unwrap().1.len() as u64;
                        let event = custom(i as u64 * 1000 + n);
                        let ok = store
                            .append_batch(&[append(
                                r,
                                seen,
                                lease.epoch,
                                std::slice::from_ref(&event),
                            )])
                            .is_ok();
                        if ok {
                            mine.push(event);
                        }
                    }
                    mine
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let log = handles().load(&r).unwrap().1;
    let total: usize = landed.iter().map(Vec::len).sum();
    assert_eq!(
        log.len(),
        1 + total,
        "every successful append, and only those"
    );
    assert!(total > 0, "some owner got to append");
    for events in &landed {
        // Each owner's appends are in the log in its own order.
        let positions: Vec<usize> = events
            .iter()
            .map(|e| {
                log.iter()
                    .position(|l| l == e)
                    .expect("a successful append is in the log")
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }
}

fn run_index_pages(handles: Factory<'_>) {
    let store = handles();
    // Seven runs: created at 10, 20, 20, 30, 40, 50, 60; two workflows;
    // `r3` finished.
    let make = |id: &str, at: u64, workflow: &str| {
        let mut m = meta(id);
        m.workflow_id = StepId::new(workflow).unwrap();
        let first = Event::RunStarted {
            run: run(id),
            workflow: m.workflow_id.clone(),
            input: json!({}),
            state: json!({}),
            at: Timestamp(at),
            origin: None,
        };
        store.create_run(&m, &[first], &owner("a"), None).unwrap()
    };
    for (id, at, wf) in [
        ("r1", 10, "wf"),
        ("r2a", 20, "other"),
        ("r2b", 20, "wf"),
        ("r3", 30, "wf"),
        ("r4", 40, "other"),
        ("r5", 50, "wf"),
        ("r6", 60, "wf"),
    ] {
        let lease = make(id, at, wf);
        if id == "r3" {
            store
                .append_batch(&[append(&run("r3"), 1, lease.epoch, &[completed()])])
                .unwrap();
        }
    }
    let ids = |page: &weft_core::RunPage| -> Vec<String> {
        page.runs
            .iter()
            .map(|r| r.meta.run_id.to_string())
            .collect()
    };
    let all = RunFilter::default();
    let other = handles();
    let first = other.runs(&all, None, 3).unwrap();
    assert_eq!(ids(&first), ["r6", "r5", "r4"]);
    // A run created after the first page does not shift the next ones.
    make("r7", 70, "wf");
    let second = other.runs(&all, first.next.as_ref(), 3).unwrap();
    assert_eq!(ids(&second), ["r3", "r2b", "r2a"]);
    let third = other.runs(&all, second.next.as_ref(), 3).unwrap();
    assert_eq!(ids(&third), ["r1"]);
    // Who holds each run: the live owner of a running run; nobody for one
    // that settled.
    assert_eq!(third.runs[0].held_by.as_deref(), Some("a"));
    assert_eq!(second.runs[0].held_by, None);
    assert_eq!(third.next, None);
    // An exact last page says so too.
    let exact = other
        .runs(
            &all,
            Some(&RunCursor {
                created_at: Timestamp(40),
                run: run("r4"),
            }),
            4,
        )
        .unwrap();
    assert_eq!(ids(&exact), ["r3", "r2b", "r2a", "r1"]);
    assert_eq!(exact.next, None);
    // Filters.
    let filter = |f: RunFilter| ids(&other.runs(&f, None, 100).unwrap());
    assert_eq!(
        filter(RunFilter {
            workflow: Some(StepId::new("other").unwrap()),
            ..RunFilter::default()
        }),
        ["r4", "r2a"]
    );
    assert_eq!(
        filter(RunFilter {
            status: Some(RunStatus::Success),
            ..RunFilter::default()
        }),
        ["r3"]
    );
    assert_eq!(
        filter(RunFilter {
            created_from: Some(Timestamp(20)),
            created_before: Some(Timestamp(40)),
            ..RunFilter::default()
        }),
        ["r3", "r2b", "r2a"]
    );
    assert_eq!(other.list_runs(Some(RunStatus::Running)).unwrap().len(), 7);
    // Counted by status, in status order, statuses without runs left out.
    assert_eq!(
        other.count_by_status().unwrap(),
        [(RunStatus::Running, 7), (RunStatus::Success, 1)]
    );
}

fn workflow_registry(handles: Factory<'_>) {
    let store = handles();
    store.put_workflow("d1", "lock one").unwrap();
    store.put_workflow("d1", "lock one").unwrap();
    assert_eq!(handles().workflow("d1").unwrap(), "lock one");
    assert!(matches!(
        store.workflow("nope"),
        Err(StoreError::Backend(_))
    ));
    // A run names a stored lock; an unknown one is refused.
    let pinned = |id: &str, digest: &str| RunMeta {
        workflow_digest: Some(digest.to_owned()),
        ..meta(id)
    };
    assert!(
        store
            .create_run(&pinned("x", "nope"), &[started("x", 1)], &owner("a"), None)
            .is_err()
    );
    let lease = store
        .create_run(&pinned("r", "d1"), &[started("r", 5)], &owner("a"), None)
        .unwrap();
    assert_eq!(
        store.pins(&run("r")).unwrap(),
        [Pin {
            seq: 0,
            digest: "d1".into(),
            at: Timestamp(5)
        }]
    );
    // A repin is fenced by the run's last event, names a stored lock, and
    // is refused while a live process holds the run (no epoch fences it).
    store.put_workflow("d2", "lock two").unwrap();
    assert!(matches!(
        store.repin(&run("r"), 1, "d2", Timestamp(9)),
        Err(StoreError::Leased { .. })
    ));
    store.release(&lease).unwrap();
    assert!(matches!(
        store.repin(&run("r"), 0, "d2", Timestamp(9)),
        Err(StoreError::Conflict {
            expected: 0,
            actual: 1,
            ..
        })
    ));
    assert!(store.repin(&run("r"), 1, "nope", Timestamp(9)).is_err());
    store.repin(&run("r"), 1, "d2", Timestamp(9)).unwrap();
    assert_eq!(
        handles()
            .load(&run("r"))
            .unwrap()
            .0
            .workflow_digest
            .as_deref(),
        Some("d2")
    );
    assert_eq!(store.pins(&run("r")).unwrap().len(), 2);
    assert!(matches!(
        store.repin(&run("ghost"), 0, "d2", Timestamp(9)),
        Err(StoreError::NotFound { .. })
    ));
}

fn deployments(handles: Factory<'_>) {
    let store = handles();
    let id = |s: &str| StepId::new(s).unwrap();
    let deployment = |workflow: &str, digest: &str, at: u64| Deployment {
        workflow: id(workflow),
        digest: digest.into(),
        at: Timestamp(at),
    };
    // A deployment names a stored lock.
    assert!(matches!(
        store.deploy(&id("orders"), "nope", Timestamp(1)),
        Err(StoreError::Backend(_))
    ));
    store.put_workflow("d1", "lock one").unwrap();
    store.put_workflow("d2", "lock two").unwrap();
    assert!(store.deploy(&id("orders"), "d1", Timestamp(10)).unwrap());
    // The same version again changes nothing: it keeps its first time.
    assert!(
        !handles()
            .deploy(&id("orders"), "d1", Timestamp(30))
            .unwrap()
    );
    assert!(store.deploy(&id("orders"), "d2", Timestamp(20)).unwrap());
    assert!(store.deploy(&id("billing"), "d1", Timestamp(15)).unwrap());
    assert_eq!(
        handles().deployments(Some(&id("orders"))).unwrap(),
        [
            deployment("orders", "d2", 20),
            deployment("orders", "d1", 10)
        ]
    );
    assert_eq!(
        store.deployments(None).unwrap(),
        [
            deployment("orders", "d2", 20),
            deployment("billing", "d1", 15),
            deployment("orders", "d1", 10)
        ]
    );
    assert!(store.deployments(Some(&id("ghost"))).unwrap().is_empty());
}

fn traces(handles: Factory<'_>) {
    let store = handles();
    assert_eq!(store.trace(&run("t")).unwrap(), None);
    let first = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    store.put_trace(&run("t"), first).unwrap();
    store
        .put_trace(
            &run("t"),
            "00-11111111111111111111111111111111-2222222222222222-01",
        )
        .unwrap();
    assert_eq!(handles().trace(&run("t")).unwrap().as_deref(), Some(first));
    assert_eq!(store.trace(&run("u")).unwrap(), None);
}

fn pages_events(handles: Factory<'_>) {
    let store = handles();
    let lease = create(&*store, "r", &owner("a"));
    let ticks: Vec<Event> = (1..=6).map(custom).collect();
    store
        .append_batch(&[append(&run("r"), 1, lease.epoch, &ticks)])
        .unwrap();
    let (_, all) = store.load(&run("r")).unwrap();
    assert_eq!(all.len(), 7);
    // Pages of 3 from the start: 3, 3, 1, then an empty page past the end.
    let reader = handles();
    let mut seen = 0u64;
    let mut pages = Vec::new();
    loop {
        let (stored, page) = reader.load_page(&run("r"), seen, 3).unwrap();
        assert_eq!(stored, meta("r"));
        let len = page.len();
        assert_eq!(page[..], all[seen as usize..seen as usize + len]);
        pages.push(len);
        seen += len as u64;
        if len < 3 {
            break;
        }
    }
    assert_eq!(pages, [3, 3, 1]);
    assert_eq!(reader.load_page(&run("r"), 7, 3).unwrap().1, []);
    assert_eq!(reader.load_page(&run("r"), u64::MAX, 3).unwrap().1, []);
    // A page of none: the metadata alone.
    let (stored, none) = reader.load_page(&run("r"), 0, 0).unwrap();
    assert_eq!((stored, none.len()), (meta("r"), 0));
    assert!(matches!(
        reader.load_page(&run("nobody"), 0, 3),
        Err(StoreError::NotFound { .. })
    ));
}
