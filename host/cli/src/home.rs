//! weft's home directory: the default event store and the component compile cache.

use std::path::PathBuf;

use weft_store_sqlite::Durability;

/// The directory weft keeps its files in, and how its store commits.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
    durability: Durability,
}

impl Home {
    /// `--home`, else `$WEFT_HOME`, else `$XDG_DATA_HOME/weft`, else
    /// `~/.local/share/weft`, else `.weft`.
    pub fn resolve(flag: Option<PathBuf>, durability: Durability) -> Self {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = flag
            .or_else(|| env("WEFT_HOME"))
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("weft")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/weft")))
            .unwrap_or_else(|| PathBuf::from(".weft"));
        Self { dir, durability }
    }

    /// When the store's commits are durable (`--durability`).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The default event store.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("weft.db")
    }

    /// The compile cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }
}
