//! Validated identifiers and timestamps.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id `{id}`: {reason}")]
pub struct IdError {
    /// The rejected text.
    pub id: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The id of a step (or of a flow node, or of a workflow): 1–64 characters
/// from `a-z A-Z 0-9 _ -`, starting with a letter.
///
/// The restricted alphabet keeps ids usable unquoted in paths, CLI arguments,
/// file names and expressions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepId(Arc<str>);

impl StepId {
    /// Validates `id`.
    ///
    /// # Errors
    /// When `id` is empty, longer than 64 characters, does not start with a
    /// letter, or contains a character outside `a-z A-Z 0-9 _ -`.
    pub fn new(id: &str) -> Result<Self, IdError> {
        let err = |reason| IdError {
            id: id.to_owned(),
            reason,
        };
        if id.is_empty() {
            return Err(err("ids must not be empty"));
        }
        if id.len() > 64 {
            return Err(err("ids are at most 64 characters long"));
        }
        if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(err("ids start with a letter"));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(err("ids use only letters, digits, `_` and `-`"));
        }
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of step `id` of a workflow nested at node pattern `prefix`
    /// (`charge-flow/charge`): a nested workflow's steps join its parent's
    /// under such ids, so that each names one definition. Manifests cannot
    /// write them ([`StepId::new`] refuses `/`).
    pub(crate) fn qualified(prefix: &str, id: &StepId) -> Self {
        Self(format!("{prefix}/{id}").into())
    }

    /// The id as the step's manifest declared it: the last segment of a
    /// qualified id (`charge` for `charge-flow/charge`), else the id.
    pub fn declared(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl TryFrom<String> for StepId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(&s)
    }
}

impl StepId {
    /// Parses a step id as recorded in events: a plain id, or a qualified
    /// one (`charge-flow/charge`: `/`-separated segments, each a valid id).
    ///
    /// # Errors
    /// When a segment is not a valid id.
    pub fn parse_qualified(s: &str) -> Result<Self, IdError> {
        for segment in s.split('/') {
            Self::new(segment)?;
        }
        Ok(Self(s.into()))
    }

    /// `#[serde(deserialize_with)]` for fields holding a step id that may be
    /// qualified (the `step` of events and records).
    pub(crate) fn deserialize_qualified<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_qualified(&text).map_err(serde::de::Error::custom)
    }
}

impl From<StepId> for String {
    fn from(id: StepId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a step execution sits in a run: node ids joined by `/`, with
/// item indexes in brackets for nodes inside a foreach and iteration numbers
/// after `#` for nodes inside a loop (e.g. `approve`, `items[3]/enrich`,
/// `again#2/check`, `checks/fraud`).
///
/// A path is unique within a run; it is the key of a step's record, the
/// target of `weft resume --step`, and part of the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepPath(Arc<str>);

impl StepPath {
    /// The path of a node at the top level of a workflow's flow.
    pub fn root(node: &StepId) -> Self {
        Self(node.as_str().into())
    }

    /// The path of `node` nested under this one.
    pub fn child(&self, node: &StepId) -> Self {
        Self(format!("{}/{}", self.0, node).into())
    }

    /// The scope of item `index` of this foreach node (`items[3]`).
    pub fn iteration(&self, index: u32) -> Self {
        Self(format!("{}[{index}]", self.0).into())
    }

    /// The scope of iteration `number` (from 1) of this loop node (`again#2`).
    pub fn round(&self, number: u32) -> Self {
        Self(format!("{}#{number}", self.0).into())
    }

    /// The last segment (`enrich` for `items[3]/enrich`, `items[3]` for `items[3]`).
    pub fn last(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The path with every item index and iteration number removed
    /// (`items/enrich` for `items[3]/enrich`): the node of the workflow it runs.
    pub fn pattern(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for (i, segment) in self.0.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(segment.split(['[', '#']).next().unwrap_or_default());
        }
        out
    }

    /// When this path is the scope of a foreach item or a loop iteration:
    /// the node's path, and the item index (`[n]`) or iteration number (`#n`).
    pub fn repetition(&self) -> Option<(Self, Repetition)> {
        let last = self.last();
        if let Some(rest) = last.strip_suffix(']') {
            let (_, digits) = rest.rsplit_once('[')?;
            let index = digits.parse().ok()?;
            let node = &self.0[..self.0.len() - digits.len() - 2];
            return Some((Self(node.into()), Repetition::Item(index)));
        }
        let (_, digits) = last.rsplit_once('#')?;
        let number = digits.parse().ok()?;
        let node = &self.0[..self.0.len() - digits.len() - 1];
        Some((Self(node.into()), Repetition::Round(number)))
    }

    /// Parses a path given by a user (e.g. on the command line). Only the
    /// syntax is checked; whether the run has such a step is up to the caller.
    ///
    /// # Errors
    /// When a segment is not a valid id optionally followed by `[N]` or `#N`.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        for segment in text.split('/') {
            if let Some((id, digits)) = segment.split_once('#') {
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return Err(IdError {
                        id: text.to_owned(),
                        reason: "an iteration number is written `#N`",
                    });
                }
                StepId::new(id)?;
                continue;
            }
            let id = match segment.split_once('[') {
                Some((id, rest)) => {
                    let digits = rest.strip_suffix(']').ok_or_else(|| IdError {
                        id: text.to_owned(),
                        reason: "an iteration index is written `[N]`",
                    })?;
                    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                        return Err(IdError {
                            id: text.to_owned(),
                            reason: "an iteration index is written `[N]`",
                        });
                    }
                    id
                }
                None => segment,
            };
            StepId::new(id)?;
        }
        Ok(Self(text.into()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The smallest path (in path order) of anything nested under this one:
    /// `self/` (not itself a valid path; a bound for range queries).
    pub(crate) fn children_start(&self) -> Self {
        Self(format!("{}/", self.0).into())
    }

    /// The enclosing scope: the path without its last segment (`items[3]`
    /// for `items[3]/enrich`); `None` at the top level.
    pub fn scope(&self) -> Option<Self> {
        self.0.rsplit_once('/').map(|(scope, _)| Self(scope.into()))
    }
}

/// Which repetition of a node a scope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repetition {
    /// A foreach item, by index (from 0).
    Item(u32),
    /// A loop iteration, by number (from 1).
    Round(u32),
}

