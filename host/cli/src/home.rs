//! weft's home directory: the default event store and the component compile cache.

use std::path::PathBuf;

/// The directory weft keeps its files in.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `--home`, else `$WEFT_HOME`, else `$XDG_DATA_HOME/weft`, else
    /// `~/.local/share/weft`, else `.weft`.
    pub fn resolve(flag: Option<PathBuf>) -> Self {
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
        Self { dir }
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
