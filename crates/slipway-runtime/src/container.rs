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
        let _ = std::fs::create_dir_all(cfg.dynos_dir.join("state"));
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
        // Dynos whose output goes to the logs outlive the server: their output comes through
        // the shim's relay socket.
        let relay = (spec.stdio == DynoStdio::Logs)
            .then(|| self.state_dir().join(format!("{}.sock", spec.id)));
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
            relay: relay.clone(),
        };
        let json =
            serde_json::to_string(&launch).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let mut cmd = Command::new(&self.cfg.exe);
        cmd.arg("dyno-exec")
            .env_clear()
            .env(SPEC_ENV, json)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(if relay.is_some() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
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
            tokio::spawn(forward_lines(err, output.clone()));
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
        let adoptable = relay.is_some();
        if let Some(sock) = relay {
            let token = AdoptToken {
                id: spec.id.clone(),
                shim_pid: shim.as_raw(),
                addr,
                cgroup: cgroup
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|c| c.name().to_string()),
                netns_ip: slot.as_ref().map(|s| s.ip),
                quota,
            };
            let token_file = self.state_dir().join(format!("{}.token", spec.id));
            if let Ok(json) = serde_json::to_vec(&token) {
                let _ = slipway_types::files::write_atomic(&token_file, &json, 0o600);
            }
            // The shim is our child until we go: reap it, and tell the follower it is gone.
            let (child_tx, child_rx) = watch::channel(None);
            tokio::spawn(async move {
                let code = wait_status(&mut child).await;
                let _ = child_tx.send(Some(code));
            });
            tokio::spawn(async move {
                let code = follow(&sock, output, shim, Some(child_rx)).await;
                finish(&cg, quota, &last_w, slot.map(|s| (net, s)), &sock).await;
                let _ = tx.send(Some(code));
            });
        } else {
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
        }
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
        dyno.adoptable = adoptable;
        Ok(dyno)
    }

    /// Where relay sockets, exit files and adoption tokens live.
    fn state_dir(&self) -> PathBuf {
        self.cfg.dynos_dir.join("state")
    }

    async fn adopt_dyno(&self, id: &str, output: OutputSink) -> Result<RunningDyno, RuntimeError> {
        let dir = self.state_dir();
        let gone = |why: String| RuntimeError::Setup(why);
        let text = std::fs::read(dir.join(format!("{id}.token")))
            .map_err(|e| gone(format!("no token for dyno {id}: {e}")))?;
        let token: AdoptToken =
            serde_json::from_slice(&text).map_err(|e| gone(format!("bad token: {e}")))?;
        let sock = dir.join(format!("{id}.sock"));
        let shim = Pid::from_raw(token.shim_pid);
        let cgroup = match (&self.cfg.cgroups, &token.cgroup) {
            (Some(driver), Some(name)) => driver.existing(name).ok(),
            _ => None,
        };
        let slot = match (&self.cfg.network, token.netns_ip) {
            (Some(net), Some(ip)) => net.take_adopted(ip),
            _ => None,
        };
        let cgroup = Arc::new(Mutex::new(cgroup));
        let (tx, rx) = watch::channel(None);
        let (net, cg) = (self.cfg.network.clone(), cgroup.clone());
        let last = Arc::new(Mutex::new(None));
        let last_w = last.clone();
        let quota = token.quota;
        if shim_alive(shim, id) || crate::relay::exit_file(&sock).exists() {
            tokio::spawn(async move {
                let code = follow(&sock, output, shim, None).await;
                finish(&cg, quota, &last_w, slot.map(|s| (net, s)), &sock).await;
                let _ = tx.send(Some(code));
            });
        } else {
            finish(&cg, quota, &last_w, slot.map(|s| (net, s)), &sock).await;
            return Err(gone(format!("dyno {id} is gone")));
        }
        let mut dyno = RunningDyno::new(
            token.addr,
            rx,
            Arc::new(ContainerControl {
                shim,
                cgroup,
                quota,
                last,
            }),
        );
        dyno.adoptable = true;
        Ok(dyno)
    }
}

/// What a server needs to take over a running dyno, kept in `<state>/<id>.token`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct AdoptToken {
    id: String,
    shim_pid: i32,
    addr: SocketAddr,
    cgroup: Option<String>,
    netns_ip: Option<Ipv4Addr>,
    quota: u64,
}

