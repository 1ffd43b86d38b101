//! Where the CLI finds the API and the key: process environment, `~/.netrc` and the server's
//! data directory, gathered in one [`Env`] value so tests can pass their own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::netrc::Netrc;

/// Default API address: the server's default listen address on the same machine.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:5050";

/// Where interactive input (`login`'s key prompt, `git:credentials`' request) comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// The process's standard input.
    Inherit,
    /// Fixed text, as if piped in (used by tests).
    Text(String),
}

/// Everything the CLI reads from its surroundings. [`Env::from_process`] fills it from the real
/// environment; tests build one with [`Env::bare`] and set the fields they need.
#[derive(Debug, Clone)]
pub struct Env {
    /// `SLIPWAY_API_URL`: the API base URL, overriding `<data-dir>/api-url`.
    pub api_url: Option<String>,
    /// `SLIPWAY_API_KEY`: the API key, overriding `~/.netrc` and `<data-dir>/owner.api-key`.
    pub api_key: Option<String>,
    /// `SLIPWAY_APP`: the app to use when `--app` is not given.
    pub app: Option<String>,
    /// `SLIPWAY_DATA_DIR`: the server's data directory.
    pub data_dir: Option<PathBuf>,
    /// `SLIPWAY_CA_FILE`: the CA certificate the server's TLS endpoints are checked against,
    /// instead of `<data-dir>/tls/ca.pem`.
    pub ca_file: Option<PathBuf>,
    /// `XDG_DATA_HOME`, used for the default data directory of non-root users.
    pub xdg_data_home: Option<PathBuf>,
    /// `HOME`: holds `.netrc`, and is passed to the `git` commands the CLI runs.
    pub home: Option<PathBuf>,
    /// Working directory: where git remotes are looked up and set.
    pub cwd: PathBuf,
    /// Whether the CLI runs as uid 0 (then the data directory defaults to `/var/lib/slipway`).
    pub is_root: bool,
    /// Absolute path of the `slipway` executable, written into the git credential helper.
    pub exe: PathBuf,
    /// Source of interactive input.
    pub input: Input,
    /// `PATH`: where local programs the CLI starts (`redis-cli`) are looked up.
    pub path: Option<OsString>,
    /// Where Debian installs PostgreSQL's versioned programs (`/usr/lib/postgresql/15/bin`);
    /// `pg:psql` prefers the newest `psql` there to the one on `PATH`.
    pub pg_lib_dir: Option<PathBuf>,
    /// Whether standard output is a terminal: progress (`pg:backups:capture`) is then redrawn in
    /// place; otherwise only final lines are printed.
    pub out_is_tty: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Env {
    /// Reads the real process environment.
    pub fn from_process() -> Env {
        let is_root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        Env {
            api_url: var("SLIPWAY_API_URL"),
            api_key: var("SLIPWAY_API_KEY"),
            app: var("SLIPWAY_APP"),
            data_dir: var("SLIPWAY_DATA_DIR").map(PathBuf::from),
            ca_file: var("SLIPWAY_CA_FILE").map(PathBuf::from),
            xdg_data_home: var("XDG_DATA_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            is_root,
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("slipway")),
            input: Input::Inherit,
            path: std::env::var_os("PATH"),
            pg_lib_dir: Some(PathBuf::from("/usr/lib/postgresql")),
            out_is_tty: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }

    /// An environment with nothing set but `HOME` and the working directory; not root, empty input,
    /// output not a terminal.
    pub fn bare(home: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Env {
        Env {
            api_url: None,
            api_key: None,
            app: None,
            data_dir: None,
            ca_file: None,
            xdg_data_home: None,
            home: Some(home.into()),
            cwd: cwd.into(),
            is_root: false,
            exe: PathBuf::from("slipway"),
            input: Input::Text(String::new()),
            path: None,
            pg_lib_dir: None,
            out_is_tty: false,
        }
    }

    /// The executable file `name` in the first `PATH` directory that has one.
    pub fn find_program(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(name))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    /// The CA certificate to check the server's TLS endpoints with.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca_file
            .clone()
            .or_else(|| self.data_dir().map(|d| d.join("tls/ca.pem")))
    }

    /// The server's data directory: `SLIPWAY_DATA_DIR`, else `/var/lib/slipway` for root, else
    /// `$XDG_DATA_HOME/slipway` or `~/.local/share/slipway`.
    pub fn data_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Some(d.clone());
        }
        if self.is_root {
            return Some(PathBuf::from("/var/lib/slipway"));
        }
        if let Some(x) = &self.xdg_data_home {
            return Some(x.join("slipway"));
        }
        self.home.as_ref().map(|h| h.join(".local/share/slipway"))
    }

