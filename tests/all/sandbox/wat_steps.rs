//! Inline WAT steps: the core modules (and their components) the tests
//! build, from `run`'s body up, with the metadata of a step world.

use std::sync::Arc;

use weft_sandbox::StepComponent;
use wit_parser::Resolve;

use super::sandbox;

/// Where `run` writes its `result<outcome, step-error>` (see `completes`).
const RET: u32 = 1024;

/// A core module implementing `run: func(input: json, ctx: step-context) ->
/// result<outcome, step-error>` with the canonical ABI: its 21 flat params
/// exceed 16, so `run` gets one pointer to them (`$args`: input ptr/len at 0
/// and 4, then the step-context) and returns a pointer to its result. It also
/// has `memory` and a bump `cabi_realloc` for the host's allocations.
/// `imports` go first, `data` are data segments (below 8 KiB), `body` is
/// `run`'s body (locals first).
pub(crate) fn step_wat(imports: &str, data: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (block $fits
      (loop $grow
        (br_if $fits (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))
        unreachable))
    (local.get $ptr))
  {data}
  (func (export "run") (param $args i32) (result i32)
    {body}))"#
    )
}

/// `run`'s tail returning `ok(completed(string at ptr, len))`: the result's
/// discriminant at RET, the outcome's at RET+4, the string at RET+8/RET+12.
pub(crate) fn completes(ptr: &str, len: &str) -> String {
    format!(
        "(i32.store8 (i32.const {RET}) (i32.const 0))
         (i32.store8 (i32.const {r4}) (i32.const 0))
         (i32.store (i32.const {r8}) {ptr})
         (i32.store (i32.const {r12}) {len})
         (i32.const {RET})",
        r4 = RET + 4,
        r8 = RET + 8,
        r12 = RET + 12,
    )
}

/// A string or list in guest memory: its address and length (in bytes for
/// strings, in entries for lists).
#[derive(Clone, Copy)]
pub(super) struct Span {
    ptr: u32,
    len: u32,
}

pub(super) const fn span(ptr: u32, len: u32) -> Span {
    Span { ptr, len }
}

/// Where big guest data starts: past the first page (which holds the fixed
/// data and the bump allocator's first allocations), in pages the body grows.
pub(super) const BIG: u32 = 1 << 16;

/// Grows the memory (by whole pages) so that `bytes` bytes from `BIG` on
/// exist, all zeros; traps if the growth is refused.
pub(super) fn grow_for(bytes: u32) -> String {
    let pages = bytes.div_ceil(1 << 16);
    format!("(if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))")
}

/// Stores the two i32 of a pointer/length pair at `at`.
pub(super) fn store_span(at: u32, span: Span) -> String {
    format!(
        "(i32.store (i32.const {at}) (i32.const {})) (i32.store (i32.const {}) (i32.const {}))",
        span.ptr,
        at + 4,
        span.len
    )
}

/// `run`'s tail returning `err(step-error)` with these strings (`details`
/// absent when `None`) and `causes` (a list of 28-byte `error-cause` records:
/// code at 0, message at 8, details' discriminant at 16 and string at 20).
/// The error sits at RET+4: code, message, details (discriminant at +16,
/// string at +20), retryable at +28, causes at +32.
pub(super) fn fails_with(code: Span, message: Span, details: Option<Span>, causes: Span) -> String {
    let details = match details {
        Some(details) => format!(
            "(i32.store8 (i32.const {}) (i32.const 1)) {}",
            RET + 20,
            store_span(RET + 24, details)
        ),
        None => format!("(i32.store8 (i32.const {}) (i32.const 0))", RET + 20),
    };
    format!(
        "(i32.store8 (i32.const {RET}) (i32.const 1))
         {} {} {details}
         (i32.store8 (i32.const {}) (i32.const 0))
         {}
         (i32.const {RET})",
        store_span(RET + 4, code),
        store_span(RET + 12, message),
        RET + 32,
        store_span(RET + 36, causes),
    )
}

