//! The `git` commands the CLI runs in the user's work tree: reading and setting remotes, and
//! installing the credential helper that lets `git push slipway main` authenticate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::format::shell_quote;

/// Runs `git` in one directory with the CLI's `HOME`.
pub struct Git {
    cwd: PathBuf,
    home: Option<PathBuf>,
}

impl Git {
    pub fn new(cwd: &Path, home: Option<&Path>) -> Git {
        Git {
            cwd: cwd.to_owned(),
            home: home.map(Path::to_owned),
        }
    }

    fn output(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(home) = &self.home {
            cmd.env("HOME", home);
        }
        cmd.output().context("Cannot run git (is it installed?)")
    }

    /// Runs git and fails with git's own message when it exits non-zero.
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let msg = msg
                .trim()
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            bail!("git {} failed: {msg}", args.join(" "));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Whether the directory is inside a git work tree (false when git is missing).
    pub fn in_work_tree(&self) -> bool {
        self.output(&["rev-parse", "--is-inside-work-tree"])
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true"
            })
    }

    /// The URL of remote `name`, if the directory is a repository that has it.
    pub fn remote_url(&self, name: &str) -> Option<String> {
        let out = self.output(&["remote", "get-url", name]).ok()?;
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !url.is_empty()).then_some(url)
    }

    /// Every remote with its fetch URL.
    pub fn remotes(&self) -> Vec<(String, String)> {
        let Ok(out) = self.output(&["remote", "-v"]) else {
            return Vec::new();
        };
        let mut seen: Vec<(String, String)> = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(url)) = (parts.next(), parts.next()) {
                if !seen.iter().any(|(n, _)| n == name) {
                    seen.push((name.to_owned(), url.to_owned()));
                }
            }
        }
        seen
    }

    /// Points remote `name` at `url`, adding it or changing its URL.
    pub fn set_remote(&self, name: &str, url: &str) -> Result<()> {
        if self.remote_url(name).is_some() {
            self.run(&["remote", "set-url", name, url])?;
        } else {
            self.run(&["remote", "add", name, url])?;
        }
        Ok(())
    }

    /// Removes remote `name`.
    pub fn remove_remote(&self, name: &str) -> Result<()> {
        self.run(&["remote", "remove", name]).map(drop)
    }

    /// Makes `exe git:credentials` the only credential helper for `git_url`'s scheme and host, in
    /// the repository's local config. The empty value first clears helpers inherited from the
    /// global config (a stale stored password would otherwise be tried first and fail the push).
    /// Does nothing for URLs that are not http(s).
    pub fn configure_credentials(&self, git_url: &str, exe: &Path) -> Result<()> {
        let Some(base) = credential_base(git_url) else {
            return Ok(());
        };
        let key = format!("credential.{base}.helper");
        let helper = format!("!{} git:credentials", shell_quote(&exe.to_string_lossy()));
        self.run(&["config", "--local", "--replace-all", &key, ""])?;
        self.run(&["config", "--local", "--add", &key, &helper])?;
        Ok(())
    }
}

/// The app name a git URL points at: its last path segment without `.git`
/// (`http://127.0.0.1:5050/demo.git` → `demo`, `git@host:demo.git` → `demo`).
pub fn app_from_git_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    // Only the path counts: a URL with no path names no app. scp-like `host:path` has no scheme.
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => url.split_once(':')?.1,
    };
    let last = path.rsplit(['/', ':']).next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    (!name.is_empty()).then(|| name.to_owned())
}

/// `scheme://host[:port]` of an http(s) URL, the key git matches credential config against.
pub fn credential_base(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_from_remotes() {
        let cases = [
            ("http://127.0.0.1:5050/demo.git", Some("demo")),
            ("http://127.0.0.1:5050/demo.git/", Some("demo")),
            ("https://git.example.com/prefix/my-app", Some("my-app")),
            ("git@example.com:demo.git", Some("demo")),
            ("ssh://git@example.com:2222/demo.git", Some("demo")),
            ("http://127.0.0.1:5050", None),
            ("http://127.0.0.1:5050/", None),
        ];
        for (url, want) in cases {
            assert_eq!(app_from_git_url(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn credential_bases() {
        assert_eq!(
            credential_base("http://127.0.0.1:5050/demo.git").as_deref(),
            Some("http://127.0.0.1:5050")
        );
        assert_eq!(
            credential_base("https://u@git.example.com/x.git").as_deref(),
            Some("https://git.example.com")
        );
        assert_eq!(credential_base("git@example.com:demo.git"), None);
    }

    #[test]
    fn remotes_and_credentials_in_a_repo() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new(dir.path(), Some(dir.path()));
        assert!(!git.in_work_tree());
        git.run(&["init", "-q"]).unwrap();
        assert!(git.in_work_tree());
        assert_eq!(git.remote_url("slipway"), None);
        git.set_remote("slipway", "http://127.0.0.1:5050/a.git")
            .unwrap();
        git.set_remote("slipway", "http://127.0.0.1:5050/b.git")
            .unwrap();
        assert_eq!(
            git.remote_url("slipway").as_deref(),
            Some("http://127.0.0.1:5050/b.git")
        );
        assert_eq!(
            git.remotes(),
            vec![(
                "slipway".to_owned(),
                "http://127.0.0.1:5050/b.git".to_owned()
            )]
        );
        let exe = Path::new("/opt/my tools/slipway");
        git.configure_credentials("http://127.0.0.1:5050/b.git", exe)
            .unwrap();
        git.configure_credentials("http://127.0.0.1:5050/b.git", exe)
            .unwrap();
        let key = "credential.http://127.0.0.1:5050.helper";
        let helpers = git
            .output(&["config", "--local", "--get-all", key])
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&helpers.stdout),
            "\n!'/opt/my tools/slipway' git:credentials\n"
        );
        git.remove_remote("slipway").unwrap();
        assert!(git.remotes().is_empty());
    }
}
