//! Expressions in CEL (the Common Expression Language), evaluated by the host
//! over the run's data: branch and loop conditions, map fields, sleep-until.
//!
//! An [`Expr`] is compiled once, when the manifest is lowered (syntax errors
//! and unknown variables are load errors, located in the expression's text),
//! and evaluated many times, each time with its variables given as JSON.
//!
//! Values cross between JSON and CEL by our own rules rather than the `cel`
//! crate's (which turns a non-negative JSON integer into a CEL `uint`, so that
//! `input.n * 2` would fail on `uint * int`):
//!
//! - JSON → CEL: an integer that fits `i64` is an `int`, any other number a
//!   `double`; strings, booleans, null; arrays are lists; objects are maps
//!   with string keys.
//! - CEL → JSON: `int`, `uint` and finite `double` are numbers; strings,
//!   booleans, null; lists are arrays; maps are objects, their keys sorted
//!   (CEL maps have no order; sorting makes the output deterministic), and
//!   `int`, `uint` and `bool` keys written in their decimal or text form; a
//!   timestamp is its RFC 3339 text in UTC (`2026-11-29T10:00:02Z`), a
//!   duration its seconds as CEL prints them (`1.5s`). NaN, infinities,
//!   bytes and the other CEL types are errors.
//!
//! CEL's typing is kept: `int * double` is an error (`double(n) * 1.5`
//! works), a missing map key is an error (`has(input.x)` tests presence).

use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program, Value as Cel};
use serde_json::Value as Json;

use self::message::{clamp_position, syntax_message, type_name, with_article};
use self::value::{to_cel, to_json};
use self::variables::{find_identifier, free_variables, identifier_at, line_column};

/// A compiled expression (CEL syntax), e.g. `output.total_cents > 100000`.
///
/// Cloning is cheap (the program is shared). Two expressions are equal when
/// their texts are.
#[derive(Clone)]
pub struct Expr {
    text: String,
    program: Arc<Program>,
    variables: Vec<Variable>,
    /// The names of `variables`, for [`Expr::variables`].
    names: Vec<String>,
}

/// A top-level variable an expression reads, with where it is first read.
#[derive(Debug, Clone)]
struct Variable {
    name: String,
    /// The character offset of its first occurrence in the text, when the
    /// parser recorded one.
    offset: Option<usize>,
}

/// An error in an expression's text (a syntax error, or a variable that is
/// not available where the expression is used).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ExprError {
    /// The line within the expression's text, starting at 1.
    pub line: usize,
    /// The column within that line, in characters, starting at 1.
    pub column: usize,
    /// What is wrong, lowercase, on one line.
    pub message: String,
}

/// The standard CEL environment, built once: building it registers every
/// standard function, which is too much work to repeat per evaluation.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl Expr {
    /// Parses `text`.
    ///
    /// # Errors
    /// On a syntax error (the first one the parser reports), located at its
    /// line and column within `text`.
    pub fn compile(text: &str) -> Result<Expr, ExprError> {
        let program = env().compile(text).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first.map_or((1, 1), |e| {
                (clamp_position(e.pos.0), clamp_position(e.pos.1))
            });
            let message =
                first.map_or_else(|| "syntax error".to_owned(), |e| syntax_message(&e.msg));
            ExprError {
                line,
                column,
                message,
            }
        })?;
        let mut variables = Vec::new();
        free_variables(program.expression(), &mut Vec::new(), &mut variables);
        let variables: Vec<Variable> = variables
            .into_iter()
            .map(|(name, id)| Variable {
                offset: program
                    .source_info()
                    .offset_for(id)
                    .and_then(|(start, _)| usize::try_from(start).ok()),
                name,
            })
            .collect();
        Ok(Expr {
            text: text.to_owned(),
            program: Arc::new(program),
            names: variables.iter().map(|v| v.name.clone()).collect(),
            variables,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The top-level variables it reads, in the order they first occur
    /// (e.g. `["input", "workflow"]`). Variables bound by macros
    /// (`x` in `input.items.map(x, x * 2)`) and type names (`int`) are not
    /// among them.
    pub fn variables(&self) -> &[String] {
        &self.names
    }

    /// Whether it reads the top-level variable `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// Checks that every variable it reads is in `allowed`.
    ///
    /// # Errors
    /// For the first variable (in the text) not in `allowed`:
    /// ``unknown variable `foo` (available here: input, workflow)``, located
    /// at its first occurrence in the text.
    pub fn check_variables(&self, allowed: &[&str]) -> Result<(), ExprError> {
        let Some(unknown) = self
            .variables
            .iter()
            .find(|v| !allowed.contains(&v.name.as_str()))
        else {
            return Ok(());
        };
        let offset = unknown
            .offset
            .filter(|&o| identifier_at(&self.text, o, &unknown.name))
            .or_else(|| find_identifier(&self.text, &unknown.name));
        let (line, column) = offset.map_or((1, 1), |o| line_column(&self.text, o));
        Err(ExprError {
            line,
            column,
            message: format!(
                "unknown variable `{}` (available here: {})",
                unknown.name,
                allowed.join(", ")
            ),
        })
    }

    /// Evaluates the expression with these variables (JSON in, JSON out).
    ///
    /// # Errors
    /// A readable message when evaluation fails (``no such key `limit` ``,
    /// `unsupported operation: int * double (write double(x) to convert)`)
    /// or when the result has no JSON form (a NaN, bytes).
    pub fn evaluate(&self, variables: &[(&str, &Json)]) -> Result<Json, String> {
        let value = self.execute(variables)?;
        to_json(&value)
    }

    /// Evaluates a condition.
    ///
    /// # Errors
    /// As [`Expr::evaluate`], and when the result is not a boolean
    /// (`the condition yields a string, not a boolean`).
    pub fn evaluate_bool(&self, variables: &[(&str, &Json)]) -> Result<bool, String> {
        match self.execute(variables)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!(
                "the condition yields {}, not a boolean",
                with_article(type_name(&other))
            )),
        }
    }

    fn execute(&self, variables: &[(&str, &Json)]) -> Result<Cel, String> {
        let mut context = Context::with_env(Arc::clone(env()));
        for (name, value) in variables {
            context.add_variable_from_value(*name, to_cel(value));
        }
        self.program
            .execute(&context)
            .map_err(|e| message::describe(&e, |name| self.reads(name)))
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Expr {}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.text).finish()
    }
}

mod message;
mod value;
mod variables;

#[cfg(test)]
mod tests;
