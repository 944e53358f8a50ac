//! weft's home directory: the default event store and the component compile cache.

use std::path::PathBuf;
use std::time::Duration;

use weft_sandbox::CompileLimits;
use weft_store_sqlite::Durability;

/// The directory weft keeps its files in, how its store commits, and the
/// limits of loading components.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
    durability: Durability,
    lease_ttl: Duration,
    loading: Loading,
}

/// The limits of loading a component (`--max-component-size`,
/// `--compile-cpu`, `--compile-memory`).
#[derive(Debug, Clone, Copy)]
pub struct Loading {
    /// The largest component file read.
    pub max_component_bytes: u64,
    /// The limits of the process that compiles one.
    pub compile: CompileLimits,
}

impl Home {
    /// `--home`, else `$WEFT_HOME`, else `$XDG_DATA_HOME/weft`, else
    /// `~/.local/share/weft`, else `.weft`.
    pub fn resolve(flag: Option<PathBuf>, durability: Durability, lease_ttl: Duration) -> Self {
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
        Self {
            dir,
            durability,
            lease_ttl,
            loading: Loading {
                max_component_bytes: weft_sandbox::SandboxConfig::default().max_component_bytes,
                compile: CompileLimits::default(),
            },
        }
    }

    /// The same home with these component loading limits.
    pub fn with_loading(mut self, loading: Loading) -> Self {
        self.loading = loading;
        self
    }

    /// The limits of loading a component.
    pub fn loading(&self) -> Loading {
        self.loading
    }

    /// How long a run's lease lasts without renewal (`--lease-ttl`).
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// When the store's commits are durable (`--durability`).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The default event store.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("weft.db")
    }

    /// Where `weft serve` unpacks deployed bundles.
    pub fn bundles_dir(&self) -> PathBuf {
        self.dir.join("bundles")
    }

    /// Where `weft serve` keeps the SHA-256 of its generated API token.
    pub fn token_digest_path(&self) -> PathBuf {
        self.dir.join("server-token.sha256")
    }

    /// The compile cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }
}

/// Parses a size such as `64MiB`, `4GiB`, `512KiB` or `1000` (bytes); at
/// least one byte.
///
/// # Errors
/// A message naming what is wrong, for clap to print.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 64MiB, 4GiB or 1000"))?;
    let shift = match unit {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(format!("`{text}`: the unit must be B, KiB, MiB or GiB")),
    };
    match value.checked_mul(1 << shift) {
        Some(0) => Err("a size must be at least 1 byte".into()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

/// Parses a duration such as `500ms`, `10s` or `2m` (a whole number and a
/// unit); at least 1 ms.
///
/// # Errors
/// A message naming what is wrong, for clap to print.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s or 2m"))?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    match millis {
        Some(0) => Err("a duration must be at least 1ms".into()),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err(format!("`{text}` is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in [
            "",
            "10",
            "s",
            "1h",
            "-1s",
            "0s",
            "1.5s",
            "99999999999999999999m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1000B"), Ok(1000));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        for bad in ["", "MiB", "0", "1MB", "-1", "1.5GiB", "99999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
