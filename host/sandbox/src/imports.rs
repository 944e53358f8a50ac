//! The import policy: which interfaces a step component may import.
//!
//! Allowed: the step contract's own `weft:step/host@0.1.0` and
//! `weft:step/types@0.1.0`, and the WASI 0.2 interfaces the sandbox links
//! for every step ([`crate::wasi::LINKED`]: cli, io, clocks, random,
//! filesystem, sockets), whatever the grants — they are virtualised and
//! deny-by-default, and grants only change what they give (see `wasi`).
//! Everything else (`wasi:http`, WASI interfaces the host does not link,
//! other WASI versions, unknown packages) is refused.
//!
//! The policy is applied to the import names read from the component's
//! binary *before* it is compiled, and a refusal names every offending
//! import at once.

use crate::error::{DeniedImport, SandboxError};
use crate::wasi::LINKED;

/// The world every step component implements.
pub const STEP_WORLD: &str = "weft:step/step@0.1.0";

/// Why one import is refused, or `None` if it is allowed.
pub(crate) fn refusal(import: &str) -> Option<&'static str> {
    let (path, version) = match import.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (import, None),
    };
    let Some((package, interface)) = path.split_once('/') else {
        return Some(
            "steps may import only `weft:step/host@0.1.0` and WASI 0.2 interfaces, \
             not bare functions or unnamed instances",
        );
    };
    match package {
        "weft:step" => {
            if version != Some("0.1.0") {
                return Some("this host implements version 0.1.0 of `weft:step` only");
            }
            match interface {
                "host" | "types" => None,
                _ => Some("`weft:step@0.1.0` has no such interface"),
            }
        }
        "wasi:http" => Some("steps have no HTTP access"),
        _ if package.starts_with("wasi:") => {
            if !version.is_some_and(|v| v.starts_with("0.2.")) {
                return Some("the host provides WASI 0.2.x interfaces only");
            }
            let linked = LINKED
                .iter()
                .find(|(linked, _)| *linked == package)
                .is_some_and(|(_, interfaces)| interfaces.contains(&interface));
            if linked {
                None
            } else {
                Some("this WASI interface is not offered to steps")
            }
        }
        _ => Some(
            "unknown interface: steps may import only `weft:step/host@0.1.0` and WASI 0.2 \
             interfaces (cli, io, clocks, random, filesystem, sockets)",
        ),
    }
}

/// Applies the policy to every import of `component`.
///
/// # Errors
/// [`SandboxError::ImportsDenied`] naming every refused import, in order.
pub(crate) fn check<'a>(
    component: &str,
    imports: impl IntoIterator<Item = &'a str>,
) -> Result<(), SandboxError> {
    let denied: Vec<DeniedImport> = imports
        .into_iter()
        .filter_map(|import| {
            refusal(import).map(|reason| DeniedImport {
                import: import.to_owned(),
                reason,
            })
        })
        .collect();
    if denied.is_empty() {
        Ok(())
    } else {
        Err(SandboxError::ImportsDenied {
            component: component.to_owned(),
            imports: denied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_is_always_allowed() {
        assert_eq!(refusal("weft:step/host@0.1.0"), None);
        assert_eq!(refusal("weft:step/types@0.1.0"), None);
        assert!(refusal("weft:step/host@0.2.0").is_some());
        assert!(refusal("weft:step/other@0.1.0").is_some());
    }

    #[test]
    fn linked_wasi_is_allowed_without_grants() {
        for import in [
            "wasi:cli/stdout@0.2.6",
            "wasi:cli/environment@0.2.0",
            "wasi:cli/terminal-stderr@0.2.9",
            "wasi:io/streams@0.2.6",
            "wasi:io/poll@0.2.12",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:random/insecure-seed@0.2.6",
            "wasi:filesystem/types@0.2.6",
            "wasi:filesystem/preopens@0.2.9",
            "wasi:sockets/tcp@0.2.6",
            "wasi:sockets/ip-name-lookup@0.2.0",
        ] {
            assert_eq!(refusal(import), None, "{import}");
        }
    }

    #[test]
    fn everything_else_is_denied() {
        for import in [
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:http/types@0.2.6",
            "wasi:cli/run@0.2.6",
            "wasi:clocks/timezone@0.2.6",
            "wasi:random/random@0.3.0",
            "wasi:filesystem/types",
            "wasi:keyvalue/store@0.2.0",
            "evil:net/socket",
            "evil:net/socket@1.0.0",
            "bare-function",
        ] {
            assert!(refusal(import).is_some(), "{import}");
        }
    }

    #[test]
    fn every_refused_import_is_named() {
        let err = check(
            "c.wasm",
            [
                "weft:step/host@0.1.0",
                "wasi:http/outgoing-handler@0.2.6",
                "wasi:cli/stdout@0.2.6",
                "evil:net/socket",
            ],
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
            message.starts_with("`c.wasm` imports 2 interfaces steps cannot use: "),
            "{message}"
        );
        assert!(
            message.contains("`wasi:http/outgoing-handler@0.2.6` (steps have no HTTP access)"),
            "{message}"
        );
        assert!(
            message.contains("`evil:net/socket` (unknown interface"),
            "{message}"
        );
        assert!(check("c.wasm", ["wasi:sockets/udp@0.2.6"]).is_ok());
    }
}
