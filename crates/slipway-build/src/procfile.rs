//! The Procfile: Heroku's classic line format, and the merge with buildpack default types.
//!
//! Heroku's parser (codon `slug.rb`) matches `^\s*([a-zA-Z0-9_-]+):?\s+(.*)` per line and silently
//! drops lines that don't match. Slipway keeps the grammar (optional colon, last duplicate wins,
//! command = rest of the line) but reports a non-blank, non-comment line that doesn't match, and
//! a file without entries, because a silently dropped `web:python app.py` is a confusing deploy.

use std::collections::BTreeMap;

/// Longest process type name the Platform API accepts (`^[-\w]{1,128}$`).
const MAX_TYPE_LEN: usize = 128;

/// Parses a Procfile into process type → command.
///
/// Blank lines and lines whose first non-space character is `#` are skipped; `\r\n` and lone
/// `\r` count as line ends. Any other line must be `<type>: <command>` or `<type> <command>`
/// (whitespace after the name is required); the command is the rest of the line, trailing
/// whitespace removed. A later duplicate replaces an earlier one. The error names the first bad
/// line by number, or says the file declares nothing.
pub fn parse_procfile(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut types = BTreeMap::new();
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, command) =
            parse_line(line).map_err(|why| format!("line {number} (`{}`) {why}", shorten(line)))?;
        types.insert(name.to_owned(), command.to_owned());
    }
    if types.is_empty() {
        return Err("the Procfile declares no process types".to_owned());
    }
    Ok(types)
}

/// Splits one trimmed, non-comment line into name and command.
fn parse_line(line: &str) -> Result<(&str, &str), &'static str> {
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(line.len());
    if name_len == 0 {
        return Err("does not start with a process type name (letters, digits, `_` and `-`)");
    }
    if name_len > MAX_TYPE_LEN {
        return Err("has a process type name longer than 128 characters");
    }
    let (name, after) = line.split_at(name_len);
    let rest =
        match after.strip_prefix(':') {
            Some(rest) if !rest.is_empty() && !rest.starts_with(char::is_whitespace) => {
                return Err("needs a space between `<process type>:` and the command")
            }
            Some(rest) => rest,
            None if after.is_empty() || after.starts_with(char::is_whitespace) => after,
            None => return Err(
                "has a process type name with characters other than letters, digits, `_` and `-`",
            ),
        };
    let command = rest.trim();
    if command.is_empty() {
        return Err("has no command after the process type");
    }
    Ok((name, command))
}

/// Keeps error messages one short line.
fn shorten(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() <= MAX {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// Merges a Procfile's types over a buildpack's `default_process_types`: the Procfile wins type
/// by type, and default types the Procfile doesn't mention are kept.
pub fn merge_process_types(
    defaults: &BTreeMap<String, String>,
    procfile: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = defaults.clone();
    merged.extend(procfile.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
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
    fn parses_heroku_forms() {
        let text = "web: gunicorn app:app --bind 0.0.0.0:$PORT\n\
                    worker  python worker.py # not a comment\n\
                    \x20 release: ./migrate.sh && echo done   \n\
                    clock_2-x: sleep 1\n";
        assert_eq!(
            parse_procfile(text).unwrap(),
            map(&[
                ("web", "gunicorn app:app --bind 0.0.0.0:$PORT"),
                ("worker", "python worker.py # not a comment"),
                ("release", "./migrate.sh && echo done"),
                ("clock_2-x", "sleep 1"),
            ])
        );
    }

    #[test]
    fn skips_comments_blank_lines_and_normalises_line_ends() {
        let text = "# the app\r\n\r\nweb: python app.py\r\n   # indented comment\rworker: run\r";
        assert_eq!(
            parse_procfile(text).unwrap(),
            map(&[("web", "python app.py"), ("worker", "run")])
        );
    }

    #[test]
    fn last_duplicate_wins() {
        let text = "web: first\nweb: second\n";
        assert_eq!(parse_procfile(text).unwrap(), map(&[("web", "second")]));
    }

    #[test]
    fn keeps_case_and_inner_colons() {
        let text = "Web: env A=1:2 run\n";
        assert_eq!(
            parse_procfile(text).unwrap(),
            map(&[("Web", "env A=1:2 run")])
        );
    }

    #[test]
    fn malformed_lines_name_their_number() {
        let cases = [
            ("web: ok\nweb:python app.py\n", "line 2"),
            ("web: ok\n\nworker:\n", "line 3"),
            ("web: ok\n: cmd\n", "line 2"),
            ("&&&&&\n", "line 1"),
            ("# c\nweb.1: cmd\n", "line 2"),
            ("web:    \n", "line 1"),
        ];
        for (text, expected) in cases {
            let err = parse_procfile(text).unwrap_err();
            assert!(err.contains(expected), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn empty_or_comment_only_file_is_an_error() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let err = parse_procfile(text).unwrap_err();
            assert!(err.contains("no process types"), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn overlong_name_is_an_error() {
        let text = format!("{}: cmd\n", "a".repeat(129));
        assert!(parse_procfile(&text).unwrap_err().contains("128"));
        let text = format!("{}: cmd\n", "a".repeat(128));
        assert!(parse_procfile(&text).is_ok());
    }

    #[test]
    fn procfile_wins_type_by_type() {
        let defaults = map(&[("web", "npm start"), ("console", "node")]);
        let procfile = map(&[("web", "node server.js"), ("worker", "node worker.js")]);
        assert_eq!(
            merge_process_types(&defaults, &procfile),
            map(&[
                ("web", "node server.js"),
                ("console", "node"),
                ("worker", "node worker.js"),
            ])
        );
        assert_eq!(merge_process_types(&defaults, &BTreeMap::new()), defaults);
    }
}
