//! Build dynos: buildpack programs run in a container on the app's stack, as an unprivileged
//! user, seeing only the stack and the build's own directories.
//!
//! The server hands the builder a [`BuildSandbox`] (the `slipway` binary to run as
//! `slipway dyno-exec`, the stack, the user). For each build, [`BuildDyno`] turns a program, its
//! arguments, environment and working directory into that launcher command, with a launch spec
//! that binds the build directory and work directory writable at their host paths (and the
//! built-in buildpacks read-only), so no path is translated anywhere in the builder. Each program
//! gets its own short-lived container; it ends with the program, and with it everything the
//! program left running.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use slipway_runtime::cgroup::{CgroupDriver, DynoCgroup, Limits};
use slipway_runtime::launcher::{Bind, LaunchSpec, SPEC_ENV};
use slipway_runtime::net::{NetSlot, Network};
use slipway_runtime::stack::Stack;
use tokio::process::Command;

use crate::error::{BuildError, IoContext};
use crate::process::Env;

/// Where and as whom buildpack programs run when builds are sandboxed.
#[derive(Debug, Clone)]
pub struct BuildSandbox {
    /// The `slipway` binary, run as `slipway dyno-exec`.
    pub exe: PathBuf,
    /// The default stack.
    pub stack: Stack,
    /// Where other stacks are installed (`<name>/rootfs`); a build runs on its app's stack.
    pub stacks_dir: PathBuf,
    /// The unprivileged user buildpack programs run as.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Bridge networking: each build gets its own namespace (egress to the registries, nothing
    /// on the host or in other dynos). `None` leaves builds on the host's network.
    pub network: Option<Network>,
    /// Each build gets its own cgroup with [`BUILD_LIMITS`]; `None` leaves builds unlimited.
    pub cgroups: Option<Arc<CgroupDriver>>,
}

/// What one build may use: Heroku builds get a performance-class dyno.
pub const BUILD_LIMITS: Limits = Limits {
    memory_bytes: 5 * 1024 * 1024 * 1024,
    pids: 16384,
    cpu_shares: 2048,
};

/// Cap of the tmpfs holding the build dyno's writable root layer.
const SCRATCH_SIZE: &str = "2048m";
/// Cap of the build dyno's `/tmp` (pip and npm unpack there).
const TMP_SIZE: &str = "2048m";
/// The host side of a launch whose stderr joins stdout, so the launcher's own errors reach the
/// build output.
const MERGE_STDERR: &str = "exec 2>&1; exec \"$0\" \"$@\"";

/// One build's sandbox: its binds and the launcher's per-build directory.
pub(crate) struct BuildDyno {
    sandbox: BuildSandbox,
    /// The stack this build runs on.
    stack: Stack,
    /// The launcher's directory (new root's mount point, generated `/etc` files, empty `/app`).
    dyno_dir: PathBuf,
    binds: Vec<Bind>,
    /// The build's network namespace, shared by all its programs; released on drop.
    slot: Option<NetSlot>,
    /// The build's cgroup, joined by all its programs; removed on drop.
    cgroup: Option<DynoCgroup>,
}

impl Drop for BuildDyno {
    fn drop(&mut self) {
        if let (Some(net), Some(slot)) = (&self.sandbox.network, self.slot.take()) {
            net.release(slot);
        }
        if let Some(cg) = self.cgroup.take() {
            // Killing and removing waits for the kernel; never on an async worker thread.
            std::thread::spawn(move || {
                if let Err(error) = cg.remove() {
                    tracing::warn!(%error, "Could not remove a build's cgroup.");
                }
            });
        }
    }
}

