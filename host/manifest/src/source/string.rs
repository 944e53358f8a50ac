//! Where each character of a string value was written, so that a position
//! inside the string (an error inside an expression) can be shown as a
//! position in the manifest.
//!
//! A string is decoded from its literal as written: TOML's basic (`"…"`),
//! literal (`'…'`), multi-line basic (`"""…"""`) and multi-line literal
//! (`'''…'''`) strings, and JSON strings (TOML basic strings plus the `\/`
//! escape and UTF-16 surrogate pairs). Each decoded character maps to where
//! its source starts: an escape maps to its backslash; the newline right
//! after a multi-line string's opening delimiter, and a line-ending
//! backslash with the whitespace after it, map to nothing (they are not in
//! the value).

/// A decoded string literal: its value, and for each of its characters,
/// plus one past the last (the closing delimiter), the byte offset within
/// the literal where that character's source starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub value: String,
    pub offsets: Vec<usize>,
}

/// Decodes the string literal `raw` (delimiters included). `None` when
/// `raw` is not a string literal of a form listed in the module's
/// documentation or has an escape this does not know.
pub(crate) fn decode(raw: &str) -> Option<Decoded> {
    let (delimiter, escapes, multiline) = if raw.starts_with("\"\"\"") {
        ("\"\"\"", true, true)
    } else if raw.starts_with("'''") {
        ("'''", false, true)
    } else if raw.starts_with('"') {
        ("\"", true, false)
    } else if raw.starts_with('\'') {
        ("'", false, false)
    } else {
        return None;
    };
    let end = raw.len().checked_sub(delimiter.len())?;
    if end < delimiter.len() || !raw[end..].starts_with(delimiter) {
        return None;
    }
    let mut start = delimiter.len();
    if multiline {
        // A newline right after the opening delimiter is trimmed.
        if raw[start..end].starts_with("\r\n") {
            start += 2;
        } else if raw[start..end].starts_with('\n') {
            start += 1;
        }
    }

    let body = &raw[start..end];
    let mut value = String::with_capacity(body.len());
    let mut offsets = Vec::with_capacity(body.len() + 1);
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = start + i;
        match c {
            '\r' if multiline && chars.peek().is_some_and(|&(_, n)| n == '\n') => {
                // TOML parsers read a CRLF as one newline.
                chars.next();
                value.push('\n');
                offsets.push(at);
            }
            '\\' if escapes => {
                let (_, kind) = chars.next()?;
                let decoded = match kind {
                    'b' => '\u{8}',
                    't' => '\t',
                    'n' => '\n',
                    'f' => '\u{c}',
                    'r' => '\r',
                    'e' => '\u{1b}',
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'x' => char::from_u32(hex(&mut chars, 2)?)?,
                    'U' => char::from_u32(hex(&mut chars, 8)?)?,
                    'u' => {
                        let unit = hex(&mut chars, 4)?;
                        if (0xD800..0xDC00).contains(&unit) {
                            // A JSON surrogate pair: `\uD83D\uDE00`.
                            let (_, '\\') = chars.next()? else {
                                return None;
                            };
                            let (_, 'u') = chars.next()? else {
                                return None;
                            };
                            let low = hex(&mut chars, 4)?;
                            if !(0xDC00..0xE000).contains(&low) {
                                return None;
                            }
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                        } else {
                            char::from_u32(unit)?
                        }
                    }
                    ' ' | '\t' | '\r' | '\n' if multiline => {
                        // A line-ending backslash: it and all whitespace up to
                        // the next other character are trimmed.
                        while chars.peek().is_some_and(|&(_, n)| n.is_whitespace()) {
                            chars.next();
                        }
                        continue;
                    }
                    _ => return None,
                };
                value.push(decoded);
                offsets.push(at);
            }
            c => {
                value.push(c);
                offsets.push(at);
            }
        }
    }
    offsets.push(end);
    Some(Decoded { value, offsets })
}

