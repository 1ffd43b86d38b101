//! Helpers shared by the integration tests: a builder in a temp dir, source tars made with real
//! git, buildpacks written as shell scripts, and slug inspection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_build::{BuildError, BuildRequest, Builder, BuiltSlug, SlugStore};
use tempfile::TempDir;

/// Heroku's base PATH, which builds use by default.
pub const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Harness {
    pub tmp: TempDir,
    pub builder: Builder,
    pub store: SlugStore,
}

impl Harness {
    pub async fn new() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let store = SlugStore::local(tmp.path().join("slugs")).unwrap();
        let builder = Builder::new(tmp.path().join("builder"), store.clone())
            .await
            .unwrap()
            .with_local_buildpacks(&[tmp.path().to_path_buf()]);
        Harness {
            tmp,
            builder,
            store,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("builder")
    }

    /// A fresh directory inside the harness's temp dir.
    pub fn dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs a build and collects its output lines.
    pub async fn build(
        &self,
        req: BuildRequest,
        tar: &[u8],
    ) -> (Result<BuiltSlug, BuildError>, Vec<String>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let result = self.builder.build(req, tar, tx).await;
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        (result, lines)
    }

    /// Unpacks a slug into a new directory and returns it.
    pub async fn unpack(&self, sha256: &str) -> PathBuf {
        let dest = self.tmp.path().join(format!("unpacked-{}", uuid_like()));
        self.store.unpack(sha256, &dest).await.unwrap();
        dest
    }

    /// Asserts that the builder left no build directories behind.
    pub fn assert_tmp_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(self.root().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "build dirs left behind: {left:?}");
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

pub fn request(app_id: &str, buildpacks: &[&str]) -> BuildRequest {
    BuildRequest {
        app_id: app_id.to_owned(),
        app_name: format!("app-{app_id}"),
        commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        buildpacks: buildpacks.iter().map(|s| s.to_string()).collect(),
        config: BTreeMap::new(),
        stack: "slipway-host".to_owned(),
    }
}

/// Writes files (path, contents, mode) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str, u32)]) {
    for (path, contents, mode) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// Runs git with a fixed identity and no user config.
pub fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Commits `files` to a new repo at `dir` and returns it.
pub fn git_repo(dir: &Path, files: &[(&str, &str, u32)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    write_files(dir, files);
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "test"]);
    dir.to_path_buf()
}

/// The source tar of an app with `files`, as `git archive --format=tar HEAD` makes it.
pub fn source_tar(dir: &Path, files: &[(&str, &str, u32)]) -> Vec<u8> {
    git_repo(dir, files);
    git(dir, &["archive", "--format=tar", "HEAD"])
}

/// Whether `program` is on the build PATH.
pub fn on_build_path(program: &str) -> bool {
    BUILD_PATH
        .split(':')
        .any(|dir| Path::new(dir).join(program).is_file())
}

pub fn joined(lines: &[String]) -> String {
    lines.join("\n")
}