impl BuildDyno {
    /// Readies a build dyno for a build whose programs write `writable` and read `read_only`
    /// (each bound at its own path). Creates `dyno_dir`.
    pub(crate) async fn create(
        sandbox: &BuildSandbox,
        stack: Stack,
        dyno_dir: PathBuf,
        writable: &[&Path],
        read_only: &[&Path],
    ) -> Result<BuildDyno, BuildError> {
        let slug = dyno_dir.join("slug");
        tokio::fs::create_dir_all(&slug)
            .await
            .ctx(|| format!("creating {}", slug.display()))?;
        let bind = |path: &&Path, writable: bool| Bind {
            host: path.to_path_buf(),
            inside: path.to_path_buf(),
            writable,
        };
        let binds = writable
            .iter()
            .map(|p| bind(p, true))
            .chain(read_only.iter().map(|p| bind(p, false)))
            .collect();
        let slot = match &sandbox.network {
            Some(net) => Some(
                net.acquire()
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))
                    .ctx(|| "giving the build a network".to_string())?,
            ),
            None => None,
        };
        let cgroup = match &sandbox.cgroups {
            Some(driver) => {
                let id = format!("build{}", uuid::Uuid::new_v4().simple());
                Some(
                    driver
                        .create(&id, &BUILD_LIMITS)
                        .map_err(|e| io::Error::other(e.to_string()))
                        .ctx(|| "giving the build a cgroup".to_string())?,
                )
            }
            None => None,
        };
        Ok(BuildDyno {
            sandbox: sandbox.clone(),
            stack,
            dyno_dir,
            binds,
            slot,
            cgroup,
        })
    }

    /// Makes the tree at `path` (created by the builder, as root) the build user's, so
    /// buildpack programs can write it. Symlinks are not followed.
    pub(crate) async fn hand_over(&self, path: &Path) -> Result<(), BuildError> {
        let (uid, gid) = (self.sandbox.uid, self.sandbox.gid);
        let dir = path.to_path_buf();
        let shown = path.display().to_string();
        match tokio::task::spawn_blocking(move || crate::fsutil::chown_tree(&dir, uid, gid)).await {
            Ok(result) => result.ctx(|| format!("handing {shown} to the build user")),
            Err(e) => Err(io::Error::other(e)).ctx(|| shown),
        }
    }

    /// Sets `mode` on `path`, so the build user can read what the builder wrote whatever the
    /// server's umask.
    pub(crate) async fn open_up(path: &Path, mode: u32) -> Result<(), BuildError> {
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .await
            .ctx(|| format!("setting the mode of {}", path.display()))
    }

    /// The launch spec that runs `program args...` in `cwd` with exactly `env`.
    pub(crate) fn spec(
        &self,
        program: &OsStr,
        args: &[&OsStr],
        env: &Env,
        cwd: &Path,
    ) -> io::Result<LaunchSpec> {
        let mut command = String::from("exec");
        for word in std::iter::once(program).chain(args.iter().copied()) {
            command.push(' ');
            command.push_str(&shell_quote(word)?);
        }
        // The spec travels as JSON; a variable that is not UTF-8 (only `export` files can make
        // one) is passed on lossily.
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        Ok(LaunchSpec {
            stack: self.stack.clone(),
            slug_dir: self.dyno_dir.join("slug"),
            dyno_dir: self.dyno_dir.clone(),
            hostname: "build".into(),
            uid: self.sandbox.uid,
            gid: self.sandbox.gid,
            command,
            env,
            cgroup_procs: self
                .cgroup
                .as_ref()
                .map(|c| c.procs_files())
                .unwrap_or_default(),
            netns: self.slot.as_ref().map(|s| s.path.clone()),
            scratch_size: SCRATCH_SIZE.into(),
            tmp_size: TMP_SIZE.into(),
            binds: self.binds.clone(),
            cwd: Some(cwd.to_path_buf()),
            writable_root: true,
            raw: true,
            tty: None,
            relay: None,
        })
    }

    /// `slipway dyno-exec` with the spec for `program args...`; with `merge_stderr`, the
    /// launcher's stderr (its errors and the program's) goes to its stdout.
    pub(crate) fn command(
        &self,
        program: &OsStr,
        args: &[&OsStr],
        env: &Env,
        cwd: &Path,
        merge_stderr: bool,
    ) -> io::Result<Command> {
        let spec = self.spec(program, args, env, cwd)?;
        let json = serde_json::to_string(&spec).map_err(io::Error::other)?;
        let mut cmd = if merge_stderr {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c").arg(MERGE_STDERR).arg(&self.sandbox.exe);
            sh
        } else {
            Command::new(&self.sandbox.exe)
        };
        cmd.arg("dyno-exec")
            .env_clear()
            .env(SPEC_ENV, json)
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/");
        Ok(cmd)
    }
}

