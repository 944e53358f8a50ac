//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A guest example built by `guest-examples/build.sh`.
pub fn guest(name: &str) -> PathBuf {
    let path = root()
        .join("guest-examples/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run ./guest-examples/build.sh (./scripts/test does)",
        path.display()
    );
    path
}

/// The on-disk compile cache the tests share, under the target directory:
/// the debug-built test binary compiles a large guest (an 18 MB Python
/// component takes minutes in a debug host) once per machine and host
/// version, not once per test run. The sandbox keys its artifacts by the
/// engine's configuration and version, so a changed host never reads them.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-compile-cache")
}

/// The `weft` binary, with its home in `home`.
pub fn weft(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.env("WEFT_HOME", home)
        .env_remove("RUST_LOG")
        .current_dir(root());
    cmd
}

/// Stdout of a finished command, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a finished command, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A manifest whose steps are all the `test-steps` guest; `steps` are
/// `(id, extra TOML lines)` and the flow runs them in order.
pub fn test_steps_manifest(dir: &Path, steps: &[(&str, &str)]) -> PathBuf {
    let component = guest("test-steps");
    let flow: Vec<String> = steps
        .iter()
        .map(|(id, _)| format!("{{ step = \"{id}\" }}"))
        .collect();
    let mut text = format!("id = \"test\"\nflow = [{}]\n", flow.join(", "));
    for (id, extra) in steps {
        text.push_str(&format!(
            "\n[steps.{id}]\ncomponent = \"{}\"\n{extra}\n",
            component.display()
        ));
    }
    let path = dir.join("workflow.toml");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// The types of a stored run's events, via `weft events --json`.
pub fn event_types(home: &Path, run_id: &str) -> Vec<String> {
    let out = weft(home)
        .args(["events", run_id, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}
