//! The database itself: thread safety, reopening, pragmas, migrations, damage.

use super::*;

#[test]
fn the_store_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<SqliteStore>();
    let _: Box<dyn EventStore> = Box::new(SqliteStore::open_in_memory().unwrap());
}

#[test]
fn a_reopened_file_keeps_its_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    // Parent directories are created on first use.
    let file = dir.path().join("state").join("nested").join("weft.db");
    let events = every_variant("kept");
    {
        let store = SqliteStore::open(&file).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            crate::migrate::SCHEMA_VERSION
        );
        store.create_run(&meta("kept"), &events).unwrap();
        store.set_timer(&run_id("kept"), "t", Timestamp(9)).unwrap();
    }
    for durability in [Durability::Full, Durability::Normal] {
        // Re-running 0001 would fail on its CREATE TABLEs.
        let store = SqliteStore::open_with(&file, durability).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            crate::migrate::SCHEMA_VERSION
        );
        assert_eq!(
            store.load(&run_id("kept")).unwrap(),
            (meta("kept"), events.clone())
        );
        assert_eq!(store.due_timers(Timestamp(9)).unwrap().len(), 1);
        assert_eq!(
            store.list_runs(None).unwrap()[0].status,
            RunStatus::Canceled
        );
        assert_sound(&store);
    }
}

#[test]
fn the_pragmas_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let pragma = |store: &SqliteStore, name: &str| -> String {
        store
            .lock()
            .query_row(&format!("PRAGMA {name}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    let full = file_store(dir.path());
    assert_eq!(pragma(&full, "journal_mode"), "wal");
    assert_eq!(pragma(&full, "synchronous"), "2");
    assert_eq!(pragma(&full, "foreign_keys"), "1");
    assert_eq!(pragma(&full, "busy_timeout"), "5000");
    let normal = SqliteStore::open_with(&dir.path().join("weft.db"), Durability::Normal).unwrap();
    assert_eq!(pragma(&normal, "synchronous"), "1");
}

#[test]
fn a_database_from_a_newer_weft_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.db");
    drop(SqliteStore::open(&file).unwrap());
    rusqlite::Connection::open(&file)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&file).unwrap_err().to_string();
    assert!(
        err.contains("schema version 99") && err.contains("newer weft"),
        "{err}"
    );
}

#[test]
fn a_stored_event_that_does_not_parse_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    store
        .create_run(&meta("r"), &every_variant("r")[..3])
        .unwrap();
    rusqlite::Connection::open(dir.path().join("weft.db"))
        .unwrap()
        .execute(
            "UPDATE events SET payload = '{\"type\":\"nope\"}' WHERE run_id = 'r' AND seq = 2",
            [],
        )
        .unwrap();
    let err = store.load(&run_id("r")).unwrap_err();
    let StoreError::Backend(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("run r") && message.contains("event 2"),
        "{message}"
    );
    assert!(matches!(
        store.events_after(&run_id("r"), 1),
        Err(StoreError::Backend(_))
    ));
    assert_eq!(store.events_after(&run_id("r"), 2).unwrap().len(), 1);

    // A missing event is reported, not skipped.
    store
        .lock()
        .execute("DELETE FROM events WHERE run_id = 'r' AND seq = 2", [])
        .unwrap();
    let err = store.load(&run_id("r")).unwrap_err().to_string();
    assert!(err.contains("missing event 2"), "{err}");
}

#[test]
fn a_panic_while_holding_the_connection_does_not_wedge_the_store() {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let holder = Arc::clone(&store);
    let panicked = std::thread::spawn(move || {
        let conn = holder.lock();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        panic!("simulated bug while a transaction is open");
    })
    .join();
    assert!(panicked.is_err());
    store
        .create_run(&meta("after"), &[started("after", 1)])
        .unwrap();
    assert_eq!(store.load(&run_id("after")).unwrap().1.len(), 1);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(
        &file,
        "not sqlite at all, just some text that is long enough ".repeat(100),
    )
    .unwrap();
    let err = SqliteStore::open(&file).unwrap_err().to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not a database"),
        "{err}"
    );
}
