//! Workflow bundles: what `weft deploy` uploads and `POST /v1/workflows`
//! takes — a tar archive of a manifest and every file it needs (schemas,
//! nested manifests, components), under a common root directory.
//!
//! The first entry is `weft-bundle.json`, `{"format": 1, "manifest":
//! "PATH"}`, naming the root manifest inside the archive; every other entry
//! is a regular file or a directory with a relative path that stays inside
//! the archive (no `..`, no absolute paths, no links, no devices). `weft
//! deploy` writes entries sorted by path with fixed metadata (mode 0644,
//! time 0, owner 0), so the same files make the same bytes, and deploying
//! them again is a no-op.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The bundle index's file name (the archive's first entry).
pub const INDEX: &str = "weft-bundle.json";

/// The bundle format this code writes and reads.
const FORMAT: u32 = 1;

/// At most this many entries in a bundle.
pub const MAX_ENTRIES: usize = 10_000;

/// The bundle index.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    format: u32,
    /// The root manifest's path inside the archive.
    manifest: String,
}

/// Packs the workflow whose root manifest is `manifest`: the manifest and
/// every file it reads (its lock's files) and every component it names,
/// under their deepest common directory.
///
/// # Errors
/// When the manifest does not load or a file cannot be read.
pub fn pack(manifest: &Path) -> anyhow::Result<Vec<u8>> {
    let (_, lock) = weft_manifest::Manifest::load_recording(manifest)?;
    // Paths as written, `.` and `..` resolved by name and symlinks kept, so
    // the bundle keeps the layout the manifest's relative paths were
    // resolved in (`../../guest-examples/dist/a.wasm`, a linked directory).
    let absolute = |path: &str| weft_manifest::lexical_absolute(Path::new(path));
    let root_manifest = absolute(&lock.manifest);
    let mut files = BTreeSet::new();
    for path in lock.files.keys().chain(lock.components.keys()) {
        files.insert(absolute(path));
    }
    files.insert(root_manifest.clone());
    let root = common_dir(&files);
    let relative = |path: &Path| -> anyhow::Result<String> {
        let rel = path.strip_prefix(&root).unwrap_or(path);
        rel.to_str()
            .map(|s| s.replace('\\', "/"))
            .ok_or_else(|| anyhow!("the path `{}` is not UTF-8", path.display()))
    };
    let index = Index {
        format: FORMAT,
        manifest: relative(&root_manifest)?,
    };
    let mut archive = tar::Builder::new(Vec::new());
    append(
        &mut archive,
        INDEX,
        &serde_json::to_vec(&index).context("cannot write the bundle index")?,
    )?;
    for file in &files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
        append(&mut archive, &relative(file)?, &bytes)?;
    }
    archive
        .into_inner()
        .context("cannot write the bundle archive")
}

/// Appends one file with fixed metadata.
fn append(archive: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    archive
        .append_data(&mut header, path, bytes)
        .with_context(|| format!("cannot add `{path}` to the bundle"))
}

/// The deepest directory holding every path of `files` (absolute paths).
fn common_dir(files: &BTreeSet<PathBuf>) -> PathBuf {
    let mut paths = files.iter();
    let Some(first) = paths.next() else {
        return PathBuf::from("/");
    };
    let mut common: PathBuf = first.parent().map(Path::to_path_buf).unwrap_or_default();
    for path in paths {
        while !path.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    common
}

/// Unpacks a bundle into the empty directory `into` and returns the root
/// manifest's path there. Refuses, naming the entry, anything but regular
/// files and directories with relative paths inside the archive, more than
/// [`MAX_ENTRIES`] entries, and a missing or malformed index.
///
/// # Errors
/// What is wrong with the bundle (the caller reports it as invalid input)
/// or an I/O error writing it out.
pub fn unpack(bytes: &[u8], into: &Path) -> anyhow::Result<PathBuf> {
    let mut archive = tar::Archive::new(bytes);
    let mut index: Option<Index> = None;
    let mut count = 0usize;
    for entry in archive
        .entries()
        .context("the bundle is not a tar archive")?
    {
        let mut entry = entry.context("the bundle is not a valid tar archive")?;
        count += 1;
        if count > MAX_ENTRIES {
            bail!("the bundle has more than {MAX_ENTRIES} entries");
        }
        let path = entry
            .path()
            .context("a bundle entry's path is not valid")?
            .into_owned();
        let shown = path.display().to_string();
        if path.as_os_str().is_empty()
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            bail!(
                "bundle entry `{}`: paths must be relative and stay inside the bundle",
                crate::output::escape(&shown)
            );
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            bail!(
                "bundle entry `{}`: only regular files and directories are allowed (links and devices are not)",
                crate::output::escape(&shown)
            );
        }
        if count == 1 && path == Path::new(INDEX) {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .context("the bundle index is not UTF-8 text")?;
            let parsed: Index = serde_json::from_str(&text)
                .with_context(|| format!("the bundle index `{INDEX}` does not parse"))?;
            if parsed.format != FORMAT {
                bail!(
                    "the bundle format {} is not the one this weft reads ({FORMAT})",
                    parsed.format
                );
            }
            index = Some(parsed);
            // Kept beside the files: it names the manifest of an unpacked bundle.
            std::fs::write(into.join(INDEX), text)
                .with_context(|| format!("cannot write `{}`", into.join(INDEX).display()))?;
            continue;
        }
        let target = into.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        if target.exists() {
            bail!(
                "bundle entry `{}` appears twice",
                crate::output::escape(&shown)
            );
        }
        entry
            .unpack(&target)
            .with_context(|| format!("cannot write `{}`", target.display()))?;
    }
    if index.is_none() {
        bail!("the bundle's first entry must be its index `{INDEX}` (weft deploy writes it)");
    }
    manifest_of(into)
}