/// Reads `digits` hexadecimal digits.
fn hex(chars: &mut impl Iterator<Item = (usize, char)>, digits: usize) -> Option<u32> {
    let mut n = 0u32;
    for _ in 0..digits {
        let (_, c) = chars.next()?;
        n = n.checked_mul(16)? + c.to_digit(16)?;
    }
    Some(n)
}

impl Decoded {
    /// The byte offset within the literal of the 1-based `line` and
    /// `column` (in characters) of the value. A column past the end of its
    /// line is the line's end; a line past the last is the value's end.
    pub(crate) fn offset_of(&self, line: usize, column: usize) -> usize {
        let mut current = 1;
        let mut line_start = 0;
        let chars: Vec<char> = self.value.chars().collect();
        for (index, &c) in chars.iter().enumerate() {
            if current == line {
                break;
            }
            if c == '\n' {
                current += 1;
                line_start = index + 1;
            }
        }
        if current != line {
            return self.offsets[chars.len()];
        }
        let line_end = chars[line_start..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(chars.len(), |n| line_start + n);
        let index = (line_start + column.saturating_sub(1)).min(line_end);
        self.offsets[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(raw: &str) -> (String, Vec<usize>) {
        let decoded = decode(raw).unwrap_or_else(|| panic!("{raw:?} does not decode"));
        (decoded.value, decoded.offsets)
    }

    #[test]
    fn plain_strings() {
        assert_eq!(offsets(r#""a b""#), ("a b".into(), vec![1, 2, 3, 4]));
        assert_eq!(offsets("'a\\n'"), ("a\\n".into(), vec![1, 2, 3, 4]));
        assert_eq!(offsets(r#""""#), (String::new(), vec![1]));
        assert_eq!(offsets("'é!'"), ("é!".into(), vec![1, 3, 4]));
    }

    #[test]
    fn escapes_map_to_their_backslash() {
        assert_eq!(
            offsets(r#""a\"b\\c""#),
            ("a\"b\\c".into(), vec![1, 2, 4, 5, 7, 8])
        );
        assert_eq!(offsets(r#""\u00e9x""#), ("éx".into(), vec![1, 7, 8]));
        assert_eq!(offsets(r#""\U0001F600x""#), ("😀x".into(), vec![1, 11, 12]));
        assert_eq!(
            offsets(r#""\ud83d\ude00x""#),
            ("😀x".into(), vec![1, 13, 14])
        );
        assert_eq!(offsets(r#""\/\t""#), ("/\t".into(), vec![1, 3, 5]));
        assert_eq!(decode(r#""\q""#), None);
        assert_eq!(decode(r#""\ud83dx""#), None);
    }

    #[test]
    fn multi_line_strings() {
        // The newline after the delimiter is not in the value.
        assert_eq!(
            offsets("'''\nab\ncd'''"),
            ("ab\ncd".into(), vec![4, 5, 6, 7, 8, 9])
        );
        assert_eq!(
            offsets("\"\"\"\r\na\r\nb\"\"\""),
            ("a\nb".into(), vec![5, 6, 8, 9])
        );
        // A line-ending backslash trims up to the next character.
        assert_eq!(
            offsets("\"\"\"a \\\n   b\"\"\""),
            ("a b".into(), vec![3, 4, 10, 11])
        );
    }

    #[test]
    fn not_literals() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("\"abc"), None);
        assert_eq!(decode("\""), None);
        assert_eq!(decode("'''"), None);
    }

    #[test]
    fn lines_and_columns_to_offsets() {
        let decoded = decode("'''\nab\ncd'''").unwrap();
        assert_eq!(decoded.offset_of(1, 1), 4);
        assert_eq!(decoded.offset_of(1, 2), 5);
        assert_eq!(decoded.offset_of(1, 9), 6);
        assert_eq!(decoded.offset_of(2, 2), 8);
        assert_eq!(decoded.offset_of(2, 3), 9);
        assert_eq!(decoded.offset_of(3, 1), 9);
    }
}
