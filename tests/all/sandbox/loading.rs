//! What the sandbox refuses at load, and how it says so: components of
//! another world, bytes that are not a step component, imports steps cannot
//! use (all named before compiling), the async ABI, and component files
//! over the size limit (refused unread).

use std::path::Path;

use weft_core::Grant;
use weft_sandbox::{Sandbox, SandboxConfig, SandboxError};

use super::sandbox;
use super::wat_steps::{encode, module, step_wat};

#[test]
fn a_component_of_another_world_is_rejected_at_load() {
    let other = "package test:other;
        world other { export hello: func() -> u32; }";
    let wat = r#"(module (memory (export "memory") 1) (func (export "hello") (result i32) (i32.const 7)))"#;
    let err = sandbox()
        .load_bytes(&module(wat, &[other], "other"), "other.wasm", &[])
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotAStep { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`other.wasm` does not implement `weft:step/step@0.1.0`"),
        "{message}"
    );
    assert!(
        message.contains("`run`") && message.contains("`hello`"),
        "{message}"
    );

    let wrong = "package test:wrong;
        world wrong { export run: func() -> u32; }";
    let wat =
        r#"(module (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 7)))"#;
    let err = sandbox()
        .load_bytes(&module(wat, &[wrong], "wrong"), "wrong.wasm", &[])
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotAStep { .. }), "{err:?}");
    assert!(err.to_string().contains("`run`"), "{err}");
}

#[test]
fn bytes_that_are_not_a_step_component_are_rejected_at_load() {
    let err = sandbox()
        .load_bytes(b"hello", "hello.txt", &[])
        .unwrap_err();
    assert!(matches!(err, SandboxError::NotWasm { .. }), "{err:?}");
    assert!(err.to_string().contains("`hello.txt`"), "{err}");

    let bare = wat::parse_str("(module)").unwrap();
    let err = sandbox().load_bytes(&bare, "bare.wasm", &[]).unwrap_err();
    assert!(matches!(err, SandboxError::NotAStep { .. }), "{err:?}");
    assert!(err.to_string().contains("wit-bindgen"), "{err}");

    let err = sandbox()
        .load_file(Path::new("/nonexistent/step.wasm"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/step.wasm"), "{err}");
}

#[test]
fn refused_imports_are_all_named_before_compiling() {
    let http = "package wasi:http@0.2.6;
        interface outgoing-handler { handle: func(request: u32) -> u32; }";
    let evil = "package evil:net;
        interface socket { connect: func(port: u32) -> u32; }";
    let world = "package test:evil;
        world evil-step {
            include weft:step/step@0.1.0;
            import wasi:http/outgoing-handler@0.2.6;
            import evil:net/socket;
        }";
    let imports = r#"
        (import "wasi:http/outgoing-handler@0.2.6" "handle" (func $handle (param i32) (result i32)))
        (import "evil:net/socket" "connect" (func $connect (param i32) (result i32)))"#;
    let bytes = encode(&module(
        &step_wat(
            imports,
            "",
            "(drop (call $handle (i32.const 1))) (drop (call $connect (i32.const 2))) unreachable",
        ),
        &[http, evil, world],
        "evil-step",
    ));

    let dir = tempfile::tempdir().unwrap();
    let own = Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let err = own
        .load_bytes(
            &bytes,
            "/steps/evil.wasm",
            &[Grant::Stdio, Grant::Clocks, Grant::Random],
        )
        .unwrap_err();
    let SandboxError::ImportsDenied { imports, .. } = &err else {
        panic!("{err:?}");
    };
    let names: Vec<&str> = imports.iter().map(|d| d.import.as_str()).collect();
    assert_eq!(
        names,
        ["wasi:http/outgoing-handler@0.2.6", "evil:net/socket"]
    );
    let message = err.to_string();
    assert!(
        message.starts_with("`/steps/evil.wasm` imports 2 interfaces steps cannot use:"),
        "{message}"
    );
    assert!(
        message.contains("`wasi:http/outgoing-handler@0.2.6` (steps have no HTTP access)")
            && message.contains("`evil:net/socket` (unknown interface"),
        "{message}"
    );
    // Refused before compiling: nothing was compiled, so nothing was cached.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn components_using_the_async_abi_are_refused_with_advice() {
    let bytes = wat::parse_str("(component (core func (canon task.cancel)))").unwrap();
    let err = sandbox().load_bytes(&bytes, "qjs.wasm", &[]).unwrap_err();
    assert!(matches!(err, SandboxError::Async { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`qjs.wasm`") && message.contains("`task.cancel`"),
        "{message}"
    );
    assert!(message.contains("build it synchronously"), "{message}");
}

/// A component file larger than the sandbox's limit is refused from its
/// size: an 8 GiB sparse file takes no memory and no time to refuse (it is
/// never read), and a real guest is refused by a limit just below its size
/// and loaded at exactly its size.
#[test]
fn a_component_file_over_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.wasm");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let err = sandbox().load_file(&huge, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            SandboxError::TooLarge {
                size: 8_589_934_592,
                limit: 67_108_864,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("huge.wasm") && message.contains("more than the 67108864 bytes"),
        "{message}"
    );

    let guest = crate::support::guest("echo");
    let size = std::fs::metadata(&guest).unwrap().len();
    let limited = |limit| {
        Sandbox::new(SandboxConfig {
            max_component_bytes: limit,
            ..SandboxConfig::default()
        })
        .unwrap()
    };
    let err = limited(size - 1).load_file(&guest, &[]).unwrap_err();
    assert!(
        matches!(err, SandboxError::TooLarge { size: s, .. } if s == size),
        "{err:?}"
    );
    limited(size).load_file(&guest, &[]).unwrap();
}
