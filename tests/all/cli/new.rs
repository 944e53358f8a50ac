//! `weft new NAME --lang L`: the project it writes, in every language, and
//! (as a new user would do) `NAME/build.sh && weft run NAME/workflow.toml`.
//!
//! Building runs each language's own toolchain. The Rust and C projects build
//! with what the repository's guests already need; the Python, JS and Go ones
//! reuse the toolchains `guest-examples/build.sh` installed (found under
//! `guest-examples/`, put first on PATH), and otherwise their build.sh
//! installs its own from the registries.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{root, stderr, stdout, weft};

const LANGS: [&str; 5] = ["rust", "python", "js", "c", "go"];

/// `weft new NAME --lang LANG` in `dir`.
fn new(home: &Path, dir: &Path, name: &str, lang: &str) -> std::process::Output {
    weft(home)
        .current_dir(dir)
        .args(["new", name, "--lang", lang])
        .output()
        .unwrap()
}

#[test]
fn new_writes_a_project_in_every_language() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wit = std::fs::read_to_string(root().join("wit/step.wit")).unwrap();
    for lang in LANGS {
        let name = format!("hello-{lang}");
        let out = new(home.path(), dir.path(), &name, lang);
        assert_eq!(out.status.code(), Some(0), "{lang}: {}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("{name}/build.sh")),
            "{}",
            stdout(&out)
        );
        let project = dir.path().join(&name);
        assert_eq!(
            std::fs::read_to_string(project.join("wit/step.wit")).unwrap(),
            wit,
            "{lang}: the contract is copied as it is"
        );
        let source = match lang {
            "rust" => "src/lib.rs",
            "python" => "app.py",
            "js" => "app.js",
            "c" => "step.c",
            _ => "step.go",
        };
        assert!(project.join(source).is_file(), "{lang}: no {source}");
        let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
        assert!(build.starts_with("#!/usr/bin/env bash"), "{lang}");
        assert!(build.contains(&format!("{name}.wasm")), "{lang}: {build}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(project.join("build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{lang}: build.sh is executable");
        let manifest = std::fs::read_to_string(project.join("workflow.toml")).unwrap();
        let manifest: toml::Table = toml::from_str(&manifest).unwrap();
        assert_eq!(manifest["id"].as_str(), Some(name.as_str()));
        assert_eq!(
            manifest["steps"][&name]["component"].as_str(),
            Some(format!("{name}.wasm").as_str())
        );
        for text in walk(&project) {
            assert!(!text.contains("{{name}}"), "{lang}: a placeholder is left");
        }
    }
}

/// The text of every file under `dir`.
fn walk(dir: &Path) -> Vec<String> {
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            texts.extend(walk(&path));
        } else {
            texts.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    texts
}

#[test]
fn new_refuses_a_non_empty_directory_and_an_invalid_name() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = new(home.path(), dir.path(), "taken", "c");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exists and is not empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("taken")).unwrap().count(),
        1,
        "nothing written"
    );

    for bad in ["9lives", "has space", "../up", "a/b", ""] {
        let out = new(home.path(), dir.path(), bad, "rust");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid id"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // An existing empty directory is fine.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = new(home.path(), dir.path(), "empty", "go");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("empty/step.go").is_file());

    let out = new(home.path(), dir.path(), "x", "cobol");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Directories under `guest-examples/` holding `tool` as `bin/tool` or
/// `node_modules/.bin/tool` (a toolchain `guest-examples/build.sh` installed).
fn installed(tool: &str) -> Vec<PathBuf> {
    let base = root().join("guest-examples");
    let mut dirs = vec![base.clone()];
    for parent in [base.clone(), base.join("target")] {
        if let Ok(entries) = std::fs::read_dir(&parent) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    dirs.iter()
        .flat_map(|d| [d.join("bin"), d.join("node_modules/.bin")])
        .filter(|bin| bin.join(tool).is_file())
        .collect()
}

/// `weft new hello-LANG`, then `hello-LANG/build.sh`, then
/// `weft run hello-LANG/workflow.toml`: the output the step completes with.
fn build_and_run(lang: &str, path_first: &[PathBuf]) -> Value {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hello-{lang}");
    let out = new(home.path(), dir.path(), &name, lang);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let mut path: Vec<PathBuf> = path_first.to_vec();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let build = Command::new(dir.path().join(&name).join("build.sh"))
        .env("PATH", std::env::join_paths(path).unwrap())
        // A Rust project shares one target directory between test runs.
        .env(
            "CARGO_TARGET_DIR",
            root().join("guest-examples/target/weft-new"),
        )
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{lang}: build.sh failed\n{}\n{}",
        stdout(&build),
        stderr(&build)
    );
    assert!(
        dir.path()
            .join(&name)
            .join(format!("{name}.wasm"))
            .is_file()
    );

    let manifest = dir.path().join(&name).join("workflow.toml");
    let out = weft(home.path())
        .args(["run", manifest.to_str().unwrap(), "--json", "--input"])
        .arg(r#"{"name": "Ada"}"#)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{lang}: {}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "success", "{result:#}");
    result["output"].clone()
}

#[test]
fn new_rust_project_builds_and_runs() {
    let output = build_and_run("rust", &[]);
    assert_eq!(output, json!({"greeting": "Hello, Ada!", "lang": "rust"}));
}

#[test]
fn new_c_project_builds_and_runs() {
    let output = build_and_run("c", &[]);
    assert_eq!(
        output,
        json!({"greeting": "Hello from C!", "lang": "c", "input": {"name": "Ada"}})
    );
}

#[test]
fn new_go_project_builds_and_runs() {
    let output = build_and_run("go", &installed("go"));
    assert_eq!(output, json!({"greeting": "Hello, Ada!", "lang": "go"}));
}

#[test]
fn new_python_project_builds_and_runs() {
    let output = build_and_run("python", &installed("componentize-py"));
    assert_eq!(output, json!({"greeting": "Hello, Ada!", "lang": "python"}));
}

#[test]
fn new_js_project_builds_and_runs() {
    let output = build_and_run("js", &installed("componentize-js"));
    assert_eq!(output, json!({"greeting": "Hello, Ada!", "lang": "js"}));
}
