//! `.slugignore`: paths deleted from the source before any buildpack runs.
//!
//! Heroku reads only the top-level file, with roughly `.gitignore` syntax minus `!` negation:
//! one pattern per line, `#` comments, `*`, `?`, `[...]` and `**` globs, a trailing `/` for
//! directories only, and a pattern containing a `/` anchored at the app's root (otherwise it
//! matches a name at any depth).

use std::io;
use std::path::Path;

/// One `.slugignore` line.
#[derive(Debug)]
struct Pattern {
    glob: Vec<u8>,
    anchored: bool,
    dir_only: bool,
}

/// The patterns of one `.slugignore` file.
#[derive(Debug, Default)]
pub(crate) struct SlugIgnore {
    patterns: Vec<Pattern>,
}

impl SlugIgnore {
    /// Parses the file's text; blank lines, comments and `!` lines (unsupported) are skipped.
    pub(crate) fn parse(text: &str) -> SlugIgnore {
        let patterns = text
            .lines()
            .filter_map(|line| {
                let line = line.trim_end_matches(['\r', ' ', '\t']).trim_start();
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    return None;
                }
                let (line, dir_only) = match line.strip_suffix('/') {
                    Some(rest) => (rest, true),
                    None => (line, false),
                };
                let anchored = line.contains('/');
                let line = line.trim_start_matches('/');
                if line.is_empty() {
                    return None;
                }
                Some(Pattern {
                    glob: line.as_bytes().to_vec(),
                    anchored,
                    dir_only,
                })
            })
            .collect();
        SlugIgnore { patterns }
    }

    fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a `/`-separated path relative to the app root) is ignored.
    fn matches(&self, rel: &str, is_dir: bool) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.patterns.iter().any(|p| {
            if p.dir_only && !is_dir {
                return false;
            }
            if p.anchored {
                glob_match(&p.glob, rel.as_bytes())
            } else {
                glob_match(&p.glob, name.as_bytes())
            }
        })
    }

    /// Deletes every match under `root` (without following symlinks); returns how many files and
    /// directories were deleted.
    pub(crate) fn apply(&self, root: &Path) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        self.apply_in(root, "")
    }

    fn apply_in(&self, dir: &Path, prefix: &str) -> io::Result<usize> {
        let mut deleted = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type()?;
            let path = entry.path();
            if self.matches(&rel, file_type.is_dir()) {
                if file_type.is_dir() {
                    crate::fsutil::force_remove_dir(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
                deleted += 1;
            } else if file_type.is_dir() {
                deleted += self.apply_in(&path, &rel)?;
            }
        }
        Ok(deleted)
    }
}

/// Glob match where `*` and `?` stop at `/`, `**` crosses it, and `[...]` is a class
/// (`[!...]` or `[^...]` negated, `a-z` ranges).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    glob_at(pattern, text, &mut std::collections::HashSet::new())
}

/// [`glob_match`], remembering the (pattern, text) suffixes that failed: without that, stars
/// try every split again and again (`*a*a*a*a*b` against a long name of `a`s would run for
/// ages); with it each pair is tried once.
fn glob_at(
    pattern: &[u8],
    text: &[u8],
    failed: &mut std::collections::HashSet<(usize, usize)>,
) -> bool {
    let key = (pattern.len(), text.len());
    if failed.contains(&key) {
        return false;
    }
    let matched = glob_step(pattern, text, failed);
    if !matched {
        failed.insert(key);
    }
    matched
}