impl fmt::Display for StepPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a workflow run. Any non-empty string of at most 128 characters
/// without whitespace or `/`; weft generates UUIDs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(Arc<str>);

impl RunId {
    /// Validates `id`.
    ///
    /// # Errors
    /// When `id` is empty, longer than 128 characters, or contains
    /// whitespace, control characters or `/`.
    pub fn new(id: &str) -> Result<Self, IdError> {
        let err = |reason| IdError {
            id: id.to_owned(),
            reason,
        };
        if id.is_empty() || id.len() > 128 {
            return Err(err("run ids are 1 to 128 characters long"));
        }
        if id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(err(
                "run ids contain no whitespace, control characters or `/`",
            ));
        }
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(&s)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Microseconds since the Unix epoch. Timestamps are data carried by events,
/// never read from the system inside this crate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This timestamp plus `millis` milliseconds (saturating).
    pub fn plus_millis(self, millis: u64) -> Self {
        Self(self.0.saturating_add(millis.saturating_mul(1000)))
    }

    /// The time in RFC 3339, UTC, to the millisecond
    /// (`2026-11-29T14:03:07.250Z`).
    pub fn rfc3339(self) -> String {
        let micros = i64::try_from(self.0).unwrap_or(i64::MAX);
        chrono::DateTime::from_timestamp_micros(micros).map_or_else(
            || format!("{} µs after the Unix epoch", self.0),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    }

    /// Microseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(
            Timestamp(1_764_424_987_250_000).rfc3339(),
            "2025-11-29T14:03:07.250Z"
        );
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn step_ids_are_validated() {
        assert!(StepId::new("validate-order_2").is_ok());
        assert_eq!(StepId::new("").unwrap_err().reason, "ids must not be empty");
        assert!(StepId::new("2fast").is_err());
        assert!(StepId::new("a/b").is_err());
        assert!(StepId::new(&"a".repeat(65)).is_err());
    }

    #[test]
    fn run_ids_refuse_what_could_forge_terminal_output() {
        assert!(RunId::new("6c1d-order_2.retry").is_ok());
        for bad in ["", "a b", "a/b", "fake\u{1b}[2J", "a\rb", "a\u{7f}"] {
            assert!(RunId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_compose_and_parse() {
        let a = StepId::new("items").unwrap();
        let b = StepId::new("enrich").unwrap();
        let p = StepPath::root(&a).iteration(3).child(&b);
        assert_eq!(p.as_str(), "items[3]/enrich");
        assert_eq!(StepPath::parse("items[3]/enrich").unwrap(), p);
        assert!(StepPath::parse("items[x]/enrich").is_err());
        assert!(StepPath::parse("items//enrich").is_err());
    }
}
