//! Buildpacks: the built-in set, the reference forms an app may use, and fetching each one into a
//! build's own writable copy (classic buildpacks write their `export` file into their own dir).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::error::{BuildError, IoContext};

/// A buildpack embedded in the binary.
pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    detect: &'static str,
    compile: &'static str,
    release: &'static str,
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            detect: include_str!(concat!("../buildpacks/", $name, "/bin/detect")),
            compile: include_str!(concat!("../buildpacks/", $name, "/bin/compile")),
            release: include_str!(concat!("../buildpacks/", $name, "/bin/release")),
        }
    };
}

/// The built-in buildpacks in detection order.
static BUILTINS: [Builtin; 4] = [
    builtin!("python"),
    builtin!("nodejs"),
    builtin!("static"),
    builtin!("procfile"),
];

/// Names of the built-in buildpacks, in the order auto-detection tries them.
pub const BUILTIN_BUILDPACKS: [&str; 4] = ["python", "nodejs", "static", "procfile"];

/// How long a `git` operation on a buildpack may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) fn builtins() -> &'static [Builtin] {
    &BUILTINS
}

/// Writes the built-in buildpacks to `dir/<name>/bin/{detect,compile,release}` (mode 0755),
/// replacing older versions.
pub(crate) async fn install_builtins(dir: &Path) -> Result<(), BuildError> {
    for bp in builtins() {
        let bin = dir.join(bp.name).join("bin");
        tokio::fs::create_dir_all(&bin)
            .await
            .ctx(|| format!("creating {}", bin.display()))?;
        // Build dynos run them as an unprivileged user, whatever the server's umask.
        for d in [dir, &dir.join(bp.name), &bin] {
            tokio::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .await
                .ctx(|| format!("setting the mode of {}", d.display()))?;
        }
        for (file, text) in [
            ("detect", bp.detect),
            ("compile", bp.compile),
            ("release", bp.release),
        ] {
            let path = bin.join(file);
            // Write aside and rename, so a reader never sees a half-written script.
            let tmp = bin.join(format!(".{file}.tmp"));
            tokio::fs::write(&tmp, text)
                .await
                .ctx(|| format!("writing {}", tmp.display()))?;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .await
                .ctx(|| format!("setting the mode of {}", tmp.display()))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .ctx(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Where a buildpack comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Builtin(&'static str),
    Local(PathBuf),
    Git {
        url: String,
        reference: Option<String>,
    },
}

impl Source {
    /// Parses a buildpack reference as an app lists it.
    pub(crate) fn parse(reference: &str) -> Result<Source, BuildError> {
        let r = reference.trim();
        let unknown = || BuildError::UnknownBuildpack(redact(reference));
        if r.is_empty() {
            return Err(unknown());
        }
        // Heroku's registry names for the languages we have built in, so apps set up with
        // `heroku buildpacks:set heroku/python` work unchanged.
        let short = r.strip_prefix("urn:buildpack:").unwrap_or(r);
        let short = short.strip_prefix("heroku/").unwrap_or(short);
        if let Some(name) = BUILTIN_BUILDPACKS.iter().find(|n| **n == short) {
            return Ok(Source::Builtin(name));
        }
        if r.starts_with('/') {
            return Ok(Source::Local(PathBuf::from(r)));
        }
        // Not ssh://: it would fetch with the server's own keys, which are not the app's.
        let schemes = ["https://", "http://", "file://", "git://"];
        if let Some(scheme) = schemes
            .iter()
            .find(|s| r.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
        {
            let r = format!("{scheme}{}", &r[scheme.len()..]);
            let r = r.as_str();
            let (url, reference) = match r.split_once('#') {
                Some((url, git_ref)) if !git_ref.is_empty() => (url, Some(git_ref.to_owned())),
                Some((url, _)) => (url, None),
                None => (r, None),
            };
            let lower = url.to_ascii_lowercase();
            if [".tgz", ".tar.gz", ".tar", ".tbz", ".tar.bz2"]
                .iter()
                .any(|ext| lower.ends_with(ext))
            {
                return Err(BuildError::BuildpackFetch(format!(
                    "{} is a tarball URL, which Slipway doesn't fetch yet; use the buildpack's git URL",
                    redact(url)
                )));
            }
            if reference.as_deref().is_some_and(|g| g.starts_with('-')) {
                return Err(unknown());
            }
            return Ok(Source::Git {
                url: url.to_owned(),
                reference,
            });
        }
        Err(unknown())
    }

    /// The per-app cache subdirectory this buildpack's CACHE_DIR persists in.
    pub(crate) fn cache_key(&self) -> String {
        match self {
            Source::Builtin(name) => (*name).to_owned(),
            Source::Local(path) => {
                format!("bp-{}", short_hash(path.as_os_str().as_encoded_bytes()))
            }
            Source::Git { url, .. } => format!("bp-{}", short_hash(url.as_bytes())),
        }
    }
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// A URL fit for build output: any `user:password@` removed.
pub(crate) fn redact(reference: &str) -> String {
    if let Some((scheme, rest)) = reference.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    reference.to_owned()
}

/// Fetches buildpacks, keeping one git mirror per URL under its cache directory.
pub(crate) struct Fetcher {
    builtin_dir: PathBuf,
    git_cache: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Fetcher {
    pub(crate) fn new(builtin_dir: PathBuf, git_cache: PathBuf) -> Fetcher {
        Fetcher {
            builtin_dir,
            git_cache,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The installed (read-only use) directory of a built-in buildpack.
    pub(crate) fn builtin_path(&self, name: &str) -> PathBuf {
        self.builtin_dir.join(name)
    }

    /// Puts a copy of the buildpack at `dest` (which must not exist), and checks that it has the
    /// classic API's `bin/detect` and `bin/compile`. Lines about fetching go to `say`.
    pub(crate) async fn materialize(
        &self,
        reference: &str,
        source: &Source,
        dest: &Path,
        say: &(dyn Fn(String) + Sync),
    ) -> Result<(), BuildError> {
        match source {
            Source::Builtin(name) => copy_dir(&self.builtin_path(name), dest).await?,
            Source::Local(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| BuildError::BuildpackFetch(format!("{}: {e}", path.display())))?;
                if !meta.is_dir() {
                    return Err(BuildError::BuildpackFetch(format!(
                        "{} is not a directory",
                        path.display()
                    )));
                }
                copy_dir(path, dest).await?;
            }
            Source::Git {
                url,
                reference: git_ref,
            } => {
                self.fetch_git(url, git_ref.as_deref(), dest, say).await?;
            }
        }
        for program in ["detect", "compile"] {
            let path = dest.join("bin").join(program);
            if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
                return Err(BuildError::InvalidBuildpack {
                    buildpack: redact(reference),
                    reason: format!("it has no bin/{program}"),
                });
            }
        }
        Ok(())
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(key.to_owned()).or_default().clone()
    }

    async fn fetch_git(
        &self,
        url: &str,
        git_ref: Option<&str>,
        dest: &Path,
        say: &(dyn Fn(String) + Sync),
    ) -> Result<(), BuildError> {
        let key = short_hash(url.as_bytes());
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;
        let mirror = self.git_cache.join(format!("{key}.git"));
        let shown = redact(url);
        if tokio::fs::metadata(&mirror).await.is_ok() {
            say(format!("-----> Updating buildpack {shown}"));
            if let Err(e) = git(&[
                OsStr::new("--git-dir"),
                mirror.as_os_str(),
                OsStr::new("fetch"),
                OsStr::new("--quiet"),
                OsStr::new("--prune"),
                OsStr::new("origin"),
            ])
            .await
            {
                say(format!(
                    "       Could not update it ({e}); using the copy fetched earlier."
                ));
            }
        } else {
            say(format!("-----> Fetching buildpack {shown}"));
            tokio::fs::create_dir_all(&self.git_cache)
                .await
                .ctx(|| format!("creating {}", self.git_cache.display()))?;
            let tmp = self
                .git_cache
                .join(format!(".{key}.{}.tmp", uuid::Uuid::new_v4().simple()));
            let cloned = git(&[
                OsStr::new("clone"),
                OsStr::new("--mirror"),
                OsStr::new("--quiet"),
                OsStr::new("--"),
                OsStr::new(url),
                tmp.as_os_str(),
            ])
            .await;
            if let Err(e) = cloned {
                let _ = tokio::fs::remove_dir_all(&tmp).await;
                return Err(BuildError::BuildpackFetch(format!(
                    "git clone {shown}: {e}"
                )));
            }
            tokio::fs::rename(&tmp, &mirror)
                .await
                .ctx(|| format!("storing {}", mirror.display()))?;
        }

        let rev = git_ref.unwrap_or("HEAD");
        tokio::fs::create_dir(dest)
            .await
            .ctx(|| format!("creating {}", dest.display()))?;
        let mut child = git_command(&[
            OsStr::new("--git-dir"),
            mirror.as_os_str(),
            OsStr::new("archive"),
            OsStr::new("--format=tar"),
            OsStr::new(rev),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| "running git archive".into())?;
        let Some(stdout) = child.stdout.take() else {
            return Err(BuildError::BuildpackFetch(
                "git archive has no output".into(),
            ));
        };
        let unpacked = crate::archive::unpack_tar_stream(stdout, dest).await;
        let output = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| BuildError::BuildpackFetch(format!("git archive of {shown} timed out")))?
            .ctx(|| "running git archive".into())?;
        if !output.status.success() {
            return Err(BuildError::BuildpackFetch(format!(
                "{shown}#{rev}: {}",
                last_line(&output.stderr)
            )));
        }
        unpacked
    }
}

/// Copies a buildpack directory (without `.git`) on a blocking thread.
async fn copy_dir(src: &Path, dest: &Path) -> Result<(), BuildError> {
    let (src, dest) = (src.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        crate::fsutil::copy_tree(&src, &dest, &[".git"])
            .map_err(|e| BuildError::BuildpackFetch(format!("copying {}: {e}", src.display())))
    })
    .await
    .map_err(|e| BuildError::Io {
        context: "copying buildpack".into(),
        source: io::Error::other(e),
    })?
}

fn git_command(args: &[&OsStr]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(args)
        // Never wait for a password on a terminal that isn't there.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs git to completion; the error is git's last stderr line.
async fn git(args: &[&OsStr]) -> Result<(), String> {
    let run = git_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match tokio::time::timeout(GIT_TIMEOUT, run).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(e)) => Err(format!("could not run git: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(last_line(&out.stderr)),
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reference_forms() {
        assert_eq!(Source::parse("python").unwrap(), Source::Builtin("python"));
        assert_eq!(
            Source::parse("heroku/nodejs").unwrap(),
            Source::Builtin("nodejs")
        );
        assert_eq!(
            Source::parse("urn:buildpack:heroku/python").unwrap(),
            Source::Builtin("python")
        );
        assert_eq!(
            Source::parse("/opt/bp").unwrap(),
            Source::Local(PathBuf::from("/opt/bp"))
        );
        assert_eq!(
            Source::parse("https://example.com/bp.git#v1").unwrap(),
            Source::Git {
                url: "https://example.com/bp.git".into(),
                reference: Some("v1".into())
            }
        );
        assert!(matches!(
            Source::parse("heroku/ruby"),
            Err(BuildError::UnknownBuildpack(_))
        ));
        assert!(matches!(
            Source::parse("https://example.com/bp.tgz"),
            Err(BuildError::BuildpackFetch(_))
        ));
        assert!(Source::parse("file:///x#--upload-pack=evil").is_err());
        // ssh:// would fetch with the server's keys.
        assert!(matches!(
            Source::parse("ssh://git@example.com/bp.git"),
            Err(BuildError::UnknownBuildpack(_))
        ));
        // A scheme in capitals is still the scheme, and an unknown reference is shown with
        // its credentials removed.
        assert!(matches!(
            Source::parse("HTTPS://example.com/bp.git"),
            Ok(Source::Git { .. })
        ));
        let shown = Source::parse("HTTPX://user:s3cret@example.com/bp.git")
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn builtin_names_agree() {
        let embedded: Vec<&str> = builtins().iter().map(|b| b.name).collect();
        assert_eq!(embedded, BUILTIN_BUILDPACKS);
        for bp in builtins() {
            for script in [bp.detect, bp.compile, bp.release] {
                assert!(script.starts_with("#!/usr/bin/env bash\n"), "{}", bp.name);
            }
        }
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("https://user:tok@example.com/a/b.git"),
            "https://example.com/a/b.git"
        );
        assert_eq!(redact("https://example.com/a@b"), "https://example.com/a@b");
    }
}