/// Whether `pid` is still the shim of dyno `id` (and not a reused pid).
fn shim_alive(pid: Pid, id: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{}/environ", pid.as_raw())) else {
        return false;
    };
    let needle = format!("{id}.sock");
    env.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Dynos that outlived the previous server, from the tokens in `<dynos_dir>/state`: the live
/// ones' (cgroup names, network addresses) to keep at start-up. Tokens of dynos that are gone
/// without an exit status are removed.
pub fn surviving(dynos_dir: &Path) -> (std::collections::BTreeSet<String>, Vec<Ipv4Addr>) {
    let dir = dynos_dir.join("state");
    let mut cgroups = std::collections::BTreeSet::new();
    let mut ips = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("token") {
            continue;
        }
        let Some(token) = std::fs::read(&path)
            .ok()
            .and_then(|t| serde_json::from_slice::<AdoptToken>(&t).ok())
        else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if shim_alive(Pid::from_raw(token.shim_pid), &token.id) {
            cgroups.extend(token.cgroup.clone());
            ips.extend(token.netns_ip);
        }
    }
    (cgroups, ips)
}

/// Follows a dyno's relay socket: output lines to `output`, until the dyno's status arrives
/// (or, when the shim goes without one, its exit file or its wait status).
async fn follow(
    sock: &Path,
    output: OutputSink,
    shim: Pid,
    mut child: Option<watch::Receiver<Option<i32>>>,
) -> i32 {
    use tokio::io::AsyncBufReadExt;
    let exit_file = crate::relay::exit_file(sock);
    let from_exit_file = || {
        std::fs::read_to_string(&exit_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    };
    let shim_gone = |child: &Option<watch::Receiver<Option<i32>>>| match child {
        Some(rx) => *rx.borrow(),
        None => nix::sys::signal::kill(shim, None).is_err().then_some(-1),
    };
    let mut tries = 0u32;
    let stream = loop {
        if let Ok(s) = tokio::net::UnixStream::connect(sock).await {
            break s;
        }
        if let Some(code) = from_exit_file() {
            return code;
        }
        if let Some(code) = shim_gone(&child) {
            return from_exit_file().unwrap_or(if code < 0 { 255 } else { code });
        }
        tries += 1;
        let wait = if tries < 400 { 5 } else { 100 };
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    };
    let mut lines = tokio::io::BufReader::with_capacity(64 * 1024, stream).split(b'\n');
    let mut count: u32 = 0;
    while let Ok(Some(line)) = lines.next_segment().await {
        count = count.wrapping_add(1);
        if count.is_multiple_of(256) {
            // A dyno that floods its output takes its turn with everything else on the server
            // (drains, tails, the API): what it writes beyond that waits in its relay.
            tokio::task::yield_now().await;
        }
        match crate::relay::parse_record(&line) {
            Some(crate::relay::Record::Output(text)) => output(&text),
            Some(crate::relay::Record::Dropped(n)) => output(&format!(
                "[{n} lines of output were dropped while Slipway was restarting]"
            )),
            Some(crate::relay::Record::Exit(code)) => return code,
            None => {}
        }
    }
    // The shim went without a status (killed): wait for it to be gone, then use what is known.
    loop {
        if let Some(code) = from_exit_file() {
            return code;
        }
        if let Some(code) = shim_gone(&child) {
            return if code < 0 { 128 + 9 } else { code };
        }
        match child.as_mut() {
            Some(rx) => {
                let _ = rx.changed().await;
            }
            None => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// After a relayed dyno has ended: the last memory reading, its cgroup and namespace removed,
/// its state files deleted.
async fn finish(
    cg: &Arc<Mutex<Option<DynoCgroup>>>,
    quota: u64,
    last: &Arc<Mutex<Option<MemoryStats>>>,
    slot: Option<(Option<Network>, NetSlot)>,
    sock: &Path,
) {
    let stats = cg
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|c| read_stats(c, quota));
    *last.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    cleanup(cg.clone(), slot).await;
    for ext in ["sock", "exit", "token"] {
        let _ = std::fs::remove_file(sock.with_extension(ext));
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

    fn adopt<'a>(
        &'a self,
        id: &'a str,
        output: OutputSink,
    ) -> BoxFuture<'a, Result<RunningDyno, RuntimeError>> {
        Box::pin(self.adopt_dyno(id, output))
    }

    fn name(&self) -> &'static str {
        if self.cfg.network.is_some() {
            "container"
        } else {
            "container (host network)"
        }
    }
}
