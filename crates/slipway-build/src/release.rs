//! Reads `default_process_types` from a buildpack's `bin/release` output.
//!
//! The output is a small YAML hash. Rather than a YAML library, this reads the subset buildpacks
//! print: top-level `key:` lines, a block mapping of `type: command` lines indented under
//! `default_process_types:`, or a flow mapping (`{}`, `{web: npm start}`) on the same line;
//! plain, single- and double-quoted scalars; `#` comments; `---` and `...` markers. Anything else
//! is skipped rather than failing the build, and empty output reads as no types (Heroku: `{}`).

use std::collections::BTreeMap;

/// The process types declared under `default_process_types`.
pub(crate) fn default_process_types(output: &str) -> BTreeMap<String, String> {
    let text = output.replace("\r\n", "\n");
    let mut types = BTreeMap::new();
    let mut in_block = false;
    let mut block_indent: Option<usize> = None;
    for line in text.lines() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 {
            in_block = false;
            block_indent = None;
            let mut content = content;
            if content.starts_with("---") || content.starts_with("...") {
                content = content[3..].trim_start();
                if content.is_empty() || content.starts_with('#') {
                    continue;
                }
                // `--- {default_process_types: {...}}` is a whole document on one line.
                if content.starts_with('{') {
                    if let Some(inner) = parse_flow_mapping_raw(content) {
                        for (key, value) in inner {
                            if key == "default_process_types" {
                                extend_flow(&mut types, &value);
                            }
                        }
                    }
                    continue;
                }
            }
            let Some((key, value)) = split_key_value(content) else {
                continue;
            };
            if key != "default_process_types" {
                continue;
            }
            if value.is_empty() {
                in_block = true;
            } else if value.starts_with('{') {
                extend_flow(&mut types, value);
            }
            continue;
        }
        if !in_block {
            continue;
        }
        // Deeper lines than the block's own belong to a value we don't read.
        match block_indent {
            None => block_indent = Some(indent),
            Some(expected) if indent > expected => continue,
            Some(_) => {}
        }
        if let Some((key, value)) = split_key_value(content) {
            if let Some(command) = scalar(value) {
                if !key.is_empty() && !command.is_empty() {
                    types.insert(key, command);
                }
            }
        }
    }
    types
}

/// Adds the entries of a flow mapping such as `{web: "npm start", worker: node w.js}`.
fn extend_flow(types: &mut BTreeMap<String, String>, text: &str) {
    if let Some(entries) = parse_flow_mapping_raw(text) {
        for (key, value) in entries {
            if let Some(command) = scalar(&value) {
                if !key.is_empty() && !command.is_empty() {
                    types.insert(key, command);
                }
            }
        }
    }
}

/// Splits `key: value` (the key plain or quoted); the value is returned raw, trimmed.
fn split_key_value(line: &str) -> Option<(String, &str)> {
    let (key, rest) = if line.starts_with('"') || line.starts_with('\'') {
        let (key, used) = quoted(line)?;
        (key, line[used..].trim_start())
    } else {
        let colon = find_key_colon(line)?;
        (line[..colon].trim_end().to_owned(), &line[colon..])
    };
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    Some((key, rest.trim()))
}

/// The first `:` followed by whitespace or the end of the line.
fn find_key_colon(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()))
}

/// A scalar value: quoted, or plain with any ` #` comment removed. `None` for what isn't a
/// single-line scalar (block scalars, nested collections, null).
fn scalar(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.starts_with('"') || raw.starts_with('\'') {
        return quoted(raw).map(|(value, _)| value);
    }
    if raw.is_empty() || raw.starts_with(['|', '>', '{', '[', '&', '*', '!']) {
        return None;
    }
    let plain = match raw.find(" #").or_else(|| raw.find("\t#")) {
        Some(at) => raw[..at].trim_end(),
        None => raw,
    };
    if plain == "~" || plain == "null" {
        return None;
    }
    Some(plain.to_owned())
}

