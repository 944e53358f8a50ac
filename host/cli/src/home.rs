//! weft's home directory: saved runs and the component compile cache.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use weft_core::RunId;
use weft_runtime::SavedRun;

/// The directory weft keeps its files in.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// A saved run and where its workflow came from.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunFile {
    /// The manifest the run was started from (absolute).
    pub manifest: PathBuf,
    /// SHA-256 of the manifest's text when the run started.
    pub manifest_sha256: String,
    /// The run's events.
    pub run: SavedRun,
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

    /// Whether a default-runtime run file exists for `run`.
    pub fn has_run_file(&self, run: &RunId) -> bool {
        self.run_path(run).exists()
    }

    /// The compile cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    fn run_path(&self, run: &RunId) -> PathBuf {
        self.dir.join("runs").join(format!("{run}.json"))
    }

    /// Writes `file` atomically (a reader sees the old or the new version, never half).
    ///
    /// # Errors
    /// I/O errors, naming the path.
    pub fn save_run(&self, run: &RunId, file: &RunFile) -> anyhow::Result<PathBuf> {
        let path = self.run_path(run);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        serde_json::to_writer(&mut tmp, file).context("cannot serialize the run")?;
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("cannot sync {}", path.display()))?;
        tmp.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Reads a saved run.
    ///
    /// # Errors
    /// When no run with this id was saved, or the file is not a saved run.
    pub fn load_run(&self, run: &RunId) -> anyhow::Result<RunFile> {
        let path = self.run_path(run);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no saved run `{run}` (looked for {})", path.display()))?;
        let file: RunFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a saved weft run", path.display()))?;
        anyhow::ensure!(
            file.run.format == SavedRun::FORMAT,
            "{}: unsupported saved-run format `{}` (this weft reads `{}`)",
            path.display(),
            file.run.format,
            SavedRun::FORMAT
        );
        Ok(file)
    }
}