/// Quotes one word for `bash -c`.
fn shell_quote(word: &OsStr) -> io::Result<String> {
    let Some(word) = word.to_str() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", word.to_string_lossy()),
        ));
    };
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn dyno(dir: &Path) -> BuildDyno {
        let sandbox = BuildSandbox {
            exe: "/usr/bin/slipway".into(),
            stack: Stack {
                name: "slipway-host".into(),
                root: "/stack".into(),
                binds: vec![("/usr".into(), "usr".into())],
            },
            uid: 10000,
            gid: 10000,
            stacks_dir: std::path::PathBuf::from("/nonexistent"),
            network: None,
            cgroups: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(BuildDyno::create(
            &sandbox,
            sandbox.stack.clone(),
            dir.join("dyno_1"),
            &[
                Path::new("/data/tmp/build_1"),
                Path::new("/data/tmp/work_1"),
            ],
            &[Path::new("/data/buildpacks")],
        ))
        .unwrap()
    }

    #[test]
    fn a_program_runs_unprivileged_with_the_builds_dirs_at_their_own_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dyno(tmp.path());
        let mut env = Env::new();
        env.insert(
            OsString::from("HOME"),
            OsString::from("/data/tmp/work_1/home"),
        );
        let spec = d
            .spec(
                OsStr::new("/data/tmp/work_1/buildpacks/1/bin/compile"),
                &[OsStr::new("/data/tmp/build_1"), OsStr::new("it's")],
                &env,
                Path::new("/data/tmp/build_1"),
            )
            .unwrap();
        assert_eq!(
            spec.command,
            r#"exec '/data/tmp/work_1/buildpacks/1/bin/compile' '/data/tmp/build_1' 'it'\''s'"#
        );
        assert_eq!((spec.uid, spec.gid), (10000, 10000));
        assert!(spec.writable_root && spec.raw);
        assert_eq!(spec.cwd.as_deref(), Some(Path::new("/data/tmp/build_1")));
        assert_eq!(spec.env.len(), 1);
        assert_eq!(spec.env["HOME"], "/data/tmp/work_1/home");
        let binds: Vec<(&Path, &Path, bool)> = spec
            .binds
            .iter()
            .map(|b| (b.host.as_path(), b.inside.as_path(), b.writable))
            .collect();
        assert_eq!(
            binds,
            [
                (
                    Path::new("/data/tmp/build_1"),
                    Path::new("/data/tmp/build_1"),
                    true
                ),
                (
                    Path::new("/data/tmp/work_1"),
                    Path::new("/data/tmp/work_1"),
                    true
                ),
                (
                    Path::new("/data/buildpacks"),
                    Path::new("/data/buildpacks"),
                    false
                ),
            ]
        );
        assert!(spec.cgroup_procs.is_empty() && spec.netns.is_none());
        assert!(tmp.path().join("dyno_1/slug").is_dir());
    }

    #[test]
    fn the_launcher_gets_only_the_spec() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dyno(tmp.path());
        let cmd = d
            .command(
                OsStr::new("/bin/true"),
                &[],
                &Env::new(),
                Path::new("/"),
                true,
            )
            .unwrap();
        let std = cmd.as_std();
        assert_eq!(std.get_program(), "/bin/sh");
        let args: Vec<_> = std.get_args().collect();
        assert_eq!(
            args,
            ["-c", MERGE_STDERR, "/usr/bin/slipway", "dyno-exec"].map(OsStr::new)
        );
        let mut envs: Vec<_> = std.get_envs().map(|(k, _)| k.to_owned()).collect();
        envs.sort();
        assert_eq!(envs, [OsStr::new("PATH"), OsStr::new(SPEC_ENV)]);
    }

    #[test]
    fn non_utf8_arguments_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        assert!(shell_quote(OsStr::from_bytes(b"\xff")).is_err());
    }
}
