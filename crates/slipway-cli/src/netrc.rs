//! `~/.netrc` reading and editing. Entries are replaced in place of the text they occupied so
//! other machines, comments and layout survive a `login`/`logout`; the file is written 0600.

use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// One `machine` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub machine: String,
    pub login: Option<String>,
    pub password: Option<String>,
    /// Byte range of the entry in the file text, including its indentation and final newline.
    span: Range<usize>,
}

/// A parsed netrc file that keeps its original text.
#[derive(Debug, Clone, Default)]
pub struct Netrc {
    text: String,
    entries: Vec<Entry>,
}

struct Token<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

/// Splits netrc text into whitespace-separated tokens, skipping `#` comments and `macdef` bodies
/// (which run to the next blank line).
fn tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_macdef = false;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if bytes[i] == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let token = Token {
            text: &text[start..i],
            start,
            end: i,
        };
        let is_macdef = token.text == "macdef";
        out.push(token);
        if in_macdef {
            // The macro name has been read: skip the body up to the next blank line.
            in_macdef = false;
            match text[i..].find("\n\n") {
                Some(off) => i += off + 2,
                None => i = bytes.len(),
            }
            if let Some(last) = out.last_mut() {
                last.end = i.min(bytes.len());
            }
        } else if is_macdef {
            in_macdef = true;
        }
    }
    out
}

impl Netrc {
    /// Parses netrc text. Unknown keywords are kept as part of their entry; `default` entries are
    /// kept but never matched.
    pub fn parse(text: &str) -> Netrc {
        let toks = tokens(text);
        let mut entries = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let kw = toks[i].text;
            if kw != "machine" && kw != "default" {
                i += 1;
                continue;
            }
            let start = toks[i].start;
            let mut end = toks[i].end;
            let machine = if kw == "machine" {
                i += 1;
                match toks.get(i) {
                    Some(t) => {
                        end = t.end;
                        i += 1;
                        Some(t.text.to_owned())
                    }
                    None => None,
                }
            } else {
                i += 1;
                None
            };
            let (mut login, mut password) = (None, None);
            while i < toks.len() && toks[i].text != "machine" && toks[i].text != "default" {
                let key = toks[i].text;
                let value = toks.get(i + 1);
                end = value.map_or(toks[i].end, |v| v.end);
                match (key, value) {
                    ("login", Some(v)) => login = Some(v.text.to_owned()),
                    ("password", Some(v)) => password = Some(v.text.to_owned()),
                    _ => {}
                }
                i += 2;
            }
            if let Some(machine) = machine {
                entries.push(Entry {
                    machine,
                    login,
                    password,
                    span: widen(text, start..end),
                });
            }
        }
        Netrc {
            text: text.to_owned(),
            entries,
        }
    }

    /// Reads a netrc file; `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Netrc>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Netrc::parse(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("Cannot read {}", path.display())),
        }
    }

    /// The first entry for `machine`.
    pub fn find(&self, machine: &str) -> Option<Entry> {
        self.entries.iter().find(|e| e.machine == machine).cloned()
    }

    /// Removes every entry for `machine`; returns whether there was one.
    pub fn remove(&mut self, machine: &str) -> bool {
        let mut spans: Vec<Range<usize>> = self
            .entries
            .iter()
            .filter(|e| e.machine == machine)
            .map(|e| e.span.clone())
            .collect();
        if spans.is_empty() {
            return false;
        }
        spans.sort_by_key(|s| std::cmp::Reverse(s.start));
        let mut text = self.text.clone();
        for s in spans {
            text.replace_range(s, "");
        }
        *self = Netrc::parse(&text);
        true
    }

    /// Replaces the entry for `machine` (or appends one) with `login` and `password`.
    pub fn set(&mut self, machine: &str, login: &str, password: &str) {
        self.remove(machine);
        let mut text = std::mem::take(&mut self.text);
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "machine {machine}\n  login {login}\n  password {password}\n"
        ));
        *self = Netrc::parse(&text);
    }

    /// The file text.
    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_file_name(format!(".netrc.slipway-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(self.text.as_bytes())?;
            f.sync_all()?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("Cannot write {}", path.display()))
        })
    }
}

/// Extends an entry's span to whole lines when it starts and ends its lines, so removing it
/// leaves no blank indentation or empty line behind.
fn widen(text: &str, span: Range<usize>) -> Range<usize> {
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let start = if text[line_start..span.start].trim().is_empty() {
        line_start
    } else {
        span.start
    };
    let rest = &text[span.end..];
    let end = match rest.find('\n') {
        Some(i) if rest[..i].trim().is_empty() => span.end + i + 1,
        None if rest.trim().is_empty() => text.len(),
        _ => span.end,
    };
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# my netrc\nmachine github.com\n  login me\n  password gh\n\nmachine 127.0.0.1:5050\n  login old@example.com\n  password old\nmachine other login o password p\n";

    #[test]
    fn finds_entries() {
        let n = Netrc::parse(SAMPLE);
        let e = n.find("127.0.0.1:5050").unwrap();
        assert_eq!(e.login.as_deref(), Some("old@example.com"));
        assert_eq!(e.password.as_deref(), Some("old"));
        assert_eq!(n.find("other").unwrap().password.as_deref(), Some("p"));
        assert!(n.find("missing").is_none());
    }

    #[test]
    fn set_replaces_and_keeps_others() {
        let mut n = Netrc::parse(SAMPLE);
        n.set("127.0.0.1:5050", "new@example.com", "k2");
        let text = n.text();
        assert!(text.starts_with("# my netrc\nmachine github.com\n  login me\n  password gh\n"));
        assert!(!text.contains("old"));
        assert!(text.contains("machine other login o password p\n"));
        assert!(text.ends_with("machine 127.0.0.1:5050\n  login new@example.com\n  password k2\n"));
        let n2 = Netrc::parse(text);
        assert_eq!(
            n2.find("127.0.0.1:5050").unwrap().password.as_deref(),
            Some("k2")
        );
        assert_eq!(
            n2.find("github.com").unwrap().password.as_deref(),
            Some("gh")
        );
    }

    #[test]
    fn remove_keeps_others() {
        let mut n = Netrc::parse(SAMPLE);
        assert!(n.remove("127.0.0.1:5050"));
        assert!(!n.remove("127.0.0.1:5050"));
        assert_eq!(
            n.text(),
            "# my netrc\nmachine github.com\n  login me\n  password gh\n\nmachine other login o password p\n"
        );
    }

    #[test]
    fn one_line_entries_and_macdef() {
        let text = "machine a login x password 1 machine b login y password 2\nmacdef init\ncd /\nmachine c\n\nmachine d password 4\n";
        let mut n = Netrc::parse(text);
        assert_eq!(n.find("b").unwrap().password.as_deref(), Some("2"));
        assert!(n.find("c").is_none(), "macdef body is not parsed");
        assert_eq!(n.find("d").unwrap().password.as_deref(), Some("4"));
        n.remove("a");
        assert_eq!(n.find("b").unwrap().password.as_deref(), Some("2"));
        assert!(n.find("a").is_none());
    }

    #[test]
    fn save_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".netrc");
        std::fs::write(&path, "machine keep login a password b").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut n = Netrc::load(&path).unwrap().unwrap();
        n.set("h:1", "me", "key");
        n.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Netrc::load(&path).unwrap().unwrap();
        assert_eq!(back.find("keep").unwrap().password.as_deref(), Some("b"));
        assert_eq!(back.find("h:1").unwrap().password.as_deref(), Some("key"));
        assert!(Netrc::load(&dir.path().join("none")).unwrap().is_none());
    }
}
