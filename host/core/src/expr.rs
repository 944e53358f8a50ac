//! Expressions (CEL syntax) evaluated by the host over the run's data.

use serde::{Deserialize, Serialize};

/// An expression (CEL syntax) evaluated by the host over the run's data,
/// e.g. `output.total_cents > 100000`. Used by branch, loop, map and
/// sleep-until nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expr(pub String);
