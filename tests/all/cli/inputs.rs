//! Issue 6, item 4: manifests, schemas, `--input @FILE` and `--data @FILE`
//! are read only from regular files of bounded size (schema files: the
//! `schema-file-*` cases in `tests/manifest-errors`).

use std::fs::File;
use std::path::Path;

use crate::support::{stderr, weft};

use super::{EXAMPLE, json_result};

/// A sparse file of `len` bytes (nothing is written to the disk).
fn sparse(path: &Path, len: u64) {
    File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn a_manifest_must_be_a_regular_file_of_at_most_4_mib() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let big = dir.path().join("big.toml");
    sparse(&big, (4 << 20) + 1);
    for (manifest, problem) in [
        (&zero, "not a regular file but a character device"),
        (&big, "larger than the limit of 4 MiB"),
    ] {
        for command in ["validate", "run"] {
            let out = weft(home.path())
                .args([command, manifest.to_str().unwrap()])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
            assert_eq!(
                stderr(&out),
                format!(
                    "error: {}: cannot read the manifest: {problem}\n",
                    manifest.display()
                )
            );
        }
    }
}

#[test]
fn input_and_data_files_must_be_regular_files_of_at_most_16_mib() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    sparse(&big, (16 << 20) + 1);
    let big = big.to_str().unwrap().to_owned();
    let cases = [
        ("/dev/zero", "not a regular file but a character device"),
        (big.as_str(), "larger than the limit of 16 MiB"),
        ("/", "not a regular file but a directory"),
    ];
    for (file, problem) in cases {
        let out = weft(home.path())
            .args(["run", EXAMPLE, "--input", &format!("@{file}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("error: --input: cannot read `{file}`: {problem}\n")
        );
    }

    let out = weft(home.path())
        .args(["run", EXAMPLE, "--json"])
        .args(["--input", "@examples/order-approval/big-order.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let run_id = json_result(&out)["run_id"].as_str().unwrap().to_owned();
    for (file, problem) in cases {
        let out = weft(home.path())
            .args(["resume", &run_id, "--data", &format!("@{file}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("error: --data: cannot read `{file}`: {problem}\n")
        );
    }
    let out = weft(home.path())
        .args(["status", &run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(json_result(&out)["status"], "suspended");
}

/// Issue 24, item 3: a component file larger than 64 MiB is refused, by
/// `weft validate` and `weft run`, from its size alone (a 16 GiB sparse file:
/// reading it would take gigabytes), naming the step's field and the limit.
#[test]
fn a_component_over_64_mib_is_refused_without_being_read() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("huge.wasm");
    sparse(&component, 16 << 30);
    let manifest = dir.path().join("workflow.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"huge\"\nflow = [{{ step = \"a\" }}]\n\n[steps.a]\ncomponent = \"{}\"\n",
            component.display()
        ),
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = weft(home.path())
            .args([command, manifest.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("steps.a.component")
                && message.contains("is 17179869184 bytes, more than the 67108864 bytes"),
            "{command}: {message}"
        );
    }
}