/// `run`'s tail returning `ok(suspended({payload, resume-labels}))`: the
/// outcome's discriminant at RET+4, the payload at RET+8, the labels (a list
/// of 8-byte strings) at RET+16.
pub(super) fn suspends_with(payload: Span, labels: Span) -> String {
    format!(
        "(i32.store8 (i32.const {RET}) (i32.const 0))
         (i32.store8 (i32.const {}) (i32.const 1))
         {} {}
         (i32.const {RET})",
        RET + 4,
        store_span(RET + 8, payload),
        store_span(RET + 16, labels),
    )
}

/// Fills `count` records of `size` bytes from `at` with `field` (at offset
/// `offset` of each record) = `value` (a pointer/length pair), in a loop.
pub(super) fn fill_records(at: u32, count: u32, size: u32, offset: u32, value: Span) -> String {
    format!(
        "(local.set $i (i32.const 0))
         (block $filled
           (loop $fill
             (br_if $filled (i32.ge_u (local.get $i) (i32.const {count})))
             (local.set $at (i32.add (i32.const {at}) (i32.mul (local.get $i) (i32.const {size}))))
             (i32.store offset={offset} (local.get $at) (i32.const {}))
             (i32.store offset={} (local.get $at) (i32.const {}))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br $fill)))",
        value.ptr,
        offset + 4,
        value.len
    )
}

/// The bytes of an `error-cause` record.
pub(super) const CAUSE_SIZE: u32 = 28;

/// A step whose `run` declares the locals `fill_records` uses, then runs `body`.
pub(super) fn big_step(data: &str, body: &str, name: &str) -> Arc<StepComponent> {
    load(
        &step_module(data, &format!("(local $i i32) (local $at i32) {body}")),
        name,
    )
}

/// A data segment holding `text` at `offset`.
pub(crate) fn data(offset: u32, text: &str) -> String {
    let escaped: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(r#"(data (i32.const {offset}) "{escaped}")"#)
}

/// `run` completing with the fixed text `output` (kept at 2048).
pub(super) fn completes_with(output: &str) -> (String, String) {
    (
        data(2048, output),
        completes("(i32.const 2048)", &format!("(i32.const {})", output.len())),
    )
}

/// The `step` world of `wit/step.wit`, or world `world` of the last of
/// `packages` (WIT sources pushed in order, after `wit/step.wit`).
fn resolve(packages: &[&str], world: &str) -> (Resolve, wit_parser::WorldId) {
    let mut resolve = Resolve::default();
    let step = resolve
        .push_str("step.wit", include_str!("../../../wit/step.wit"))
        .expect("wit/step.wit parses");
    let mut main = step;
    for (i, source) in packages.iter().enumerate() {
        main = resolve
            .push_str(format!("inline{i}.wit"), source)
            .expect("inline WIT parses");
    }
    let world = resolve
        .select_world(&[main], Some(world))
        .expect("the world exists");
    (resolve, world)
}

/// A core module carrying the component-type metadata of `world`.
pub(crate) fn module(wat: &str, packages: &[&str], world: &str) -> Vec<u8> {
    let (resolve, world) = resolve(packages, world);
    let mut module = wat::parse_str(wat).expect("the WAT parses");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    module
}

/// The component of a core module with metadata.
pub(crate) fn encode(module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .expect("the module has metadata")
        .validate(true)
        .encode()
        .expect("the module encodes")
}

/// A step of world `step` from `data` and `body`, as a core module.
pub(super) fn step_module(data: &str, body: &str) -> Vec<u8> {
    module(&step_wat("", data, body), &[], "step")
}

pub(super) fn load(bytes: &[u8], name: &str) -> Arc<StepComponent> {
    sandbox()
        .load_bytes(bytes, name, &[])
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

pub(super) fn happy_path() -> Arc<StepComponent> {
    let (data, body) = completes_with(r#"{"ok":true,"n":42}"#);
    load(&encode(&step_module(&data, &body)), "happy.wasm")
}

pub(super) fn echo_module() -> Vec<u8> {
    step_module(
        "",
        &completes(
            "(i32.load (local.get $args))",
            "(i32.load offset=4 (local.get $args))",
        ),
    )
}

pub(super) fn echo() -> Arc<StepComponent> {
    load(&echo_module(), "echo.wat")
}

pub(super) fn trap() -> Arc<StepComponent> {
    load(&step_module("", "unreachable"), "trap.wat")
}
