//! Opening a database for reading only, including one in a directory this
//! process cannot write ([`open`], behind [`SqliteStore::open_read_only`]).
//!
//! The store is in WAL mode, and SQLite reads a WAL database only through
//! its `-shm` index (and `-wal` file), which it creates beside the database
//! when they are missing, even for a read-only connection. In a directory
//! the process cannot write (another user's store, a read-only mount, a
//! restored backup) that fails, and the first read reports "attempt to
//! write a readonly database" (`SQLITE_READONLY_DIRECTORY`). SQLite's only
//! way to read such a database is its `immutable=1` URI parameter (see
//! <https://sqlite.org/wal.html#readonly>), which [`open`] falls back to
//! when that is safe; see there.
//!
//! [`SqliteStore::open_read_only`]: crate::SqliteStore::open_read_only

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, ffi};
use weft_core::StoreError;

/// Opens the existing database at `path` read-only and reads it once (its
/// schema version), so the connection returned is known to read. Nothing
/// is created and nothing is written.
///
/// First it opens the file the ordinary way (`SQLITE_OPEN_READ_ONLY`),
/// which sees everything committed, the write-ahead log included, and
/// follows other processes' later commits. When the first read fails
/// because SQLite cannot create the `-shm`/`-wal` files beside the database
/// (the directory is not writable: `SQLITE_READONLY_DIRECTORY`, or an
/// existing `-shm` cannot be used: `SQLITE_READONLY_CANTINIT`) AND there is
/// neither a `-wal` nor a `-journal` file beside it, it reopens the file
/// with `immutable=1`: SQLite then reads the database file alone, takes no
/// locks and looks for no other file.
///
/// Why that is safe: with no `-wal` file, every committed transaction is in
/// the database file itself. SQLite deletes the `-wal` only when the last
/// connection closes, after checkpointing all of it into the database file,
/// and a writer that is still open keeps it there; so no process has the
/// store open for writing, and there are no committed events only the log
/// holds (if there were, nobody who cannot write the directory could read
/// them anyway, and the `-wal` would be there: then the ordinary error is
/// returned). With no `-journal`, there is no interrupted rollback-journal
/// transaction to undo either.
///
/// What it cannot see: immutable means SQLite assumes the file never
/// changes. If the store's owner starts writing after this open, its new
/// commits go to a new `-wal` file that this connection never reads, so it
/// keeps seeing the store as it was at the open (`weft events --follow`
/// sees no new events); and if that writer checkpoints into the database
/// file while a read is in progress, the read takes no lock against it and
/// may fail as a malformed database. Inspecting a store nobody is writing,
/// the case this exists for, is exact.
///
/// # Errors
/// [`StoreError::Backend`], worded as before the fallback existed: `open
/// LOCATION read-only: …` when the file cannot be opened (it does not
/// exist, or cannot be read), `read the schema version: …` when the first
/// read fails for any other reason (e.g. the file is not a database) or
/// the fallback does not apply, and the immutable open's own error, worded
/// the same way, when the fallback fails too.
pub(crate) fn open(
    path: &Path,
    location: &str,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    // No SQLITE_OPEN_URI: a path is a path.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = connect(path, flags, location, busy_timeout)?;
    let Err(first) = first_read(&conn) else {
        return Ok(conn);
    };
    if !(needs_shared_files(&first) && nothing_beside(path)) {
        return Err(schema_read_failed(first));
    }
    drop(conn);
    let Ok(uri) = immutable_uri(path) else {
        return Err(schema_read_failed(first));
    };
    let flags = flags | OpenFlags::SQLITE_OPEN_URI;
    let conn = connect(&uri, flags, location, busy_timeout)?;
    first_read(&conn).map_err(schema_read_failed)?;
    Ok(conn)
}

/// Opens a connection with `flags` and sets its busy timeout.
fn connect(
    path: impl AsRef<Path>,
    flags: OpenFlags,
    location: &str,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Backend(format!("open {location} read-only: {e}")))?;
    conn.busy_timeout(busy_timeout).map_err(|e| {
        StoreError::Backend(format!("open {location} read-only: set busy_timeout: {e}"))
    })?;
    Ok(conn)
}

/// The first read of a fresh connection: SQLite opens the file's pages,
/// and in WAL mode its `-wal` and `-shm`, only when it first reads.
fn first_read(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// A failed first read, as the schema-version read has always reported it.
fn schema_read_failed(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("read the schema version: {e}"))
}

/// Whether `e` says SQLite could not create, or use, the `-shm`/`-wal`
/// files a WAL database is read through.
fn needs_shared_files(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::ReadOnly
                && matches!(
                    f.extended_code,
                    ffi::SQLITE_READONLY_DIRECTORY | ffi::SQLITE_READONLY_CANTINIT
                )
    )
}

/// Whether there is neither a `-wal` nor a `-journal` file beside the
/// database: then the database file holds every committed transaction.
/// An error other than "not found" counts as a file being there.
fn nothing_beside(path: &Path) -> bool {
    ["-wal", "-journal"].iter().all(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        matches!(PathBuf::from(name).try_exists(), Ok(false))
    })
}

/// The `file:` URI that opens `path` with `immutable=1`: the absolute path
/// with every byte but the unreserved ones and `/` percent-encoded, so
/// spaces, `?`, `#` and `%` in it stay part of the path (SQLite decodes
/// `%HH` in a URI's path).
pub(crate) fn immutable_uri(path: &Path) -> std::io::Result<String> {
    let absolute = std::path::absolute(path)?;
    let mut uri = String::from("file:");
    for &byte in path_bytes(&absolute).iter() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// The bytes of an absolute path as a URI path: on Unix the path's own
/// bytes.
#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt as _;
    path.as_os_str().as_bytes().to_vec()
}

/// The bytes of an absolute path as a URI path: elsewhere (Windows) its
/// UTF-8 text with `/` separators, and `C:/…` written `/C:/…` as SQLite
/// expects (`:` is encoded, which SQLite decodes back).
#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    let text = path.to_string_lossy().replace('\\', "/");
    let text = if text.starts_with('/') {
        text
    } else {
        format!("/{text}")
    };
    text.into_bytes()
}
