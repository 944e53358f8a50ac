//! Issue 24, item 2: compiling a component is a limited job. `weft`
//! compiles each component in a child process (its hidden
//! `compile-component` command) limited in CPU time (`--compile-cpu`) and
//! address space (`--compile-memory`); a component past a limit fails the
//! load with a clear error naming the component and the limit, and the weft
//! process itself stays small whatever the component.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{guest, stderr, weft};

/// A component whose one function nests `depth` loops, each branching back
/// to a loop further out: Cranelift's time and memory grow faster than
/// linearly with the depth (a few hundred KB of it takes minutes and
/// gigabytes to compile without a limit).
fn compile_bomb(depth: usize) -> Vec<u8> {
    let mut body = String::with_capacity(depth * 32);
    for level in 0..depth {
        body.push_str(&format!("loop local.get 0 br_if {} ", level / 2));
    }
    for _ in 0..depth {
        body.push_str("end ");
    }
    let text = format!("(component (core module (func (param i32) {body})))");
    wat::parse_str(&text).expect("the bomb is valid WebAssembly")
}

fn manifest(dir: &Path, component: &Path) -> PathBuf {
    let manifest = dir.join("workflow.toml");
    std::fs::write(
        &manifest,
        format!(
            "id = \"bomb\"\nflow = [{{ step = \"a\" }}]\n\n[steps.a]\ncomponent = \"{}\"\n",
            component.display()
        ),
    )
    .unwrap();
    manifest
}

/// The compile bomb stops at a CPU limit of 1 s, for `weft validate` and
/// `weft run`, with an error naming the step's component and the limit.
#[test]
fn a_compile_bomb_stops_at_the_cpu_limit() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("bomb.wasm");
    std::fs::write(&component, compile_bomb(20_000)).unwrap();
    let manifest = manifest(dir.path(), &component);
    for command in ["validate", "run"] {
        let started = Instant::now();
        let out = weft(home.path())
            .args(["--compile-cpu", "1s", command, manifest.to_str().unwrap()])
            .output()
            .unwrap();
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {message}");
        assert!(
            message.contains("steps.a.component")
                && message.contains("bomb.wasm")
                && message.contains("needed more than 1000 ms of CPU time"),
            "{command}: {message}"
        );
        // The child is killed at 1 s of CPU time, or at the wall-clock bound
        // of 3 × the limit + 10 s on a machine too loaded to give it a core:
        // far below the minutes this component takes to compile unlimited.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{command} took {:?}",
            started.elapsed()
        );
    }
}

/// With too little memory for the compiler, the load fails naming the
/// memory limit; the same component compiles with the default limits (and
/// runs: the artifact the child wrote loads in the parent's engine).
#[test]
fn the_compiler_memory_limit_is_named_and_the_default_fits_real_guests() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &guest("echo"));
    let out = weft(home.path())
        .args([
            "--compile-memory",
            "16MiB",
            "validate",
            manifest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(
        message.contains("echo.wasm") && message.contains("16777216 bytes of memory"),
        "{message}"
    );

    let out = weft(home.path())
        .args(["run", manifest.to_str().unwrap(), "--input", "{\"x\":1}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
