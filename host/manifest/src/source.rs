//! Where things are in a manifest's text.
//!
//! A [`SourceMap`] is built from the parsed document before it is deserialized
//! into the typed model: it maps every field path (`steps.charge.component`,
//! `flow[2].parallel[0].step`) to the byte spans of its key and value, and byte
//! offsets to line:column. Deserialization errors carry a span (TOML) or a
//! line:column (JSON); the map turns either back into the field path, so
//! every message can name the field it is about.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::Location;

mod string;

/// One field (or array element) of the document.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The field path, e.g. `flow[1].step` (empty for the document itself).
    pub path: String,
    /// The path of the table or array holding it.
    pub parent: String,
    /// The key's span, for table entries.
    pub key: Option<Range<usize>>,
    /// The value's span. For TOML tables opened by a `[header]`, the header's span.
    pub value: Range<usize>,
}

/// Field paths and byte offsets of one manifest text.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap {
    text: String,
    line_starts: Vec<usize>,
    /// Every field, parents before children (pre-order).
    entries: Vec<Entry>,
    by_path: HashMap<String, usize>,
}

/// The path of `key` inside the table at `parent`.
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl SourceMap {
    /// A map of `text` without fields (enough for [`SourceMap::location`]).
    pub(crate) fn new(text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            text: text.to_owned(),
            line_starts,
            entries: Vec::new(),
            by_path: HashMap::new(),
        }
    }

    /// The text the map is of.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Indexes a parsed TOML document.
    pub(crate) fn from_toml(text: &str, root: &Spanned<DeTable<'_>>) -> Self {
        let mut map = Self::new(text);
        map.push(String::new(), String::new(), None, root.span());
        map.index_toml_table(root.get_ref(), "");
        map
    }

    /// Indexes a JSON document. `text` must be valid JSON (checked by the
    /// caller); on anything unexpected the scan stops, leaving fewer entries.
    pub(crate) fn from_json(text: &str) -> Self {
        let mut map = Self::new(text);
        let mut scanner = JsonScanner {
            bytes: text.as_bytes(),
            text,
            pos: 0,
            map: &mut map,
        };
        scanner.value(String::new(), String::new(), None);
        map
    }

    fn push(
        &mut self,
        path: String,
        parent: String,
        key: Option<Range<usize>>,
        value: Range<usize>,
    ) -> usize {
        let index = self.entries.len();
        // The first occurrence wins; TOML and serde reject duplicate keys anyway.
        self.by_path.entry(path.clone()).or_insert(index);
        self.entries.push(Entry {
            path,
            parent,
            key,
            value,
        });
        index
    }

    fn index_toml_table(&mut self, table: &DeTable<'_>, path: &str) {
        for (key, value) in table.iter() {
            let child = child_path(path, key.get_ref());
            self.index_toml_value(child, path.to_owned(), Some(key.span()), value);
        }
    }

    fn index_toml_value(
        &mut self,
        path: String,
        parent: String,
        key: Option<Range<usize>>,
        value: &Spanned<DeValue<'_>>,
    ) {
        self.push(path.clone(), parent, key, value.span());
        match value.get_ref() {
            DeValue::Table(table) => self.index_toml_table(table, &path),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    self.index_toml_value(format!("{path}[{i}]"), path.clone(), None, item);
                }
            }
            _ => {}
        }
    }

    /// The line:column of byte `offset`.
    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Location {
            line: line + 1,
            column: column + 1,
        }
    }

    /// The byte offset of a 1-based line and byte column (as serde_json counts).
    pub(crate) fn offset(&self, line: usize, column: usize) -> usize {
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        (start + column.saturating_sub(1)).min(self.text.len())
    }

    /// The entry of a field path.
    pub(crate) fn get(&self, path: &str) -> Option<&Entry> {
        self.by_path.get(path).map(|&i| &self.entries[i])
    }

    /// Where the value of `path` starts.
    pub(crate) fn locate(&self, path: &str) -> Option<Location> {
        self.get(path).map(|e| self.location(e.value.start))
    }

    /// Where a position inside a string value is: the 1-based `line` and
    /// `column` (in characters) of the string `value` at `path`. `None` when
    /// the manifest does not write that field as a string literal holding
    /// `value` (see [`string::decode`] for the literals understood and how
    /// escapes and multi-line strings are mapped).
    pub(crate) fn locate_in_string(
        &self,
        path: &str,
        value: &str,
        line: usize,
        column: usize,
    ) -> Option<Location> {
        let span = &self.get(path)?.value;
        let decoded = string::decode(self.text.get(span.clone())?)?;
        (decoded.value == value)
            .then(|| self.location(span.start + decoded.offset_of(line, column)))
    }

    /// Where the key of `path` starts (its value for array elements).
    pub(crate) fn locate_key(&self, path: &str) -> Option<Location> {
        self.get(path)
            .map(|e| self.location(e.key.as_ref().unwrap_or(&e.value).start))
    }

    /// Byte offset of the key of `path`, for ordering keys as written.
    pub(crate) fn key_offset(&self, path: &str) -> Option<usize> {
        self.get(path)
            .map(|e| e.key.as_ref().unwrap_or(&e.value).start)
    }

    /// The entry a TOML error span is about, and whether the span is its key.
    /// Errors about a key (unknown field) carry the key's span; errors about
    /// a value carry the value's span; errors about a table (missing field)
    /// carry the table's span.
    pub(crate) fn entry_at_span(&self, span: &Range<usize>) -> Option<(&Entry, bool)> {
        if let Some(e) = self.entries.iter().find(|e| e.key.as_ref() == Some(span)) {
            return Some((e, true));
        }
        // Several entries can share a span (`[[flow]]` is the span of both `flow`
        // and `flow[0]`); the last one is the deepest.
        if let Some(e) = self.entries.iter().rev().find(|e| e.value == *span) {
            return Some((e, false));
        }
        self.entry_at_offset(span.start)
    }

    /// The deepest entry whose key or value contains byte `offset`.
    pub(crate) fn entry_at_offset(&self, offset: usize) -> Option<(&Entry, bool)> {
        let contains = |r: &Range<usize>| r.start <= offset && offset < r.end;
        self.entries
            .iter()
            .rev()
            .filter(|e| !e.path.is_empty())
            .find(|e| {
                let start = e
                    .key
                    .as_ref()
                    .map_or(e.value.start, |k| k.start.min(e.value.start));
                contains(&(start..e.value.end.max(start + 1)))
            })
            .map(|e| (e, e.key.as_ref().is_some_and(contains)))
    }
}

