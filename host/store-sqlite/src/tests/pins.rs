//! Workflow locks, pins and re-pins, and opening a database from before them.

use super::*;
use weft_core::Pin;

fn pinned(run: &str, digest: &str) -> RunMeta {
    RunMeta {
        workflow_digest: Some(digest.to_owned()),
        ..meta(run)
    }
}

#[test]
fn a_lock_is_stored_once_and_a_run_references_it() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.put_workflow("d1", "{\"lock\":1}").unwrap();
    // The same digest again changes nothing (the content is the same by
    // construction: the digest is its hash).
    store.put_workflow("d1", "{\"lock\":1}").unwrap();
    assert_eq!(store.workflow("d1").unwrap(), "{\"lock\":1}");
    store
        .create_run(&pinned("r", "d1"), &[started("r", 5)], &owner(), None)
        .unwrap();
    store
        .create_run(&pinned("s", "d1"), &[started("s", 6)], &owner(), None)
        .unwrap();
    assert_eq!(store.load(&run_id("r")).unwrap().0, pinned("r", "d1"));
    let listed = store.list_runs(None).unwrap();
    assert!(
        listed
            .iter()
            .all(|r| r.meta.workflow_digest.as_deref() == Some("d1"))
    );
    assert_eq!(
        store.pins(&run_id("r")).unwrap(),
        vec![Pin {
            seq: 0,
            digest: "d1".to_owned(),
            at: Timestamp(5)
        }]
    );
    let count: i64 = store
        .lock()
        .query_row("SELECT count(*) FROM workflows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn a_run_cannot_reference_a_lock_that_is_not_stored() {
    let store = SqliteStore::open_in_memory().unwrap();
    let err = store
        .create_run(&pinned("r", "nope"), &[started("r", 5)], &owner(), None)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("run r: no workflow lock `nope` in the store"),
        "{err}"
    );
    assert!(matches!(
        store.load(&run_id("r")),
        Err(StoreError::NotFound { .. })
    ));
    let err = store.workflow("nope").unwrap_err();
    assert!(err.to_string().contains("no workflow lock `nope`"), "{err}");
}

#[test]
fn a_repin_is_fenced_by_the_last_event_and_kept_in_the_history() {
    let store = SqliteStore::open_in_memory().unwrap();
    store.put_workflow("d1", "one").unwrap();
    store.put_workflow("d2", "two").unwrap();
    let lease = store
        .create_run(
            &pinned("r", "d1"),
            &[started("r", 5), step_started("a", 1, 6)],
            &owner(),
            None,
        )
        .unwrap();
    // Nobody drives it (a repin needs that; see the store contract suite).
    store.release(&lease).unwrap();
    // The caller checked one event: the run has two.
    let err = store
        .repin(&run_id("r"), 1, "d2", Timestamp(9))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .repin(&run_id("r"), 2, "d3", Timestamp(9))
        .unwrap_err();
    assert!(err.to_string().contains("no workflow lock `d3`"), "{err}");
    assert!(matches!(
        store.repin(&run_id("nobody"), 0, "d2", Timestamp(9)),
        Err(StoreError::NotFound { .. })
    ));
    store.repin(&run_id("r"), 2, "d2", Timestamp(9)).unwrap();
    assert_eq!(store.load(&run_id("r")).unwrap().0, pinned("r", "d2"));
    let pins = store.pins(&run_id("r")).unwrap();
    assert_eq!(
        pins.iter()
            .map(|p| (p.seq, p.digest.as_str()))
            .collect::<Vec<_>>(),
        vec![(0, "d1"), (2, "d2")]
    );
    // A failed re-pin changed nothing.
    assert_eq!(pins.len(), 2);
}

/// The schema of weft's first release (migration 0001 only), with a run in it.
fn version_1_database(file: &Path) {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.execute_batch(include_str!("../../migrations/0001_init.sql"))
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO runs (run_id, workflow_id, manifest, manifest_sha256, status, last_seq,
                           created_at, updated_at)
         VALUES ('old', 'order-fulfil', '/srv/flows/order.toml', ?1, 'running', 1, 1000, 1000)",
        ["ab".repeat(32)],
    )
    .unwrap();
    let payload = serde_json::to_string(&started("old", 1_000)).unwrap();
    conn.execute(
        "INSERT INTO events (run_id, seq, type, at, payload) VALUES ('old', 1, 'run-started', 1000, ?1)",
        [payload],
    )
    .unwrap();
}

#[test]
fn a_database_from_before_locks_is_migrated_and_its_runs_have_no_pin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.db");
    version_1_database(&file);
    // Read-only, it cannot be migrated, and says so.
    let err = SqliteStore::open_read_only(&file).unwrap_err();
    assert!(err.to_string().contains("schema version 1"), "{err}");

    let store = SqliteStore::open(&file).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        crate::migrate::SCHEMA_VERSION
    );
    let (old, events) = store.load(&run_id("old")).unwrap();
    assert_eq!(old, meta("old"));
    assert_eq!(events, vec![started("old", 1_000)]);
    assert!(store.pins(&run_id("old")).unwrap().is_empty());
    // The old run goes on; a new one is pinned.
    store
        .append_batch(&[Append {
            run: &run_id("old"),
            expected: 1,
            // Recorded before leases: epoch 0, never leased.
            epoch: 0,
            events: &[step_started("a", 1, 1_001)],
            wake: None,
        }])
        .unwrap();
    store.put_workflow("d1", "lock").unwrap();
    store
        .create_run(
            &pinned("new", "d1"),
            &[started("new", 2_000)],
            &owner(),
            None,
        )
        .unwrap();
    // An old run can be pinned later (`weft resume --upgrade`).
    store
        .repin(&run_id("old"), 2, "d1", Timestamp(3_000))
        .unwrap();
    assert_eq!(store.pins(&run_id("old")).unwrap()[0].seq, 2);
    assert_sound(&store);
    drop(store);
    let store = SqliteStore::open_read_only(&file).unwrap();
    assert_eq!(store.list_runs(None).unwrap().len(), 2);
}
