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
        store
            .create_run(&meta("kept"), &events, &owner(), None)
            .unwrap();
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
        .create_run(&meta("r"), &every_variant("r")[..3], &owner(), None)
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
        .create_run(&meta("after"), &[started("after", 1)], &owner(), None)
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

/// Makes `file` a database SQLite itself only reads, whoever the process is:
/// file permissions do not stop root (and the tests may run as root), but a
/// rollback-journal database whose header asks for a newer "write version"
/// (byte 18 > 2) is opened read-only by every connection.
fn make_read_only(file: &Path) {
    let conn = rusqlite::Connection::open(file).unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    drop(conn);
    let mut bytes = std::fs::read(file).unwrap();
    bytes[18] = 3;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_database_that_cannot_be_written_is_read_with_open_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.db");
    let events = &every_variant("r")[..3];
    SqliteStore::open(&file)
        .unwrap()
        .create_run(&meta("r"), events, &owner(), None)
        .unwrap();
    make_read_only(&file);

    // A writable open sets WAL mode first, and fails.
    let err = SqliteStore::open(&file).unwrap_err().to_string();
    assert!(err.contains("readonly database"), "{err}");

    let store = SqliteStore::open_read_only(&file).unwrap();
    assert_eq!(
        store.load(&run_id("r")).unwrap(),
        (meta("r"), events.to_vec())
    );
    assert_eq!(store.events_after(&run_id("r"), 2).unwrap(), events[2..]);
    let runs = store.list_runs(None).unwrap();
    assert_eq!((runs.len(), runs[0].events), (1, 3));
    let err = store
        .append_batch(&[append(&run_id("r"), 3, &every_variant("r")[3..4])])
        .unwrap_err();
    assert!(err.to_string().contains("readonly database"), "{err}");
}

#[test]
fn open_read_only_never_writes() {
    let dir = tempfile::tempdir().unwrap();

    // A missing database is an error; nothing is created.
    let missing = dir.path().join("no").join("weft.db");
    let err = SqliteStore::open_read_only(&missing)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no/weft.db") && err.contains("read-only"),
        "{err}"
    );
    assert!(!dir.path().join("no").exists());

    // A writable database: reads work, writes are refused, the file is unchanged.
    let file = dir.path().join("weft.db");
    SqliteStore::open(&file)
        .unwrap()
        .create_run(&meta("r"), &every_variant("r")[..2], &owner(), None)
        .unwrap();
    let before = std::fs::read(&file).unwrap();
    let store = SqliteStore::open_read_only(&file).unwrap();
    assert_eq!(store.load(&run_id("r")).unwrap().1.len(), 2);
    assert!(
        store
            .create_run(&meta("s"), &[started("s", 1)], &owner(), None)
            .is_err()
    );
    assert!(
        store
            .acquire(&run_id("r"), &owner(), weft_core::Takeover::Force)
            .is_err()
    );
    drop(store);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // A database without weft's schema cannot be migrated read-only.
    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let err = SqliteStore::open_read_only(&empty).unwrap_err().to_string();
    assert!(
        err.contains("schema version 0") && err.contains("migration"),
        "{err}"
    );

    // Nor read one from a newer weft.
    rusqlite::Connection::open(&file)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open_read_only(&file).unwrap_err().to_string();
    assert!(
        err.contains("schema version 99") && err.contains("newer weft"),
        "{err}"
    );
}
