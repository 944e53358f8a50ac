//! What the sandbox reads from a WebAssembly binary before compiling it:
//! whether it is a core module or a component, a component's imports and
//! whether it uses the component model's async ABI, and how a core module is
//! turned into a component (wit-bindgen's metadata, plus the WASI preview1
//! adapter when it imports `wasi_snapshot_preview1`).
//!
//! Reading a binary's sections costs a fraction of compiling it, so a
//! component that imports something it may not, or that needs async, is
//! refused before Cranelift sees it.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wasmparser::{
    CanonicalFunction, CanonicalOption, ComponentType, ComponentTypeDeclaration, ComponentTypeRef,
    InstanceTypeDeclaration, Parser, Payload, TypeBounds,
};

use crate::error::SandboxError;

/// What a binary is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmLayer {
    Core,
    Component,
}

/// Whether `bytes` are a core module or a component, from the binary header
/// (magic, 2-byte version, 2-byte layer: 0 for modules, 1 for components).
pub(crate) fn layer(bytes: &[u8]) -> Option<WasmLayer> {
    match bytes.get(..8)? {
        [0x00, 0x61, 0x73, 0x6d, _, _, 0x00, 0x00] => Some(WasmLayer::Core),
        [0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00] => Some(WasmLayer::Component),
        _ => None,
    }
}

/// What a component's binary says about it.
#[derive(Debug, Default)]
pub(crate) struct Inspection {
    /// Its top-level imports, in order.
    pub(crate) imports: Vec<String>,
    /// The first use of the async ABI found, if any (e.g. `task.return`).
    pub(crate) uses_async: Option<&'static str>,
}

/// Reads a component's imports and looks for the async ABI, anywhere in it.
///
/// # Errors
/// [`SandboxError::Compile`] when the binary is malformed.
pub(crate) fn inspect_component(bytes: &[u8], name: &str) -> Result<Inspection, SandboxError> {
    let malformed = |error: wasmparser::BinaryReaderError| SandboxError::Compile {
        component: name.to_owned(),
        reason: format!("malformed component: {error}"),
    };
    let mut inspection = Inspection::default();
    // Nested modules and components are parsed inline; only the outermost
    // component's imports are the host's business.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    // A type import equal to a type defined elsewhere (how a
                    // world's `use` of its own types is encoded) needs nothing
                    // from the host; everything else does.
                    if !matches!(import.ty, ComponentTypeRef::Type(TypeBounds::Eq(_))) {
                        inspection.imports.push(import.name.name.to_owned());
                    }
                }
            }
            Payload::ComponentCanonicalSection(reader) => {
                for function in reader {
                    let found = async_canonical(&function.map_err(malformed)?);
                    inspection.uses_async = inspection.uses_async.or(found);
                }
            }
            Payload::ComponentTypeSection(reader) => {
                for ty in reader {
                    if async_type(&ty.map_err(malformed)?) {
                        inspection
                            .uses_async
                            .get_or_insert("an async function type");
                    }
                }
            }
            _ => {}
        }
    }
    Ok(inspection)
}

/// Whether a canonical function belongs to the async ABI (or to threads,
/// which need it): everything but lifting, lowering and resource intrinsics
/// without the `async` option.
fn async_canonical(function: &CanonicalFunction) -> Option<&'static str> {
    let options = match function {
        CanonicalFunction::Lift { options, .. } | CanonicalFunction::Lower { options, .. } => {
            options
        }
        CanonicalFunction::ResourceNew { .. }
        | CanonicalFunction::ResourceDrop { .. }
        | CanonicalFunction::ResourceRep { .. } => return None,
        CanonicalFunction::TaskReturn { .. } => return Some("`task.return`"),
        CanonicalFunction::TaskCancel => return Some("`task.cancel`"),
        _ => return Some("an async canonical built-in"),
    };
    options.iter().find_map(|option| match option {
        CanonicalOption::Async => Some("a function lifted or lowered `async`"),
        CanonicalOption::Callback(_) => Some("an async callback"),
        _ => None,
    })
}

/// Whether a component type is, or declares, an `async` function type.
fn async_type(ty: &ComponentType<'_>) -> bool {
    match ty {
        ComponentType::Func(func) => func.async_,
        ComponentType::Instance(declarations) => declarations.iter().any(|declaration| {
            matches!(declaration, InstanceTypeDeclaration::Type(ty) if async_type(ty))
        }),
        ComponentType::Component(declarations) => declarations.iter().any(|declaration| {
            matches!(declaration, ComponentTypeDeclaration::Type(ty) if async_type(ty))
        }),
        _ => false,
    }
}

/// Encodes a core module carrying wit-bindgen's component-type metadata
/// into a component. A module importing WASI preview1
/// (`wasi_snapshot_preview1`, e.g. C built with wasi-libc) is adapted with
/// wasmtime's matching preview1 adapter: the command adapter when it
/// exports `_start`, else the reactor adapter.
///
/// # Errors
/// [`SandboxError::Encode`] when wit-component refuses the module.
pub(crate) fn encode_core(bytes: &[u8], name: &str) -> Result<Vec<u8>, SandboxError> {
    let encode_error = |error| encode_failure(name, error);
    let (preview1, command) = preview1_use(bytes);
    let mut encoder = wit_component::ComponentEncoder::default()
        .module(bytes)
        .map_err(encode_error)?;
    if preview1 {
        let adapter = if command {
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER
        } else {
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER
        };
        encoder = encoder
            .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)
            .map_err(encode_error)?;
    }
    encoder.validate(true).encode().map_err(encode_error)
}

fn encode_failure(name: &str, error: impl std::fmt::Display) -> SandboxError {
    SandboxError::Encode {
        component: name.to_owned(),
        reason: format!("{error:#}"),
    }
}

/// Whether a core module imports WASI preview1, and whether it exports
/// `_start` (a command). A malformed module answers `(false, false)`: the
/// encoder reports it.
fn preview1_use(bytes: &[u8]) -> (bool, bool) {
    let mut preview1 = false;
    let mut command = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ImportSection(reader)) => {
                preview1 |= reader.into_imports().any(|import| {
                    import.is_ok_and(|i| i.module == WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME)
                });
            }
            Ok(Payload::ExportSection(reader)) => {
                command |= reader
                    .into_iter()
                    .any(|export| export.is_ok_and(|e| e.name == "_start"));
            }
            Ok(Payload::CodeSectionStart { .. }) | Err(_) => break,
            Ok(_) => {}
        }
    }
    (preview1, command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_preview1_imports_and_commands() {
        let reactor = wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "random_get"
                 (func (param i32 i32) (result i32))))"#,
        )
        .unwrap();
        assert_eq!(preview1_use(&reactor), (true, false));
        let command = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        assert_eq!(preview1_use(&command), (false, true));
    }
}