/// Records the spans of a JSON document already known to be valid.
struct JsonScanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
    map: &'a mut SourceMap,
}

impl JsonScanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Scans one value and records it (and its children). Returns `false` when
    /// the text is not what valid JSON would be, so the caller stops.
    fn value(&mut self, path: String, parent: String, key: Option<Range<usize>>) -> bool {
        self.skip_whitespace();
        let start = self.pos;
        let index = self.map.push(path.clone(), parent, key, start..start);
        let ok = match self.peek() {
            Some(b'{') => self.object(&path),
            Some(b'[') => self.array(&path),
            Some(b'"') => self.string(),
            Some(_) => {
                while matches!(self.peek(), Some(c) if !matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.pos += 1;
                }
                self.pos > start
            }
            None => false,
        };
        self.map.entries[index].value.end = self.pos;
        ok
    }

    fn object(&mut self, path: &str) -> bool {
        self.pos += 1;
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return true;
                }
                Some(b',') => self.pos += 1,
                Some(b'"') => {
                    let key_start = self.pos;
                    if !self.string() {
                        return false;
                    }
                    let key = key_start..self.pos;
                    let name: String =
                        serde_json::from_str(&self.text[key.clone()]).unwrap_or_default();
                    self.skip_whitespace();
                    if self.peek() != Some(b':') {
                        return false;
                    }
                    self.pos += 1;
                    if !self.value(child_path(path, &name), path.to_owned(), Some(key)) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }

    fn array(&mut self, path: &str) -> bool {
        self.pos += 1;
        let mut index = 0;
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return true;
                }
                Some(b',') => self.pos += 1,
                Some(_) => {
                    if !self.value(format!("{path}[{index}]"), path.to_owned(), None) {
                        return false;
                    }
                    index += 1;
                }
                None => return false,
            }
        }
    }

    fn string(&mut self) -> bool {
        self.pos += 1;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'\\' => self.pos += 1,
                b'"' => return true,
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_paths_and_locations() {
        let text = "id = \"x\"\nflow = [\n  { step = \"a\" },\n]\n[steps.a]\ncomponent = \"c\"\n[[more]]\nk = 1\n";
        let root = DeTable::parse(text).unwrap();
        let map = SourceMap::from_toml(text, &root);
        assert_eq!(map.locate("id"), Some(Location { line: 1, column: 6 }));
        assert_eq!(map.locate("flow[0]"), Some(Location { line: 3, column: 3 }));
        assert_eq!(
            map.locate("flow[0].step"),
            Some(Location {
                line: 3,
                column: 12
            })
        );
        assert_eq!(
            map.locate_key("flow[0].step"),
            Some(Location { line: 3, column: 5 })
        );
        assert_eq!(map.locate("steps.a"), Some(Location { line: 5, column: 1 }));
        assert_eq!(
            map.locate("steps.a.component"),
            Some(Location {
                line: 6,
                column: 13
            })
        );
        assert_eq!(
            map.locate("more[0].k"),
            Some(Location { line: 8, column: 5 })
        );
        assert_eq!(map.locate("nope"), None);
    }

    #[test]
    fn nested_arrays_of_tables_use_the_core_paths() {
        let text = "[[flow]]\nstep = \"a\"\n[[flow]]\n[[flow.parallel]]\nstep = \"b\"\n[[flow.parallel]]\nstep = \"c\"\n";
        let root = DeTable::parse(text).unwrap();
        let map = SourceMap::from_toml(text, &root);
        assert_eq!(map.locate("flow[1]"), Some(Location { line: 3, column: 1 }));
        assert_eq!(
            map.locate("flow[1].parallel[1]"),
            Some(Location { line: 6, column: 1 })
        );
        assert_eq!(
            map.locate("flow[1].parallel[1].step"),
            Some(Location { line: 7, column: 8 })
        );
    }

    #[test]
    fn json_paths_and_locations() {
        let text = "{\n  \"id\": \"x\",\n  \"flow\": [{\"step\": \"a\"}, {\"st\\\"ep\": [1, {\"k\": null}]}]\n}";
        let map = SourceMap::from_json(text);
        assert_eq!(map.locate("id"), Some(Location { line: 2, column: 9 }));
        assert_eq!(map.locate_key("id"), Some(Location { line: 2, column: 3 }));
        assert_eq!(
            map.locate("flow[0].step"),
            Some(Location {
                line: 3,
                column: 21
            })
        );
        assert_eq!(
            map.locate("flow[1].st\"ep[1].k"),
            Some(Location {
                line: 3,
                column: 48
            })
        );
        // serde_json reports an unknown field at the key's closing quote.
        let (entry, is_key) = map.entry_at_offset(map.offset(2, 6)).unwrap();
        assert_eq!((entry.path.as_str(), is_key), ("id", true));
        let (entry, is_key) = map.entry_at_offset(map.offset(3, 22)).unwrap();
        assert_eq!((entry.path.as_str(), is_key), ("flow[0].step", false));
    }

    #[test]
    fn columns_count_characters() {
        let map = SourceMap::new("é = 1\nab");
        assert_eq!(map.location(4), Location { line: 1, column: 4 });
        assert_eq!(map.location(7), Location { line: 2, column: 1 });
        assert_eq!(map.location(8), Location { line: 2, column: 2 });
        assert_eq!(map.location(99), Location { line: 2, column: 3 });
    }
}
