//! The store on a real PostgreSQL (`WEFT_TEST_PG`, else
//! `postgres://postgres@127.0.0.1:5432/test`; `./scripts/test` makes sure
//! one is reachable), each test in a schema of its own that it drops: what
//! the conformance suite (`tests/all/store_contract.rs`) does not reach.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use weft_core::{Event, EventStore, Owner, RunId, RunIndex, RunMeta, StepId, Timestamp};

use crate::PostgresStore;
use crate::location::Location;
use crate::migrate::{SCHEMA_VERSION, apply, schema_version};

/// The test database's URL.
fn server() -> String {
    std::env::var("WEFT_TEST_PG")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own for one test, dropped when it goes.
struct Scratch {
    url: String,
}

impl Scratch {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "weft_unit_{name}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let base = server();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}schema={schema}");
        // A schema left by a killed run of the same pid is dropped first.
        PostgresStore::drop_schema(&url).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for these tests (WEFT_TEST_PG, or ./scripts/postgres): {e}"
            )
        });
        Self { url }
    }

    /// A connection with the scratch schema as its search path.
    fn client(&self) -> postgres::Client {
        let location = Location::parse(&self.url).unwrap();
        location.config.connect(postgres::NoTls).unwrap()
    }

    fn location(&self) -> Location {
        Location::parse(&self.url).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = PostgresStore::drop_schema(&self.url);
    }
}

fn tables(client: &mut postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
            &[&schema],
        )
        .unwrap()
        .into_iter()
        .map(|row| row.get(0))
        .collect()
}

fn started(run: &str) -> (RunMeta, Event) {
    let meta = RunMeta {
        run_id: RunId::new(run).unwrap(),
        workflow_id: StepId::new("wf").unwrap(),
        manifest: "/m.toml".into(),
        manifest_sha256: "00".repeat(32),
        workflow_digest: None,
    };
    let event = Event::RunStarted {
        run: meta.run_id.clone(),
        workflow: meta.workflow_id.clone(),
        input: json!({"b": 1, "a": [1.5, "x"]}),
        state: json!({}),
        at: Timestamp(7),
        origin: None,
    };
    (meta, event)
}

fn owner() -> Owner {
    Owner {
        id: "unit".into(),
        ttl: std::time::Duration::from_secs(60),
    }
}

#[test]
fn pending_migrations_apply_all_or_nothing() {
    let scratch = Scratch::new("migrate");
    let location = scratch.location();
    let mut client = scratch.client();
    let good = ("0001_a.sql", "CREATE TABLE a (x integer);");
    let bad = ("0002_b.sql", "CREATE TABLE b (x integer); NOT SQL;");
    let err = apply(&mut client, &location, &[good, bad]).unwrap_err();
    assert!(
        err.to_string().contains("migration 0002_b.sql failed"),
        "{err}"
    );
    // The first migration, which succeeded, is rolled back with the second,
    // and so is the schema itself: nobody ever sees version 1.
    assert_eq!(schema_version(&mut client, &location).unwrap(), None);
    assert!(tables(&mut client, &location.schema).is_empty());

    let fixed = ("0002_b.sql", "CREATE TABLE b (x integer);");
    apply(&mut client, &location, &[good, fixed]).unwrap();
    assert_eq!(schema_version(&mut client, &location).unwrap(), Some(2));
    assert_eq!(
        tables(&mut client, &location.schema),
        ["a", "b", "schema_version"]
    );
    // Current: nothing runs again; a newer store is refused.
    apply(&mut client, &location, &[good, fixed]).unwrap();
    let err = apply(&mut client, &location, &[good]).unwrap_err();
    assert!(err.to_string().contains("newer weft"), "{err}");
}

