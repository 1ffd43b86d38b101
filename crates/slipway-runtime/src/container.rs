//! Dynos as containers: [`ContainerRuntime`] starts each dyno through the `dyno-exec` launcher
//! (see [`crate::launcher`]), in a fresh cgroup sized by its dyno size and, when networking is
//! set up, in its own network namespace where every web dyno listens on port 5000.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use slipway_types::dyno_size;
use tokio::process::Command;
use tokio::sync::watch;

use crate::cgroup::{CgroupDriver, DynoCgroup, Limits};
use crate::launcher::{LaunchSpec, SPEC_ENV};
use crate::net::{NetSlot, Network};
use crate::stack::{Stack, DYNO_GID, DYNO_UID};
use crate::{
    forward_lines, free_port, wait_status, BoxFuture, DynoControl, DynoIo, DynoRuntime, DynoSpec,
    DynoStdio, MemoryStats, OutputSink, PtyMaster, RunningDyno, RuntimeError,
};
use std::os::fd::AsRawFd;

/// The port every web dyno listens on inside its own network namespace.
pub const DYNO_PORT: u16 = 5000;

/// How container dynos are set up on this host.
#[derive(Clone)]
pub struct ContainerConfig {
    /// The `slipway` binary, run as `slipway dyno-exec`.
    pub exe: PathBuf,
    /// The default stack.
    pub stack: Stack,
    /// Where other stacks are installed (`<name>/rootfs`).
    pub stacks_dir: PathBuf,
    /// Per-instance directories live here.
    pub dynos_dir: PathBuf,
    /// Sizes are enforced through these; `None` only where the host has no cgroups.
    pub cgroups: Option<Arc<CgroupDriver>>,
    /// Bridge networking; `None` shares the host's network with a distinct `$PORT` per dyno.
    pub network: Option<Network>,
}

/// Runs dynos as containers.
#[derive(Clone)]
pub struct ContainerRuntime {
    cfg: ContainerConfig,
}

impl ContainerRuntime {
    pub fn new(cfg: ContainerConfig) -> Self {
        if let Err(error) = std::fs::create_dir_all(cfg.dynos_dir.join("scratch")) {
            tracing::warn!(%error, dir = %cfg.dynos_dir.display(), "Cannot create the dynos' mount point.");
        }
        ContainerRuntime { cfg }
    }
}

/// Sends signals to the launcher and, for SIGKILL, to the whole cgroup.
struct ContainerControl {
    shim: Pid,
    cgroup: Arc<Mutex<Option<DynoCgroup>>>,
    quota: u64,
    /// The reading taken just before the cgroup was removed.
    last: Arc<Mutex<Option<MemoryStats>>>,
}

