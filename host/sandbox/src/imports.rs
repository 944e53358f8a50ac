//! The import policy: which interfaces a step component may import.
//!
//! Always allowed: the step contract's own `weft:step/host@0.1.0` and
//! `weft:step/types@0.1.0`. WASI 0.2 interfaces only with a grant:
//! [`Grant::Stdio`] for `wasi:cli` stdio, environment, exit and terminal
//! interfaces plus the `wasi:io` streams they need; [`Grant::Clocks`] for
//! `wasi:clocks/*` (and `wasi:io/poll`, which the monotonic clock's types
//! use); [`Grant::Random`] for `wasi:random/*`. Everything else (filesystem,
//! sockets, HTTP, unknown packages) is refused whatever the grants.
//!
//! The linker holds all of WASI 0.2; this check, made when a component is
//! loaded, is the gate.

use weft_core::Grant;

use crate::error::SandboxError;

/// The world every step component implements.
pub const STEP_WORLD: &str = "weft:step/step@0.1.0";

/// What the policy says about one import, whatever the grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Always allowed.
    Allowed,
    /// Allowed when any of these is granted (the first is the one to suggest).
    Needs(&'static [Grant]),
    /// Never allowed, for this reason.
    Denied(&'static str),
}

const STDIO: &[Grant] = &[Grant::Stdio];
const CLOCKS: &[Grant] = &[Grant::Clocks];
const RANDOM: &[Grant] = &[Grant::Random];
const POLL: &[Grant] = &[Grant::Stdio, Grant::Clocks];

/// The `wasi:cli` interfaces covered by [`Grant::Stdio`].
const CLI_STDIO: &[&str] = &[
    "stdin",
    "stdout",
    "stderr",
    "terminal-input",
    "terminal-output",
    "terminal-stdin",
    "terminal-stdout",
    "terminal-stderr",
    "environment",
    "exit",
];

/// The name of a grant as written in manifests.
pub(crate) fn grant_name(grant: Grant) -> &'static str {
    match grant {
        Grant::Stdio => "stdio",
        Grant::Clocks => "clocks",
        Grant::Random => "random",
    }
}

/// Classifies one import name, e.g. `wasi:cli/stdout@0.2.6`.
pub(crate) fn classify(import: &str) -> Verdict {
    let (path, version) = match import.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (import, None),
    };
    let Some((package, interface)) = path.split_once('/') else {
        return Verdict::Denied(
            "steps may import only `weft:step/host@0.1.0` and granted WASI interfaces, \
             not bare functions or unnamed instances",
        );
    };
    match package {
        "weft:step" => {
            if version != Some("0.1.0") {
                return Verdict::Denied("this host implements version 0.1.0 of `weft:step` only");
            }
            match interface {
                "host" | "types" => Verdict::Allowed,
                _ => Verdict::Denied("`weft:step@0.1.0` has no such interface"),
            }
        }
        _ if package.starts_with("wasi:") => classify_wasi(package, interface, version),
        _ => Verdict::Denied(
            "unknown interface: steps may import only `weft:step/host@0.1.0` and granted \
             WASI interfaces (stdio, clocks, random)",
        ),
    }
}

fn classify_wasi(package: &str, interface: &str, version: Option<&str>) -> Verdict {
    if !version.is_some_and(|v| v.starts_with("0.2.")) {
        return Verdict::Denied("the host provides WASI 0.2.x interfaces only");
    }
    match package {
        "wasi:cli" if CLI_STDIO.contains(&interface) => Verdict::Needs(STDIO),
        "wasi:io" => match interface {
            "poll" => Verdict::Needs(POLL),
            "streams" | "error" => Verdict::Needs(STDIO),
            _ => Verdict::Denied("this `wasi:io` interface is not offered to steps"),
        },
        "wasi:clocks" => Verdict::Needs(CLOCKS),
        "wasi:random" => Verdict::Needs(RANDOM),
        "wasi:filesystem" => Verdict::Denied("steps have no filesystem access"),
        "wasi:sockets" => Verdict::Denied("steps have no network access"),
        "wasi:http" => Verdict::Denied("steps have no HTTP access"),
        _ => Verdict::Denied("this WASI interface is not offered to steps"),
    }
}

/// The imports of a component that need a grant, kept with the compiled
/// component so that each load only checks them against its grants.
#[derive(Debug, Clone, Default)]
pub(crate) struct NeededGrants(Vec<(String, &'static [Grant])>);

impl NeededGrants {
    /// Applies the grant-independent part of the policy to `imports`: fails on
    /// the first import that is never allowed, and returns those that need a grant.
    pub(crate) fn of<'a>(
        component: &str,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SandboxError> {
        let mut needed = Vec::new();
        for import in imports {
            match classify(import) {
                Verdict::Allowed => {}
                Verdict::Needs(grants) => needed.push((import.to_owned(), grants)),
                Verdict::Denied(reason) => {
                    return Err(SandboxError::ImportDenied {
                        component: component.to_owned(),
                        import: import.to_owned(),
                        reason,
                    });
                }
            }
        }
        Ok(Self(needed))
    }

    /// Fails on the first import none of whose grants is in `grants`.
    pub(crate) fn check(&self, component: &str, grants: &[Grant]) -> Result<(), SandboxError> {
        for (import, allowed_by) in &self.0 {
            if !allowed_by.iter().any(|g| grants.contains(g)) {
                return Err(SandboxError::ImportNotGranted {
                    component: component.to_owned(),
                    import: import.clone(),
                    grant: allowed_by.first().copied().unwrap_or(Grant::Stdio),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_is_always_allowed() {
        assert_eq!(classify("weft:step/host@0.1.0"), Verdict::Allowed);
        assert_eq!(classify("weft:step/types@0.1.0"), Verdict::Allowed);
        assert!(matches!(
            classify("weft:step/host@0.2.0"),
            Verdict::Denied(_)
        ));
        assert!(matches!(
            classify("weft:step/other@0.1.0"),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn wasi_needs_grants() {
        assert_eq!(classify("wasi:cli/stdout@0.2.6"), Verdict::Needs(STDIO));
        assert_eq!(classify("wasi:cli/exit@0.2.0"), Verdict::Needs(STDIO));
        assert_eq!(classify("wasi:io/streams@0.2.6"), Verdict::Needs(STDIO));
        assert_eq!(classify("wasi:io/poll@0.2.6"), Verdict::Needs(POLL));
        assert_eq!(
            classify("wasi:clocks/wall-clock@0.2.6"),
            Verdict::Needs(CLOCKS)
        );
        assert_eq!(classify("wasi:random/random@0.2.6"), Verdict::Needs(RANDOM));
    }

    #[test]
    fn everything_else_is_denied() {
        for import in [
            "wasi:filesystem/types@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:cli/run@0.2.6",
            "wasi:random/random@0.3.0",
            "evil:net/socket",
            "evil:net/socket@1.0.0",
            "bare-function",
        ] {
            assert!(matches!(classify(import), Verdict::Denied(_)), "{import}");
        }
    }

    #[test]
    fn grants_are_checked() {
        let needed = NeededGrants::of("c", ["weft:step/host@0.1.0", "wasi:io/poll@0.2.6"]).unwrap();
        assert!(needed.check("c", &[Grant::Clocks]).is_ok());
        let err = needed.check("c", &[Grant::Random]).unwrap_err();
        assert!(
            err.to_string()
                .contains("`wasi:io/poll@0.2.6`, which needs the `stdio` grant")
        );
        assert!(NeededGrants::of("c", ["wasi:sockets/tcp@0.2.6"]).is_err());
    }
}
