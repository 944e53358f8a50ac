//! Compile once per content: the content hash, the in-memory map of compiled
//! components and the on-disk cache of precompiled artifacts.
//!
//! An artifact is `<cache_dir>/<sha256 of the bytes>-<engine key>.cwasm`. The
//! engine key hashes wasmtime's [`Engine::precompile_compatibility_hash`] (the
//! wasmtime version and every setting that affects compiled code) with this
//! crate's version, so a host of another version or configuration never reads
//! an artifact it did not write. Artifacts are written atomically (a temporary
//! file renamed into place), so a reader sees a whole file or none. Any
//! artifact that fails to load is recompiled and replaced: the cache is never
//! the reason a load fails.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadedFrom {
    /// Compiled by this load.
    Compiled,
    /// The same content was already loaded by this sandbox.
    Memory,
    /// A precompiled artifact in the on-disk cache.
    Disk,
}

/// The SHA-256 of a component's original bytes (before any encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ContentHash([u8; 32]);

impl ContentHash {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl ContentHash {
    /// Parses a hex digest (as [`fmt::Display`] writes it).
    pub(crate) fn parse(hex: &str) -> Option<Self> {
        let bytes = hex::decode(hex).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Compiled things by content hash, shared by every load of the same bytes.
#[derive(Debug)]
pub(crate) struct MemoryCache<T> {
    map: Mutex<HashMap<ContentHash, Arc<T>>>,
}

impl<T> Default for MemoryCache<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> MemoryCache<T> {
    pub(crate) fn get(&self, hash: &ContentHash) -> Option<Arc<T>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    /// Inserts `value` unless another thread compiled the same content in the
    /// meantime; returns the value that is in the map.
    pub(crate) fn insert(&self, hash: ContentHash, value: Arc<T>) -> Arc<T> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(hash).or_insert(value).clone()
    }
}

/// Feeds `std::hash::Hash` data into SHA-256, for a key that is stable across
/// processes (unlike `DefaultHasher`, whose algorithm may change).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

/// What identifies a file's content without reading it: device, inode,
/// size, and modification and change times in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FileStamp([i64; 7]);

impl FileStamp {
    /// Whether the file was modified or changed in the last 2 s: too recent
    /// to trust its times to tell it from a rewrite of the same size.
    fn is_recent(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(i64::MAX, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.0[3] >= now - 2 || self.0[5] >= now - 2
    }

    pub(crate) fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Some(Self([
            signed(m.dev()),
            signed(m.ino()),
            signed(m.size()),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ]))
    }
}

/// The on-disk cache of precompiled artifacts.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // The artifact also depends on how a core module is encoded into a
        // component, i.e. on this crate (and the wit-component it pins).
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let digest = hasher.0.finalize();
        Self {
            dir,
            engine_key: hex::encode(&digest[..8]),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// The cached artifact for `hash`, if there is one that loads.
    pub(crate) fn load(&self, engine: &Engine, hash: &ContentHash) -> Option<Component> {
        let path = self.path(hash);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be an artifact written by
        // `Component::serialize` of a compatible engine. Artifacts in this
        // directory are written only by `DiskCache::store` of this same crate
        // version, atomically (temporary file + rename, so never partially), and
        // their name carries the engine's `precompile_compatibility_hash`, so only
        // an engine of the same wasmtime version and configuration reads them;
        // wasmtime additionally checks the artifact's header and refuses other
        // versions or settings. The cache directory is the host's own, like its
        // binary: whoever can write into it can already change what the host runs.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %format!("{error:#}"),
                    "ignoring a precompiled artifact that does not load; recompiling"
                );
                None
            }
        }
    }

    /// The content hash of the file at `canonical` (a canonical path) as
    /// remembered for its metadata `stamp` (device, inode, size,
    /// modification and change times to the nanosecond, as git's index
    /// does), so that a warm load reads neither the file nor hashes it: an
    /// 18 MB component costs a `stat`, not ~15 ms. A file rewritten in place
    /// gets a new change time, so it is hashed again.
    pub(crate) fn known_hash(&self, canonical: &Path, stamp: &FileStamp) -> Option<ContentHash> {
        let text = std::fs::read_to_string(self.digest_key(canonical, stamp)).ok()?;
        let bytes = hex::decode(text.trim()).ok()?;
        Some(ContentHash(bytes.try_into().ok()?))
    }

    /// Remembers that the file at `canonical`, whose metadata was `before`
    /// when it was read, has content hash `hash` — unless it changed
    /// meanwhile, or `before` is too recent to tell a later rewrite within
    /// the file system's timestamp granularity from it (git's "racily
    /// clean" rule: such a file is hashed again next time). Failures only
    /// cost a hash next time.
    pub(crate) fn remember_hash(&self, canonical: &Path, before: &FileStamp, hash: &ContentHash) {
        if before.is_recent() || FileStamp::of(canonical).as_ref() != Some(before) {
            return;
        }
        let key = self.digest_key(canonical, before);
        let written = (|| -> std::io::Result<()> {
            let dir = key.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(dir)?;
            let mut file = tempfile::NamedTempFile::new_in(dir)?;
            file.write_all(hash.to_string().as_bytes())?;
            file.persist(&key).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(error) = written {
            tracing::debug!(path = %canonical.display(), %error, "cannot remember a component's hash");
        }
    }

    /// `<dir>/hashes/<sha256 of the canonical path and its stamp>`.
    fn digest_key(&self, canonical: &Path, stamp: &FileStamp) -> PathBuf {
        let mut hasher = Sha256Hasher(Sha256::new());
        canonical.hash(&mut hasher);
        stamp.hash(&mut hasher);
        self.dir
            .join("hashes")
            .join(hex::encode(hasher.0.finalize()))
    }

    /// Writes the artifact for `hash`. Failures are logged, not returned: the
    /// component was compiled and works without its artifact.
    pub(crate) fn store(&self, hash: &ContentHash, component: &Component) {
        let path = self.path(hash);
        if let Err(error) = self.write(&path, component) {
            tracing::warn!(
                path = %path.display(),
                error = %error,
                "cannot write a precompiled artifact to the cache"
            );
        }
    }

    fn write(&self, path: &Path, component: &Component) -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
        file.write_all(&bytes).map_err(|e| e.to_string())?;
        // A torn artifact could be mapped and executed after a crash: make the
        // content durable before the rename makes it visible.
        file.as_file().sync_all().map_err(|e| e.to_string())?;
        file.persist(path).map_err(|e| e.error.to_string())?;
        Ok(())
    }
}
