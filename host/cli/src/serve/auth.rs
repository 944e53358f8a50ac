//! Access to the API: one bearer token, kept as its SHA-256 only.
//!
//! At first start without `--token-file`, the server generates a token
//! (256 random bits from the OS, hex), prints it once on stderr and stores
//! its digest in the home directory; later starts read the digest. With
//! `--token-file`, the token is the file's text (trimmed). A request's
//! token is hashed and compared in constant time. `--no-auth` turns the
//! check off, for loopback listeners only. (Tenants and scoped tokens come
//! later.)

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use sha2::{Digest as _, Sha256};

/// How requests are checked.
#[derive(Clone)]
pub enum Access {
    /// Every request passes (`--no-auth`, loopback only).
    Open,
    /// A request needs the token whose SHA-256 this is.
    Token([u8; 32]),
}

impl Access {
    /// Whether `header` (an `Authorization` value) grants access.
    pub fn allows(&self, header: Option<&str>) -> bool {
        match self {
            Self::Open => true,
            Self::Token(digest) => {
                header
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .is_some_and(|token| {
                        equal(&Sha256::digest(token.trim().as_bytes()).into(), digest)
                    })
            }
        }
    }
}

/// Compares two digests in constant time.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The access of a server: from `token_file`, else the stored digest, else
/// a new token (returned, to be printed once).
///
/// # Errors
/// An unreadable or empty token file, or a stored digest that does not
/// parse; I/O errors storing a new one.
pub fn setup(
    token_file: Option<&Path>,
    digest_path: &Path,
) -> anyhow::Result<(Access, Option<String>)> {
    if let Some(file) = token_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the token file `{}`", file.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            bail!(
                "the token in `{}` is shorter than 16 characters",
                file.display()
            );
        }
        return Ok((Access::Token(Sha256::digest(token.as_bytes()).into()), None));
    }
    match std::fs::read_to_string(digest_path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    anyhow!(
                        "`{}` does not hold a SHA-256 digest (delete it to generate a new token)",
                        digest_path.display()
                    )
                })?;
            Ok((Access::Token(bytes), None))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if let Some(dir) = digest_path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            std::fs::write(digest_path, hex::encode(digest))
                .with_context(|| format!("cannot write `{}`", digest_path.display()))?;
            Ok((Access::Token(digest), Some(token)))
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("cannot read `{}`", digest_path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_stored_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.sha256");
        let (access, token) = setup(None, &path).unwrap();
        let token = token.expect("a new token at first start");
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&token));
        assert!(access.allows(Some(&format!("Bearer {token}"))));
        assert!(!access.allows(Some("Bearer nope")));
        assert!(!access.allows(Some(&token)));
        assert!(!access.allows(None));
        // Later starts read the digest and print nothing.
        let (again, none) = setup(None, &path).unwrap();
        assert!(none.is_none());
        assert!(again.allows(Some(&format!("Bearer {token}"))));
    }

    #[test]
    fn a_token_file_sets_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef-secret\n").unwrap();
        let (access, printed) = setup(Some(&file), &dir.path().join("unused")).unwrap();
        assert!(printed.is_none());
        assert!(access.allows(Some("Bearer 0123456789abcdef-secret")));
        std::fs::write(&file, "short").unwrap();
        assert!(setup(Some(&file), &dir.path().join("unused")).is_err());
    }
}