    /// The API base URL without a trailing slash.
    pub fn api_url(&self) -> String {
        let from_file = || {
            let path = self.data_dir()?.join("api-url");
            let text = std::fs::read_to_string(path).ok()?;
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        };
        let url = self
            .api_url
            .clone()
            .or_else(from_file)
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        url.trim().trim_end_matches('/').to_owned()
    }

    /// `~/.netrc`, if `HOME` is known.
    pub fn netrc_path(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(".netrc"))
    }

    /// The API key for `api_url`: `SLIPWAY_API_KEY`, else the `~/.netrc` entry for the URL's
    /// `host:port` (or bare host), else `<data-dir>/owner.api-key`.
    pub fn api_key(&self, api_url: &str) -> Result<Option<String>> {
        if let Some(k) = &self.api_key {
            return Ok(Some(k.trim().to_owned()));
        }
        if let Some(k) = self.netrc_key(api_url)? {
            return Ok(Some(k));
        }
        let Some(dir) = self.data_dir() else {
            return Ok(None);
        };
        Ok(read_key_file(&dir.join("owner.api-key")))
    }

    /// The password of the `~/.netrc` entry for `url`'s `host:port`, falling back to the host alone.
    pub fn netrc_key(&self, url: &str) -> Result<Option<String>> {
        let Some(path) = self.netrc_path() else {
            return Ok(None);
        };
        let Some(netrc) = Netrc::load(&path)? else {
            return Ok(None);
        };
        let Some(machine) = machine_name(url) else {
            return Ok(None);
        };
        let host = machine
            .rsplit_once(':')
            .map_or(machine.as_str(), |(h, _)| h);
        Ok(netrc
            .find(&machine)
            .or_else(|| netrc.find(host))
            .and_then(|e| e.password))
    }
}

fn read_key_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let key = text.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

/// The netrc machine name for a URL: `host:port` when the URL has a port, else `host`
/// (`http://127.0.0.1:5050/x` → `127.0.0.1:5050`), as Heroku's CLI names its entries.
pub fn machine_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    (!authority.is_empty()).then(|| authority.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        assert_eq!(
            machine_name("http://127.0.0.1:5050").as_deref(),
            Some("127.0.0.1:5050")
        );
        assert_eq!(
            machine_name("http://u:p@example.com/api/").as_deref(),
            Some("example.com")
        );
        assert_eq!(machine_name("http://"), None);
    }

    #[test]
    fn key_discovery_order() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("owner.api-key"), "file-key\n").unwrap();
        std::fs::write(data.join("api-url"), "http://10.0.0.1:7000/\n").unwrap();
        let mut env = Env::bare(dir.path(), dir.path());
        env.data_dir = Some(data);
        let url = env.api_url();
        assert_eq!(url, "http://10.0.0.1:7000");
        assert_eq!(env.api_key(&url).unwrap().as_deref(), Some("file-key"));

        std::fs::write(
            dir.path().join(".netrc"),
            "machine 10.0.0.1:7000\n  login a@b\n  password netrc-key\n",
        )
        .unwrap();
        assert_eq!(env.api_key(&url).unwrap().as_deref(), Some("netrc-key"));

        env.api_key = Some("env-key".into());
        assert_eq!(env.api_key(&url).unwrap().as_deref(), Some("env-key"));
    }

    #[test]
    fn programs_are_found_in_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let mut env = Env::bare(dir.path(), dir.path());
        env.path = Some(std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap());
        assert_eq!(env.find_program("tool"), None, "not executable");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(env.find_program("tool"), Some(tool));
        assert_eq!(env.find_program("missing"), None);
        env.path = None;
        assert_eq!(env.find_program("tool"), None);
    }

    #[test]
    fn data_dir_defaults() {
        let mut env = Env::bare("/home/u", "/");
        assert_eq!(
            env.data_dir(),
            Some(PathBuf::from("/home/u/.local/share/slipway"))
        );
        env.xdg_data_home = Some("/x".into());
        assert_eq!(env.data_dir(), Some(PathBuf::from("/x/slipway")));
        env.is_root = true;
        assert_eq!(env.data_dir(), Some(PathBuf::from("/var/lib/slipway")));
        env.data_dir = Some("/d".into());
        assert_eq!(env.data_dir(), Some(PathBuf::from("/d")));
    }
}
