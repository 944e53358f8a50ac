//! `open_read_only` on a WAL database in a directory the process cannot
//! write, where SQLite cannot create the `-shm`/`-wal` files it reads a WAL
//! database through (see `crate::read_only`).
//!
//! Tests usually run as root, and root ignores file permissions: it would
//! create the `-shm` in a 0555 directory, and the bug would not show. So when
//! this process can write the directory anyway, the checks run in a child:
//! this test binary again, as uid/gid 65534 (`setpriv`), running only the
//! same test, which finds [`CHILD_DIR`] set and runs [`unprivileged_child`].
//! As an ordinary user they run in process.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use rusqlite::{Connection, OpenFlags};

use super::*;
use crate::read_only::immutable_uri;

/// The environment variable naming the directory [`unprivileged_child`]
/// checks; set only in the child.
const CHILD_DIR: &str = "WEFT_STORE_TEST_READ_ONLY_DIR";

/// The runs the store holds: `a` with three events, `b` with two.
fn contents() -> [(RunId, Vec<Event>); 2] {
    [
        (run_id("a"), every_variant("a")[..3].to_vec()),
        (run_id("b"), every_variant("b")[..2].to_vec()),
    ]
}

/// A store with [`contents`], closed (so checkpointed: no `-wal` or `-shm`
/// is left), copied into `parent/ro/` as `weft.db` 0444 in a 0555
/// directory. Returns the directory.
fn read_only_store(parent: &Path) -> PathBuf {
    let source = parent.join("source.db");
    {
        let store = SqliteStore::open(&source).unwrap();
        for (run, events) in contents() {
            store
                .create_run(&meta(run.as_str()), &events, &owner(), None)
                .unwrap();
        }
    }
    assert!(!parent.join("source.db-wal").exists());
    assert!(!parent.join("source.db-shm").exists());
    let dir = parent.join("ro");
    fs::create_dir(&dir).unwrap();
    fs::copy(&source, dir.join("weft.db")).unwrap();
    fs::set_permissions(dir.join("weft.db"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether this process can create a file in `dir` despite its mode (root
/// can); the probe file is removed again.
fn can_write(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let created = fs::write(&probe, b"").is_ok();
    if created {
        fs::remove_file(&probe).unwrap();
    }
    created
}

/// Whether uid 65534 can reach and run `file`: every directory above it
/// searchable by others, the file readable and executable by others.
fn others_can_run(file: &Path) -> bool {
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(file) & 0o005 == 0o005 && file.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0)
}

/// The checks, as a process that cannot write `dir`.
fn check_read_only_dir(dir: &Path) {
    let file = dir.join("weft.db");
    // The condition is real: SQLite's ordinary read-only open cannot read it.
    let plain = Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let err = plain
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .unwrap_err();
    assert!(err.to_string().contains("readonly database"), "{err}");
    drop(plain);

    let store = SqliteStore::open_read_only(&file).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        crate::migrate::SCHEMA_VERSION
    );
    for (run, events) in contents() {
        assert_eq!(
            store.load(&run).unwrap(),
            (meta(run.as_str()), events.clone())
        );
        assert_eq!(store.events_after(&run, 1).unwrap(), events[1..]);
    }
    let runs = store.list_runs(None).unwrap();
    let mut listed: Vec<(String, u64)> = runs
        .iter()
        .map(|r| (r.meta.run_id.as_str().to_owned(), r.events))
        .collect();
    listed.sort();
    assert_eq!(listed, [("a".to_owned(), 3), ("b".to_owned(), 2)]);
    assert!(matches!(
        store.load(&run_id("zzz")),
        Err(StoreError::NotFound { .. })
    ));
    // Writes are refused.
    let err = store
        .append_batch(&[append(&run_id("a"), 3, &every_variant("a")[3..4])])
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    assert!(
        store
            .create_run(&meta("c"), &[started("c", 1)], &owner(), None)
            .is_err()
    );
    drop(store);
    assert_eq!(names(dir), ["weft.db"]);
}

/// The side files next to a copy of the store that make the immutable
/// fallback unsafe: each goes in its own read-only directory `parent/NAME`,
/// with NAME the suffix without its dash.
const BESIDE: [&str; 2] = ["-wal", "-journal"];

/// The refusals, as a process that cannot write them: with a `-wal` (or a
/// `-journal`) beside the database there may be commits the database file
/// does not hold (or a transaction to roll back), so the fallback is not
/// taken and the error is the ordinary one. An empty `-wal` makes SQLite
/// fail with "unable to open" (it cannot create the `-shm`); an empty
/// `-journal` is no hot journal, so SQLite fails as without it, and only
/// the check for side files refuses.
fn check_refusals(parent: &Path) {
    for suffix in BESIDE {
        let dir = parent.join(&suffix[1..]);
        let err = SqliteStore::open_read_only(&dir.join("weft.db"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("store: read the schema version: "), "{err}");
        let expected = if suffix == "-wal" {
            "unable to open database file"
        } else {
            "readonly database"
        };
        assert!(err.contains(expected), "{suffix}: {err}");
        assert_eq!(
            names(&dir),
            ["weft.db".to_owned(), format!("weft.db{suffix}")]
        );
    }
}

/// Runs the checks on `ro` (and the refusals next to it) in this process
/// when it cannot write them, else as uid 65534 in a child. `false` when
/// neither is possible (root without `setpriv`).
fn run_unprivileged(parent: &Path, ro: &Path) -> bool {
    if !can_write(ro) {
        check_read_only_dir(ro);
        check_refusals(parent);
        return true;
    }
    if !Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return false;
    }
    let mut exe = std::env::current_exe().unwrap();
    if !others_can_run(&exe) {
        let copy = parent.join("store-tests");
        fs::copy(&exe, &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        exe = copy;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "tests::read_only::a_wal_database_in_a_directory_that_cannot_be_written_is_read",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, parent)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the unprivileged child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It ran the one test, not none.
    assert!(stdout.contains("1 passed"), "{stdout}");
    true
}

#[test]
fn a_wal_database_in_a_directory_that_cannot_be_written_is_read() {
    if let Some(parent) = std::env::var_os(CHILD_DIR) {
        // This process is the unprivileged child the test started.
        return unprivileged_child(&PathBuf::from(parent));
    }
    let temp = tempfile::tempdir().unwrap();
    let parent = temp.path();
    // tempdir is 0700; the unprivileged child must reach into it.
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    let ro = read_only_store(parent);
    let mut dirs = vec![ro.clone()];
    for suffix in BESIDE {
        let dir = parent.join(&suffix[1..]);
        fs::create_dir(&dir).unwrap();
        fs::copy(ro.join("weft.db"), dir.join("weft.db")).unwrap();
        fs::write(dir.join(format!("weft.db{suffix}")), b"").unwrap();
        for file in ["weft.db".to_owned(), format!("weft.db{suffix}")] {
            fs::set_permissions(dir.join(file), fs::Permissions::from_mode(0o444)).unwrap();
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
        dirs.push(dir);
    }

    let ran = run_unprivileged(parent, &ro);
    // Nothing was created (and the child's checks said so too).
    assert_eq!(names(&ro), ["weft.db"]);
    // Let tempdir's cleanup remove them when it runs unprivileged.
    for dir in &dirs {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    if !ran {
        eprintln!(
            "NOTE: running as root without `setpriv`: the read-only directory \
             cannot be reproduced, its checks did not run"
        );
    }
}

/// The checks of [`a_wal_database_in_a_directory_that_cannot_be_written_is_read`]
/// as the unprivileged child it starts (this test binary again, running that
/// one test with [`CHILD_DIR`] set).
fn unprivileged_child(parent: &Path) {
    let ro = parent.join("ro");
    assert!(!can_write(&ro), "the child can write {}", ro.display());
    check_read_only_dir(&ro);
    check_refusals(parent);
}

#[test]
fn the_immutable_uri_encodes_the_path() {
    assert_eq!(
        immutable_uri(Path::new("/srv/a b/x?y#z%20_~.-/weft.db")).unwrap(),
        "file:/srv/a%20b/x%3Fy%23z%2520_~.-/weft.db?immutable=1"
    );
    // A relative path is made absolute.
    let uri = immutable_uri(Path::new("weft.db")).unwrap();
    assert!(uri.starts_with("file:/") && uri.ends_with("/weft.db?immutable=1"));

    // SQLite reads the file at such a path, not another.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a b?c=1#d%41&e");
    let file = odd.join("we ft%3F.db");
    SqliteStore::open(&file)
        .unwrap()
        .create_run(&meta("r"), &every_variant("r")[..2], &owner(), None)
        .unwrap();
    let conn = Connection::open_with_flags(
        immutable_uri(&file).unwrap(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let count: i64 = conn
        .query_row("SELECT count(*) FROM events WHERE run_id = 'r'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(count, 2);
    drop(conn);
    assert_eq!(names(&odd), ["we ft%3F.db"]);
}