/// Hosts opening a fresh store at once: the advisory lock lets one
/// migrate, and the others find the schema current (the migration's
/// `CREATE TABLE`s would fail if run twice).
#[test]
fn hosts_opening_a_fresh_store_at_once_migrate_it_once() {
    const HOSTS: usize = 4;
    let scratch = Scratch::new("race");
    let barrier = Arc::new(Barrier::new(HOSTS));
    let opened: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..HOSTS)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let url = scratch.url.clone();
                s.spawn(move || {
                    barrier.wait();
                    PostgresStore::open(&url)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for store in opened {
        assert_eq!(store.unwrap().schema_version().unwrap(), SCHEMA_VERSION);
    }
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens there, the connection is refused
    // at once.
    let err = PostgresStore::open("postgres://weft:secret@127.0.0.1:1/test?schema=x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://weft@127.0.0.1:1/test?schema=x"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn a_read_only_store_reads_and_refuses_writes() {
    let scratch = Scratch::new("read_only");
    // Nothing written there yet: no store, and none is created.
    assert!(
        PostgresStore::open_read_only(&scratch.url)
            .unwrap()
            .is_none()
    );
    assert!(tables(&mut scratch.client(), &scratch.location().schema).is_empty());

    let store = PostgresStore::open(&scratch.url).unwrap();
    let (meta, event) = started("r");
    store
        .create_run(&meta, std::slice::from_ref(&event), &owner(), None)
        .unwrap();
    let reader = PostgresStore::open_read_only(&scratch.url)
        .unwrap()
        .unwrap();
    // The event reads back exactly as written, key order included (text,
    // not jsonb; `Value`'s equality would not see the order).
    let loaded = reader.load(&meta.run_id).unwrap().1;
    assert_eq!(loaded, std::slice::from_ref(&event));
    assert_eq!(
        serde_json::to_string(&loaded[0]).unwrap(),
        serde_json::to_string(&event).unwrap()
    );
    assert!(
        serde_json::to_string(&loaded[0])
            .unwrap()
            .contains(r#"{"b":1,"a":[1.5,"x"]}"#)
    );
    assert_eq!(reader.list_runs(None).unwrap().len(), 1);
    let (other, first) = started("s");
    let err = reader
        .create_run(&other, &[first], &owner(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("read-only transaction"), "{err}");
    assert!(err.contains("run s"), "{err}");
}

#[test]
fn a_store_newer_than_this_code_is_refused() {
    let scratch = Scratch::new("newer");
    PostgresStore::open(&scratch.url).unwrap();
    scratch
        .client()
        .batch_execute("UPDATE schema_version SET version = 99")
        .unwrap();
    for err in [
        PostgresStore::open(&scratch.url).unwrap_err(),
        PostgresStore::open_read_only(&scratch.url).unwrap_err(),
    ] {
        assert!(err.to_string().contains("newer weft"), "{err}");
    }
}

/// Terminates the backends of the connections named `app` (their
/// `application_name`), waiting for each to be gone: only this test's, not
/// those of the other tests sharing the database. How many it terminated.
fn terminate(app: &str) -> usize {
    let mut admin = postgres::Client::connect(&server(), postgres::NoTls).unwrap();
    admin
        .query(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1
               AND pid <> pg_backend_pid()",
            &[&app],
        )
        .unwrap()
        .into_iter()
        .filter(|row| row.get::<_, bool>(0))
        .count()
}

/// The URL of `scratch` with its connections named `app`.
fn named(scratch: &Scratch, app: &str) -> String {
    format!("{}&application_name={app}", scratch.url)
}

#[test]
fn a_released_run_wakes_a_waiter_on_another_handle() {
    let scratch = Scratch::new("hint");
    let writer = PostgresStore::open(&scratch.url).unwrap();
    let waiter = PostgresStore::open(&scratch.url).unwrap();
    waiter.listen().unwrap();
    assert!(!waiter.wait_for_hint(Duration::ZERO), "nothing hinted yet");

    // A run created (leased by its creator) is nobody else's to take: no
    // hint. Its lease released while it runs: claimable, hinted.
    let (meta, event) = started("hinted");
    let lease = writer.create_run(&meta, &[event], &owner(), None).unwrap();
    writer.release(&lease).unwrap();
    // The bound only keeps a broken test from hanging: the hint is there
    // at once (sent at the release's commit, before it returned).
    assert!(waiter.wait_for_hint(Duration::from_secs(60)));
    // One hint per release: consumed by that wait.
    assert!(!waiter.wait_for_hint(Duration::ZERO));

    // A hint through the trait, from a second release of another run.
    let (meta, event) = started("hinted-too");
    let lease = writer.create_run(&meta, &[event], &owner(), None).unwrap();
    writer.release_all(&[lease]).unwrap();
    let store: &dyn EventStore = &waiter;
    assert!(store.wait_for_hint(Duration::from_secs(60)));
}

#[test]
fn a_store_whose_backends_are_killed_reconnects_and_retries() {
    let scratch = Scratch::new("reconnect");
    let app = format!("weft_unit_reconnect_{}", std::process::id());
    let store = Arc::new(PostgresStore::open(&named(&scratch, &app)).unwrap());
    let (meta, event) = started("survivor");
    let run = meta.run_id.clone();
    let lease = store.create_run(&meta, &[event], &owner(), None).unwrap();
    // Several pooled connections, from threads using the store at once.
    const THREADS: usize = 4;
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                barrier.wait();
                store.load(&run).unwrap();
            });
        }
    });
    store.listen().unwrap();

    // Killed under a transaction: the append runs again on a new
    // connection (nothing was written by the lost one), once.
    assert!(terminate(&app) >= 1);
    let losses = store.generation.current();
    let step = Event::StepStarted {
        path: weft_core::StepPath::parse("a").unwrap(),
        step: StepId::new("a").unwrap(),
        attempt: 1,
        input: Arc::new(json!({})),
        at: Timestamp(8),
    };
    store
        .append_batch(&[weft_core::Append {
            run: &run,
            expected: 1,
            epoch: lease.epoch,
            events: std::slice::from_ref(&step),
            wake: None,
        }])
        .unwrap();
    assert!(store.generation.current() > losses, "a loss was seen");

    // Killed under a read, and under a statement that commits alone.
    assert!(terminate(&app) >= 1);
    let (_, events) = store.load(&run).unwrap();
    assert_eq!(events.len(), 2, "the append landed once: {events:?}");
    assert!(terminate(&app) >= 1);
    assert_eq!(store.renew(&owner()).unwrap(), [(run.clone(), lease.epoch)]);

    // The listening connection is replaced too (a hint sent while it was
    // lost is missed: polling finds that run).
    assert!(terminate(&app) >= 1);
    store.listen().unwrap();
    store.release(&lease).unwrap();
    assert!(store.wait_for_hint(Duration::from_secs(60)));
}
