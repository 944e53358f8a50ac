//! Readable messages for the `cel` crate's errors.

use cel::{ExecutionError, Value as Cel};

/// A parser position (1-based, possibly 0 or negative when unknown) as a
/// 1-based number.
pub(super) fn clamp_position(n: isize) -> usize {
    usize::try_from(n).unwrap_or(0).max(1)
}

/// The parser's message, lowercase, with its list of the tokens that may
/// start an expression shortened to words.
pub(super) fn syntax_message(message: &str) -> String {
    const EXPRESSION_START: &str = "{'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}";
    let message = message.strip_prefix("Syntax error: ").map_or_else(
        || message.to_owned(),
        |rest| format!("syntax error: {rest}"),
    );
    message.replace(EXPRESSION_START, "an expression")
}

/// The message of an evaluation error (`reads`: whether the expression
/// reads a top-level variable of that name): the crate's text for the errors
/// not met in practice, a sentence for the others.
pub(super) fn describe(error: &ExecutionError, reads: impl Fn(&str) -> bool) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key `{key}`"),
        ExecutionError::UndeclaredReference(name) if reads(name) => {
            format!("no such variable `{name}`")
        }
        ExecutionError::UndeclaredReference(name) => {
            format!("no such variable or function `{name}`")
        }
        ExecutionError::UnsupportedBinaryOperator(op, left, right) => {
            operation(operator_symbol(op), &[type_name(left), type_name(right)])
        }
        ExecutionError::NoSuchOverload(overload) => {
            let types: Vec<&str> = overload
                .argument_types()
                .iter()
                .map(String::as_str)
                .collect();
            let function = overload.function();
            match operator_symbol(function) {
                symbol if symbol != function => operation(symbol, &types),
                _ if overload.is_member_function() && !types.is_empty() => format!(
                    "no function `{function}` on {} taking ({})",
                    types[0],
                    types[1..].join(", ")
                ),
                _ => format!("no function `{function}` taking ({})", types.join(", ")),
            }
        }
        ExecutionError::ValuesNotComparable(left, right) => format!(
            "cannot compare {} with {}",
            type_name(left),
            type_name(right)
        ),
        ExecutionError::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::Overflow(op, left, right) => format!(
            "overflow: {} {} {}",
            show(left),
            operator_symbol(op),
            show(right)
        ),
        ExecutionError::IndexOutOfBounds(index) => {
            format!("index {} out of bounds", show(index))
        }
        ExecutionError::UnsupportedIndex(index, target) => format!(
            "cannot index {} with {}",
            type_name(target),
            type_name(index)
        ),
        ExecutionError::FunctionError { function, message } => {
            format!("{function}(): {message}")
        }
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("expected {expected} arguments, got {actual}")
        }
        other => other.to_string(),
    }
}

/// The CEL name of a value's type, for messages.
pub(super) fn type_name(value: &Cel) -> &'static str {
    match value {
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Function(..) => "function",
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::Bool(_) => "bool",
        Cel::Duration(_) => "duration",
        Cel::Timestamp(_) => "timestamp",
        Cel::Opaque(_) => "opaque value",
        Cel::Struct(_) => "struct",
        Cel::Null => "null",
    }
}

/// `a string`, `an int`; `null` stays bare.
pub(super) fn with_article(name: &str) -> String {
    match name.chars().next() {
        _ if name == "null" => name.to_owned(),
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {name}"),
        _ => format!("a {name}"),
    }
}

/// A scalar as CEL writes it (`3`, `3u`, `2.5`, `"a"`); other values by
/// their type.
pub(super) fn show(value: &Cel) -> String {
    match value {
        Cel::Int(i) => i.to_string(),
        Cel::UInt(u) => format!("{u}u"),
        Cel::Float(f) if f.is_nan() => "NaN".to_owned(),
        Cel::Float(f) if f.is_infinite() => {
            if *f > 0.0 { "+infinity" } else { "-infinity" }.to_owned()
        }
        Cel::Float(f) => format!("{f:?}"),
        Cel::String(s) => format!("{:?}", s.as_str()),
        Cel::Bool(b) => b.to_string(),
        other => type_name(other).to_owned(),
    }
}

/// The symbol of an operator, from its name in the crate's arithmetic
/// errors (`mul`) or its CEL function name (`_*_`); other names unchanged.
pub(super) fn operator_symbol(name: &str) -> &str {
    match name {
        "add" | "_+_" => "+",
        "sub" | "_-_" | "-_" => "-",
        "mul" | "_*_" => "*",
        "div" | "_/_" => "/",
        "rem" | "_%_" => "%",
        "_<_" => "<",
        "_<=_" => "<=",
        "_>_" => ">",
        "_>=_" => ">=",
        "_==_" => "==",
        "_!=_" => "!=",
        "!_" => "!",
        "@in" => "in",
        "_[_]" => "[]",
        "_._" => ".",
        other => other,
    }
}

/// `unsupported operation: int * double (write double(x) to convert)`.
pub(super) fn operation(symbol: &str, types: &[&str]) -> String {
    let written = match (symbol, types) {
        ("[]", [target, index]) => {
            return format!("cannot index {} with {index}", with_article(target));
        }
        (".", [target, ..]) => return format!("cannot select a field of {}", with_article(target)),
        (_, [operand]) => format!("{symbol}{operand}"),
        (_, [left, right]) => format!("{left} {symbol} {right}"),
        _ => format!("{symbol}({})", types.join(", ")),
    };
    let hint = match types {
        ["int" | "uint", "double"] | ["double", "int" | "uint"] => " (write double(x) to convert)",
        ["int", "uint"] | ["uint", "int"] => " (write int(x) or uint(x) to convert)",
        _ => "",
    };
    format!("unsupported operation: {written}{hint}")
}
