//! Bounded reading of the files weft is given: manifests, schema files, and
//! (through the CLI) workflow input and resume data files.
//!
//! A path may name anything: a symlink to `/dev/zero`, a FIFO nobody writes
//! to, a file another process keeps appending to. [`read_file`] reads only
//! regular files (after following symlinks) and never more than a cap, so
//! none of them can make weft hang or grow without bound.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::Path;

/// The largest manifest weft reads: 4 MiB of TOML or JSON is far more than
/// any hand-written workflow needs, even with inline schemas.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The largest JSON Schema file a manifest may name (4 MiB).
pub const MAX_SCHEMA_BYTES: u64 = 4 << 20;

/// Reads the whole file at `path` if it is a regular file (after following
/// symlinks) of at most `limit` bytes.
///
/// The type is checked before the file is opened (opening a FIFO would block
/// until someone writes to it) and again on the open file; the read itself
/// stops after `limit + 1` bytes, so a file growing while it is read is
/// refused too instead of being read without end.
///
/// # Errors
/// The operating system's error when the file cannot be inspected, opened or
/// read (e.g. [`io::ErrorKind::NotFound`]); [`io::ErrorKind::InvalidInput`]
/// when it is not a regular file (a directory, a device such as
/// `/dev/zero`, a FIFO or a socket); [`io::ErrorKind::FileTooLarge`] when it
/// holds more than `limit` bytes. The messages do not name the file: the
/// caller does.
pub fn read_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    check_regular(&fs::metadata(path)?)?;
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    // Checked again on the open file: the path may have been replaced since.
    check_regular(&metadata)?;
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    // The size is only a hint (it may change, and some files report 0);
    // `take` is what bounds the read.
    let hint = usize::try_from(metadata.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(hint);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn check_regular(metadata: &fs::Metadata) -> io::Result<()> {
    if metadata.is_file() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file but {}", describe(&metadata.file_type())),
    ))
}

/// What a file that is not a regular file is, for messages.
fn describe(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than the limit of {}", bytes(limit)),
    )
}

/// `limit` for humans: whole MiB or KiB when it is one, else bytes.
fn bytes(limit: u64) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit.is_multiple_of(1 << 10) {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"12345").unwrap();
        assert_eq!(read_file(&path, 5).unwrap(), b"12345");
        let e = read_file(&path, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "larger than the limit of 4 bytes");
    }

    #[test]
    fn refuses_devices_directories_and_fifos_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero.toml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_file(&link, MAX_MANIFEST_BYTES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "not a regular file but a character device");

        let e = read_file(dir.path(), MAX_MANIFEST_BYTES).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a directory");

        // Opening a FIFO would block until a writer comes: it is refused first.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_file(&fifo, MAX_MANIFEST_BYTES).unwrap_err();
        assert_eq!(e.to_string(), "not a regular file but a FIFO");
    }

    #[test]
    fn a_file_larger_than_its_reported_size_is_still_bounded() {
        // Files in /proc report a size of 0 whatever they hold.
        let path = Path::new("/proc/self/status");
        assert_eq!(fs::metadata(path).unwrap().len(), 0);
        let e = read_file(path, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn limits_read_as_units() {
        assert_eq!(bytes(4 << 20), "4 MiB");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