/// The root manifest of the bundle unpacked in `dir`, as its index names it.
///
/// # Errors
/// A missing or malformed index, or a manifest the bundle does not hold.
pub fn manifest_of(dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(dir.join(INDEX))
        .with_context(|| format!("cannot read the bundle index in `{}`", dir.display()))?;
    let index: Index = serde_json::from_str(&text)
        .with_context(|| format!("the bundle index `{INDEX}` does not parse"))?;
    let manifest = Path::new(&index.manifest);
    if !manifest
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        bail!("the bundle index names a manifest outside the bundle");
    }
    let path = dir.join(manifest);
    if !path.is_file() {
        bail!(
            "the bundle index names the manifest `{}`, which the bundle does not hold",
            crate::output::escape(&index.manifest)
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(*kind);
            if kind.is_symlink() {
                header.set_size(0);
                builder
                    .append_link(&mut header, path, "/etc/passwd")
                    .unwrap();
            } else {
                // `append_data` refuses `..`: write the name by hand.
                let name = header.as_old_mut().name.as_mut();
                name[..path.len()].copy_from_slice(path.as_bytes());
                header.set_cksum();
                builder.append(&header, *bytes).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    const INDEX_JSON: &[u8] = br#"{"format":1,"manifest":"wf.toml"}"#;

    #[test]
    fn a_bundle_unpacks_and_names_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = archive(&[
            (INDEX, tar::EntryType::Regular, INDEX_JSON),
            ("wf.toml", tar::EntryType::Regular, b"id = 'x'"),
            ("steps/a.wasm", tar::EntryType::Regular, b"\0asm"),
        ]);
        let manifest = unpack(&bytes, dir.path()).unwrap();
        assert_eq!(manifest, dir.path().join("wf.toml"));
        assert_eq!(
            std::fs::read(dir.path().join("steps/a.wasm")).unwrap(),
            b"\0asm"
        );
    }

    #[test]
    fn entries_outside_the_bundle_links_and_a_missing_index_are_refused() {
        type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a [u8])];
        let cases: &[(Entries<'_>, &str)] = &[
            (
                &[
                    (INDEX, tar::EntryType::Regular, INDEX_JSON),
                    ("../evil", tar::EntryType::Regular, b"x"),
                ],
                "stay inside the bundle",
            ),
            (
                &[
                    (INDEX, tar::EntryType::Regular, INDEX_JSON),
                    ("link", tar::EntryType::Symlink, b""),
                ],
                "only regular files",
            ),
            (
                &[("wf.toml", tar::EntryType::Regular, b"id = 'x'")],
                "first entry must be its index",
            ),
            (
                &[(INDEX, tar::EntryType::Regular, INDEX_JSON)],
                "does not hold",
            ),
            (&[(INDEX, tar::EntryType::Regular, b"{")], "does not parse"),
        ];
        for (entries, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let error = unpack(&archive(entries), dir.path()).unwrap_err();
            let text = format!("{error:#}");
            assert!(text.contains(expected), "{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let error = unpack(b"not a tar archive at all", dir.path()).unwrap_err();
        assert!(format!("{error:#}").contains("tar"), "{error:#}");
    }

    #[test]
    fn packing_the_same_files_twice_makes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(dir.path().join("schemas/in.json"), r#"{"type":"object"}"#).unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"\0asm").unwrap();
        let manifest = dir.path().join("wf.toml");
        std::fs::write(
            &manifest,
            "id = \"packed\"\ninput-schema = \"schemas/in.json\"\nflow = [{ step = \"a\" }]\n[steps.a]\ncomponent = \"a.wasm\"\n",
        )
        .unwrap();
        let first = pack(&manifest).unwrap();
        assert_eq!(first, pack(&manifest).unwrap());
        let out = tempfile::tempdir().unwrap();
        let unpacked = unpack(&first, out.path()).unwrap();
        assert_eq!(unpacked, out.path().join("wf.toml"));
        assert!(out.path().join("schemas/in.json").is_file());
        assert!(out.path().join("a.wasm").is_file());
    }
}
