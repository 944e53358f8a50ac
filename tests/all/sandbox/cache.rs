//! The compile cache: compiled artifacts on disk (a corrupt one is
//! replaced), and a component file hashed once until it changes.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use weft_sandbox::{LoadedFrom, Sandbox, SandboxConfig};

use super::wat_steps::{completes_with, echo_module, step_module};
use super::{completed, limits, run};

#[test]
fn compiled_artifacts_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 4,
        ..SandboxConfig::default()
    };
    let bytes = echo_module();
    let artifacts = || -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("cache"))
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    };

    let first = Sandbox::new(config.clone()).unwrap();
    let step = first.load_bytes(&bytes, "echo", &[]).unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Compiled);
    let files = artifacts();
    assert_eq!(files.len(), 1, "{files:?}");
    let artifact = files[0].clone();
    let file_name = artifact.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file_name.starts_with(&format!("{}-", step.content_hash())),
        "{file_name}"
    );
    assert!(file_name.ends_with(".cwasm"), "{file_name}");
    assert_eq!(
        first.load_bytes(&bytes, "echo", &[]).unwrap().loaded_from(),
        LoadedFrom::Memory
    );
    drop((step, first));

    let second = Sandbox::new(config.clone()).unwrap();
    let step = second.load_bytes(&bytes, "echo", &[]).unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Disk);
    assert_eq!(
        completed(&run(&step, json!({"cached": true}), &limits())),
        &json!({"cached": true})
    );

    // A corrupt artifact is recompiled and replaced. (Loaded artifacts are
    // mapped: a file is only ever replaced, never rewritten in place.)
    drop((step, second));
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"garbage").unwrap();
    std::fs::rename(&garbage, &artifact).unwrap();
    let third = Sandbox::new(config.clone()).unwrap();
    let step = third.load_bytes(&bytes, "echo", &[]).unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Compiled);
    assert_eq!(completed(&run(&step, json!([1]), &limits())), &json!([1]));
    assert_eq!(artifacts(), std::slice::from_ref(&artifact));
    assert_ne!(std::fs::read(&artifact).unwrap(), b"garbage");
    let fourth = Sandbox::new(config).unwrap();
    assert_eq!(
        fourth
            .load_bytes(&bytes, "echo", &[])
            .unwrap()
            .loaded_from(),
        LoadedFrom::Disk
    );
}

#[test]
fn a_component_file_is_hashed_once_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 4,
        ..SandboxConfig::default()
    };
    let file = dir.path().join("step.wasm");
    std::fs::write(&file, echo_module()).unwrap();
    let hashes = || {
        std::fs::read_dir(dir.path().join("cache/hashes"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    let step = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&file, &[])
        .unwrap();
    assert_eq!(step.loaded_from(), LoadedFrom::Compiled);
    // Written just now: a rewrite within the file system's timestamp
    // granularity could keep the same metadata, so the hash is not
    // remembered yet ("racily clean", as in git)...
    assert_eq!(hashes(), 0);
    // ...until the file's modification and change times, in whole seconds,
    // are more than 2 s before now (the cache's rule). That is real time
    // passing: the change time is set by the file system, and no process can
    // set it back, so there is no event to wait for. The test sleeps once,
    // until the second the rule is met, computed from the file's own times as
    // the cache reads them, and fails instead of hanging if the clock makes
    // that more than a few seconds away.
    let aged_at = {
        use std::os::unix::fs::MetadataExt as _;
        let times = std::fs::metadata(&file).unwrap();
        let newest = u64::try_from(times.mtime().max(times.ctime())).unwrap();
        std::time::UNIX_EPOCH + Duration::from_secs(newest + 3)
    };
    let wait = aged_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait <= Duration::from_secs(4),
        "{wait:?} to wait for the file to age: did the clock jump?"
    );
    std::thread::sleep(wait);
    let again = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&file, &[])
        .unwrap();
    assert_eq!(again.loaded_from(), LoadedFrom::Disk);
    assert_eq!(hashes(), 1, "the file's hash is remembered by its metadata");
    // A new process (sandbox): the hash comes from the metadata, the code
    // from the artifact.
    let warm = Sandbox::new(config.clone())
        .unwrap()
        .load_file(&file, &[])
        .unwrap();
    assert_eq!(warm.loaded_from(), LoadedFrom::Disk);
    assert_eq!(warm.content_hash(), step.content_hash());
    // The file is rewritten (new content): hashed again, so the new content
    // is what runs.
    let (data, body) = completes_with(r#"{"other":true}"#);
    let other = step_module(&data, &body);
    std::fs::write(&file, &other).unwrap();
    let changed = Sandbox::new(config).unwrap().load_file(&file, &[]).unwrap();
    assert_ne!(changed.content_hash(), step.content_hash());
    assert_eq!(changed.loaded_from(), LoadedFrom::Compiled);
}