impl DynoControl for ContainerControl {
    fn signal(&self, sig: Signal) {
        let _ = kill(self.shim, sig);
        if sig == Signal::SIGKILL {
            if let Some(cg) = self
                .cgroup
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                let _ = cg.kill();
            }
        }
    }

    fn memory(&self) -> Option<MemoryStats> {
        let guard = self.cgroup.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(cg) => Some(read_stats(cg, self.quota)),
            None => *self.last.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

fn read_stats(cg: &DynoCgroup, quota: u64) -> MemoryStats {
    MemoryStats {
        usage: cg.memory_usage().unwrap_or(0),
        quota,
        oom_kills: cg.oom_kills(),
    }
}

/// Makes a slug's files the dyno user's, so the app can change them through its overlay.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

impl ContainerRuntime {
    async fn start_dyno(
        &self,
        spec: DynoSpec,
        output: OutputSink,
    ) -> Result<RunningDyno, RuntimeError> {
        let size = dyno_size(&spec.size)
            .or_else(|| dyno_size("basic"))
            .copied()
            .ok_or_else(|| RuntimeError::Setup(format!("unknown dyno size {}", spec.size)))?;
        let stack = self
            .cfg
            .stack
            .resolve(&self.cfg.stacks_dir, &spec.stack)
            .ok_or_else(|| {
                RuntimeError::Setup(format!(
                    "stack {} is not installed on this host",
                    spec.stack
                ))
            })?;
        // Every dyno mounts its own tmpfs on the same `<dynos_dir>/scratch`, each in its own
        // mount namespace, so a start makes nothing on the host's disk.
        let dyno_dir = self.cfg.dynos_dir.clone();
        let cgroup = match &self.cfg.cgroups {
            Some(driver) => {
                let limits = Limits {
                    memory_bytes: size.memory_limit_bytes(),
                    pids: size.pids,
                    cpu_shares: size.cpu_shares,
                };
                Some(
                    driver
                        .create(&spec.id, &limits)
                        .map_err(|e| RuntimeError::Setup(e.to_string()))?,
                )
            }
            None => None,
        };
        let cgroup_procs = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        let cgroup = Arc::new(Mutex::new(cgroup));
        let slot: Option<NetSlot> = match &self.cfg.network {
            Some(net) => match net.acquire().await {
                Ok(s) => Some(s),
                Err(e) => {
                    cleanup(cgroup.clone(), None).await;
                    return Err(RuntimeError::Setup(e.to_string()));
                }
            },
            None => None,
        };
        let (addr, port) = match &slot {
            Some(s) => (SocketAddr::from((s.ip, DYNO_PORT)), DYNO_PORT),
            None => {
                let p = free_port()?;
                (SocketAddr::from((Ipv4Addr::LOCALHOST, p)), p)
            }
        };
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.insert("PORT".into(), port.to_string());
        let launch = LaunchSpec {
            stack,
            slug_dir: spec.slug_dir.clone(),
            dyno_dir: dyno_dir.clone(),
            hostname: spec
                .id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(12)
                .collect::<String>(),
            uid: DYNO_UID,
            gid: DYNO_GID,
            command: spec.command.clone(),
            env,
            cgroup_procs,
            netns: slot.as_ref().map(|s| s.path.clone()),
            scratch_size: format!("{}m", size.memory_quota_mb),
            tmp_size: format!("{}m", size.memory_quota_mb),
            binds: Vec::new(),
            cwd: None,
            writable_root: false,
            raw: false,
            tty: match spec.stdio {
                DynoStdio::Tty(size) => Some(size),
                _ => None,
            },
        };
        let json =
            serde_json::to_string(&launch).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let mut cmd = Command::new(&self.cfg.exe);
        cmd.arg("dyno-exec")
            .env_clear()
            .env(SPEC_ENV, json)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let mut console = None;
        match spec.stdio {
            DynoStdio::Logs => {}
            DynoStdio::Pipes => {
                cmd.stdin(Stdio::piped());
            }
            DynoStdio::Tty(_) => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
                crate::tty::pass_console(&mut cmd, theirs.as_raw_fd());
                console = Some((ours, theirs));
            }
        }
        let spawned = cmd.spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                cleanup(cgroup, slot.map(|s| (self.cfg.network.clone(), s))).await;
                return Err(RuntimeError::Spawn(e));
            }
        };
        let shim = Pid::from_raw(child.id().map(|p| p as i32).unwrap_or(-1));
        let mut io = None;
        if spec.stdio == DynoStdio::Pipes {
            if let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            {
                io = Some(DynoIo::Pipes {
                    stdin,
                    stdout,
                    stderr,
                });
            }
        }
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, output));
        }
        if let Some((ours, theirs)) = console {
            // Init sends the terminal's master once the dyno's root is built; if the dyno fails
            // first, the socket closes without it.
            drop(theirs);
            let master = async {
                ours.set_nonblocking(true)?;
                let ours = tokio::net::UnixStream::from_std(ours)?;
                match tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    crate::tty::recv_fd(&ours),
                )
                .await
                {
                    Ok(fd) => PtyMaster::new(fd?),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the dyno did not open its terminal",
                    )),
                }
            }
            .await;
            match master {
                Ok(m) => io = Some(DynoIo::Tty(m)),
                Err(e) => {
                    let _ = kill(shim, Signal::SIGKILL);
                    let code = wait_status(&mut child).await;
                    cleanup(cgroup, slot.map(|s| (self.cfg.network.clone(), s))).await;
                    return Err(RuntimeError::Setup(format!("{e} (status {code})")));
                }
            }
        }
        let (tx, rx) = watch::channel(None);
        let net = self.cfg.network.clone();
        let cg = cgroup.clone();
        let quota = size.memory_quota_bytes();
        let last = Arc::new(Mutex::new(None));
        let last_w = last.clone();
        tokio::spawn(async move {
            let code = wait_status(&mut child).await;
            let stats = cg
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|c| read_stats(c, quota));
            *last_w.lock().unwrap_or_else(|e| e.into_inner()) = stats;
            cleanup(cg, slot.map(|s| (net, s))).await;
            let _ = tx.send(Some(code));
        });
        let mut dyno = RunningDyno::new(
            addr,
            rx,
            Arc::new(ContainerControl {
                shim,
                cgroup,
                quota,
                last,
            }),
        );
        dyno.io = io;
        Ok(dyno)
    }
}

/// Removes what a dyno instance used: its cgroup (killing stragglers) and its network
/// namespace. (Its files were on a tmpfs in its own mount namespace, gone with it.)
async fn cleanup(cgroup: Arc<Mutex<Option<DynoCgroup>>>, slot: Option<(Option<Network>, NetSlot)>) {
    let cg = cgroup.lock().unwrap_or_else(|e| e.into_inner()).take();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(cg) = cg {
            if let Err(error) = cg.remove() {
                tracing::warn!(%error, "Could not remove a dyno's cgroup.");
            }
        }
    })
    .await;
    if let Some((Some(net), slot)) = slot {
        net.release(slot);
    }
}

impl DynoRuntime for ContainerRuntime {
    fn start<'a>(
        &'a self,
        spec: DynoSpec,
        output: OutputSink,
    ) -> BoxFuture<'a, Result<RunningDyno, RuntimeError>> {
        Box::pin(self.start_dyno(spec, output))
    }

    fn prepare_slug<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let dir = dir.to_path_buf();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || chown_tree(&dir, DYNO_UID, DYNO_GID))
                .await
                .map_err(|e| RuntimeError::Setup(e.to_string()))??;
            Ok(())
        })
    }

    fn name(&self) -> &'static str {
        if self.cfg.network.is_some() {
            "container"
        } else {
            "container (host network)"
        }
    }
}