fn glob_step(
    pattern: &[u8],
    text: &[u8],
    failed: &mut std::collections::HashSet<(usize, usize)>,
) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') if pattern.get(1) == Some(&b'*') => {
            let mut rest = &pattern[2..];
            // `**/x` also matches `x` at this level.
            if let Some(after) = rest.strip_prefix(b"/") {
                if glob_at(after, text, failed) {
                    return true;
                }
                rest = after;
                return (0..text.len())
                    .filter(|&i| text[i] == b'/')
                    .any(|i| glob_at(rest, &text[i + 1..], failed));
            }
            (0..=text.len()).any(|i| glob_at(rest, &text[i..], failed))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            for i in 0..=text.len() {
                if glob_at(rest, &text[i..], failed) {
                    return true;
                }
                if text.get(i) == Some(&b'/') {
                    break;
                }
            }
            false
        }
        Some(b'?') => {
            matches!(text.first(), Some(c) if *c != b'/')
                && glob_at(&pattern[1..], &text[1..], failed)
        }
        Some(b'[') => match class_match(&pattern[1..], text.first().copied()) {
            Some((true, used)) => glob_at(&pattern[1 + used..], &text[1..], failed),
            Some((false, _)) => false,
            // An unclosed `[` is a literal.
            None => text.first() == Some(&b'[') && glob_at(&pattern[1..], &text[1..], failed),
        },
        Some(b'\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && glob_at(&pattern[2..], &text[1..], failed)
        }
        Some(c) => text.first() == Some(c) && glob_at(&pattern[1..], &text[1..], failed),
    }
}

/// Matches `c` against a class body (after `[`); returns (matched, bytes used incl. `]`).
fn class_match(body: &[u8], c: Option<u8>) -> Option<(bool, usize)> {
    let (negated, mut i) = match body.first() {
        Some(b'!') | Some(b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < body.len() {
        let b = body[i];
        if b == b']' && !first {
            let ok = c.is_some_and(|c| c != b'/') && (matched != negated);
            return Some((ok, i + 1));
        }
        first = false;
        if i + 2 < body.len() && body[i + 1] == b'-' && body[i + 2] != b']' {
            if let Some(c) = c {
                if b <= c && c <= body[i + 2] {
                    matched = true;
                }
            }
            i += 3;
        } else {
            if c == Some(b) {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.psd", b"logo.psd"));
        // Many stars against a long name that almost matches: each split is tried once, so
        // this answers at once instead of after ~10^20 steps.
        let name = vec![b'a'; 250];
        let started = std::time::Instant::now();
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(!glob_match(b"**a**a**a**a**a**a**a**a**a**b", &name));
        assert!(glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a*", &name));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(!glob_match(b"*.psd", b"art/logo.psd"));
        assert!(glob_match(b"doc?", b"docs"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[!a-c]x", b"bx"));
        assert!(glob_match(b"**/tmp", b"a/b/tmp"));
        assert!(glob_match(b"**/tmp", b"tmp"));
        assert!(glob_match(b"a/**", b"a/b/c"));
        assert!(glob_match(b"a/**/z", b"a/z"));
        assert!(glob_match(b"a/**/z", b"a/b/c/z"));
        assert!(!glob_match(b"a/*/z", b"a/b/c/z"));
    }

    #[test]
    fn anchoring_and_dir_only() {
        let ignore = SlugIgnore::parse("# c\n*.psd\n/docs\nspec/fixtures\nlog/\n!keep\n\n");
        assert!(ignore.matches("a/b/x.psd", false));
        assert!(ignore.matches("docs", true));
        assert!(!ignore.matches("src/docs", true));
        assert!(ignore.matches("spec/fixtures", true));
        assert!(!ignore.matches("x/spec/fixtures", true));
        assert!(ignore.matches("a/log", true));
        assert!(!ignore.matches("a/log", false));
        assert!(!ignore.matches("keep", false));
    }

    #[test]
    fn apply_deletes_matches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("docs/deep")).unwrap();
        std::fs::write(root.join("docs/deep/a.txt"), "x").unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/big.psd"), "x").unwrap();
        std::fs::write(root.join("src/app.py"), "x").unwrap();
        let ignore = SlugIgnore::parse("docs\n*.psd\n");
        assert_eq!(ignore.apply(root).unwrap(), 2);
        assert!(!root.join("docs").exists());
        assert!(!root.join("src/big.psd").exists());
        assert!(root.join("src/app.py").exists());
    }
}
