//! [`WorkflowLock`]: a workflow frozen as the texts it was loaded from, and
//! [`Files`], where a manifest's files come from (the disk, a recording of
//! the disk, or a lock).
//!
//! A run is pinned to the lock of the workflow it started with: everything
//! the manifest crate read (the manifest, its schema files, nested
//! manifests) as text, and every component as its canonical path and the
//! SHA-256 of its bytes. Loading from a lock reads nothing from disk, so a
//! run keeps its workflow when the files move or change.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::file::read_file;

/// The lock format this code writes and reads.
pub const LOCK_FORMAT: u32 = 1;

/// A workflow frozen for a run: see the module documentation. Its JSON
/// ([`WorkflowLock::to_json`]) is deterministic (ordered maps), so equal
/// locks have equal [`WorkflowLock::digest`]s and are stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkflowLock {
    /// The lock format ([`LOCK_FORMAT`]).
    pub format: u32,
    /// The root manifest's path as it was loaded (a key of `files`).
    pub manifest: String,
    /// Every manifest and schema file read, by the path it was read at
    /// (relative ones relative to the directory weft ran in): its text.
    pub files: BTreeMap<String, String>,
    /// Every component, by the path the manifest resolved it to.
    pub components: BTreeMap<String, LockedComponent>,
}

/// A component as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedComponent {
    /// Its canonical path when the lock was made (the path the workflow's
    /// step definitions name).
    pub path: String,
    /// The SHA-256 (hex) of its bytes; empty until the sandbox loaded it.
    pub sha256: String,
}

impl WorkflowLock {
    /// The lock's JSON, as stored.
    pub fn to_json(&self) -> String {
        // Plain strings and ordered maps: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored lock.
    ///
    /// # Errors
    /// When `text` is not a lock of a format this code reads.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let lock: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if lock.format != LOCK_FORMAT {
            return Err(format!(
                "lock format {} is not the one this weft reads ({LOCK_FORMAT})",
                lock.format
            ));
        }
        Ok(lock)
    }

    /// The SHA-256 (hex) of [`WorkflowLock::to_json`]: the lock's identity.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.to_json()))
    }

    /// Records the digest of the component whose canonical path is `path`.
    pub fn set_component_digest(&mut self, path: &str, sha256: &str) {
        for component in self.components.values_mut() {
            if component.path == path {
                sha256.clone_into(&mut component.sha256);
            }
        }
    }

    /// The recorded digest of the component whose canonical path is `path`.
    pub fn component_digest(&self, path: &str) -> Option<&str> {
        self.components
            .values()
            .find(|c| c.path == path)
            .map(|c| c.sha256.as_str())
    }
}

/// The key a path is recorded under.
fn key(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Where the manifest crate finds files.
pub(crate) trait Files {
    /// A manifest's or schema file's bytes, at most `limit` of them.
    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// The canonical path of the component file at `path`, or what is wrong
    /// with it (`not found`, `is not a file`, …).
    fn component(&self, path: &Path) -> Result<PathBuf, String>;
    /// Whether `path` names a file (for nested manifests).
    fn is_file(&self, path: &Path) -> bool;
}

/// The file system.
pub(crate) struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        read_file(path, limit)
    }

    fn component(&self, path: &Path) -> Result<PathBuf, String> {
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                fs::canonicalize(path).map_err(|e| format!("cannot be read: {e}"))
            }
            Ok(_) => Err("is not a file".to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err("not found".to_owned()),
            Err(e) => Err(format!("cannot be read: {e}")),
        }
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// The file system, recording what was read into a lock.
#[derive(Default)]
pub(crate) struct Recorder {
    files: RefCell<BTreeMap<String, String>>,
    components: RefCell<BTreeMap<String, LockedComponent>>,
}

impl Recorder {
    pub(crate) fn into_lock(self, manifest: &Path) -> WorkflowLock {
        WorkflowLock {
            format: LOCK_FORMAT,
            manifest: key(manifest),
            files: self.files.into_inner(),
            components: self.components.into_inner(),
        }
    }
}

impl Files for Recorder {
    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let bytes = Disk.read(path, limit)?;
        // Text that is not UTF-8 fails the load anyway (manifests must be
        // UTF-8, JSON too), so there is nothing to record.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            self.files.borrow_mut().insert(key(path), text.to_owned());
        }
        Ok(bytes)
    }

    fn component(&self, path: &Path) -> Result<PathBuf, String> {
        let canonical = Disk.component(path)?;
        self.components.borrow_mut().insert(
            key(path),
            LockedComponent {
                path: key(&canonical),
                sha256: String::new(),
            },
        );
        Ok(canonical)
    }

    fn is_file(&self, path: &Path) -> bool {
        Disk.is_file(path)
    }
}

impl Files for WorkflowLock {
    fn read(&self, path: &Path, _limit: u64) -> io::Result<Vec<u8>> {
        self.files
            .get(&key(path))
            .map(|text| text.clone().into_bytes())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the workflow's lock"))
    }

    fn component(&self, path: &Path) -> Result<PathBuf, String> {
        self.components
            .get(&key(path))
            .map(|c| PathBuf::from(&c.path))
            .ok_or_else(|| "not found in the workflow's lock".to_owned())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(&key(path))
    }
}