/// Parses a quoted scalar at the start of `text`; returns it and the bytes it used.
fn quoted(text: &str) -> Option<(String, usize)> {
    let mut chars = text.char_indices();
    let (_, quote) = chars.next()?;
    let mut value = String::new();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            ('\'', '\'') => {
                if text[at + 1..].starts_with('\'') {
                    value.push('\'');
                    chars.next();
                } else {
                    return Some((value, at + 1));
                }
            }
            ('"', '"') => return Some((value, at + 1)),
            ('"', '\\') => {
                let (_, escaped) = chars.next()?;
                match escaped {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    '0' => value.push('\0'),
                    '/' => value.push('/'),
                    'u' | 'x' | 'U' => {
                        let len = match escaped {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..len)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        value.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    other => value.push(other),
                }
            }
            _ => value.push(c),
        }
    }
    None
}

/// Splits a one-line flow mapping `{a: b, "c": 'd'}` into raw key/value pairs, respecting quotes
/// and nested braces. `None` if it is not a closed mapping.
fn parse_flow_mapping_raw(text: &str) -> Option<Vec<(String, String)>> {
    let text = text.trim();
    let inner = text.strip_prefix('{')?;
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0usize;
    let mut end = None;
    let bytes: Vec<(usize, char)> = inner.char_indices().collect();
    let mut i = 0;
    while i < bytes.len() {
        let (at, c) = bytes[i];
        match quote {
            Some('"') if c == '\\' => i += 1,
            Some(q) if c == q => {
                // `''` inside single quotes is an escaped quote.
                if q == '\'' && bytes.get(i + 1).is_some_and(|&(_, n)| n == '\'') {
                    i += 1;
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '{' | '[' => depth += 1,
                '}' | ']' if depth > 0 => depth -= 1,
                '}' => {
                    push_flow_entry(&mut entries, &inner[start..at]);
                    end = Some(at);
                    break;
                }
                ',' if depth == 0 => {
                    push_flow_entry(&mut entries, &inner[start..at]);
                    start = at + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    end.map(|_| entries)
}

fn push_flow_entry(entries: &mut Vec<(String, String)>, entry: &str) {
    let entry = entry.trim();
    if entry.is_empty() {
        return;
    }
    if let Some((key, value)) = split_key_value(entry) {
        entries.push((key, value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn block_mapping() {
        let out = "---\naddons:\n  - heroku-postgresql\nconfig_vars:\n  FOO: bar\n\
                   default_process_types:\n  web: npm start\n  worker: \"node worker.js --x=1\"\n  \
                   console: 'echo ''hi'''   # a comment\n";
        assert_eq!(
            default_process_types(out),
            map(&[
                ("web", "npm start"),
                ("worker", "node worker.js --x=1"),
                ("console", "echo 'hi'"),
            ])
        );
    }

    #[test]
    fn empty_and_flow_forms() {
        assert!(default_process_types("").is_empty());
        assert!(default_process_types("---\n").is_empty());
        assert!(default_process_types("--- {}\n").is_empty());
        assert!(default_process_types("---\ndefault_process_types: {}\n").is_empty());
        assert_eq!(
            default_process_types("default_process_types: {web: npm start, worker: \"a, b\"}\n"),
            map(&[("web", "npm start"), ("worker", "a, b")])
        );
        assert_eq!(
            default_process_types("--- {default_process_types: {web: 'x y'}}\n"),
            map(&[("web", "x y")])
        );
    }

    #[test]
    fn json_style_escapes_and_dollar_signs() {
        let out = "default_process_types:\n  web: \"python3 -m http.server $PORT --directory 'my \\\"site\\\"' \\u00e9\"\n";
        assert_eq!(
            default_process_types(out),
            map(&[(
                "web",
                "python3 -m http.server $PORT --directory 'my \"site\"' \u{e9}"
            )])
        );
    }

    #[test]
    fn stops_at_next_top_level_key_and_skips_nested_values() {
        let out = "default_process_types:\n  web: bin/web\n  weird:\n    nested: x\n\
                   addons: []\n  stray: no\n";
        assert_eq!(default_process_types(out), map(&[("web", "bin/web")]));
    }

    #[test]
    fn windows_line_ends_and_junk_are_tolerated() {
        let out = "---\r\ndefault_process_types:\r\n  web: run\r\n  :::\r\n  novalue:\r\n";
        assert_eq!(default_process_types(out), map(&[("web", "run")]));
    }
}
