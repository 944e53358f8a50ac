//! The variables an expression reads, and where.

use cel::common::ast::{EntryExpr, Expr as Ast, IdedEntryExpr, IdedExpr};

use super::env;

/// Collects the variables `expr` reads that are not bound by an enclosing
/// macro (`bound`), with the id of their first occurrence, in the order met
/// (which is the text's order for all but the rarest nestings).
pub(super) fn free_variables(
    expr: &IdedExpr,
    bound: &mut Vec<String>,
    out: &mut Vec<(String, u64)>,
) {
    match &expr.expr {
        Ast::Unspecified | Ast::Literal(_) => {}
        Ast::Ident(name) => {
            // Names starting with `@` are the macros' own accumulators;
            // type names (`int`, `string`) resolve to types.
            let is_type = env().types().find_type(name).is_some();
            if !name.starts_with('@')
                && !is_type
                && !bound.contains(name)
                && !out.iter().any(|(n, _)| n == name)
            {
                out.push((name.clone(), expr.id));
            }
        }
        Ast::Select(select) => free_variables(&select.operand, bound, out),
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Ast::List(list) => {
            for element in &list.elements {
                free_variables(element, bound, out);
            }
        }
        Ast::Map(map) => entries(&map.entries, bound, out),
        Ast::Struct(structure) => entries(&structure.entries, bound, out),
        Ast::Comprehension(comprehension) => {
            // The range and the accumulator's start are outside the macro's
            // scope; its condition, step and result see its variables.
            free_variables(&comprehension.iter_range, bound, out);
            free_variables(&comprehension.accu_init, bound, out);
            let depth = bound.len();
            bound.push(comprehension.iter_var.clone());
            bound.extend(comprehension.iter_var2.clone());
            bound.push(comprehension.accu_var.clone());
            free_variables(&comprehension.loop_cond, bound, out);
            free_variables(&comprehension.loop_step, bound, out);
            free_variables(&comprehension.result, bound, out);
            bound.truncate(depth);
        }
    }
}

pub(super) fn entries(
    entries: &[IdedEntryExpr],
    bound: &mut Vec<String>,
    out: &mut Vec<(String, u64)>,
) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::StructField(field) => free_variables(&field.value, bound, out),
            EntryExpr::MapEntry(entry) => {
                free_variables(&entry.key, bound, out);
                free_variables(&entry.value, bound, out);
            }
        }
    }
}

/// Whether `name` is written at character offset `offset` of `text`.
pub(super) fn identifier_at(text: &str, offset: usize, name: &str) -> bool {
    text.char_indices()
        .nth(offset)
        .is_some_and(|(byte, _)| text[byte..].starts_with(name))
}

/// The character offset of the first identifier token `name` in `text` that
/// is not a field (not preceded by `.`), outside string literals.
pub(super) fn find_identifier(text: &str, name: &str) -> Option<usize> {
    let chars: Vec<char> = text.chars().collect();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    let mut previous: Option<char> = None;
    // Whether the literal about to start has an `r` prefix (no escapes).
    let mut raw = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let triple = chars.get(i..i + 3) == Some(&[c, c, c]);
            let quote_len = if triple { 3 } else { 1 };
            i += quote_len;
            while i < chars.len() {
                if chars[i] == '\\' && !raw {
                    i += 2;
                    continue;
                }
                if chars[i] == c && (!triple || chars.get(i..i + 3) == Some(&[c, c, c])) {
                    i += quote_len;
                    break;
                }
                i += 1;
            }
            previous = Some(c);
            raw = false;
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // A word right before a quote is a literal's prefix (`r`, `b`, `rb`).
            if matches!(chars.get(i), Some('"' | '\'')) {
                raw = word.contains(['r', 'R']);
            } else if word == name && previous != Some('.') {
                return Some(start);
            }
            previous = Some(c);
        } else {
            if !c.is_whitespace() {
                previous = Some(c);
            }
            i += 1;
        }
    }
    None
}

/// The 1-based line and column (in characters) of character offset `offset`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for c in text.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}
