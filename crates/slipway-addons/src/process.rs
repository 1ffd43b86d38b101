//! An add-on's server process (`redis-server`, `postgres`): started as the service's user inside
//! its own cgroup, restarted with backoff when it dies, and adopted, not started twice, by a
//! `slipway server` that restarts while it runs.
//!
//! The server is started through `slipway addon-exec` ([`exec_main`]): it moves itself into the
//! cgroup, drops to the service's user and execs the server, so every process the server forks
//! is born under the memory cap. `<dir>/server.json` records the pid and its start time; a new
//! `slipway server` adopts a process only if both still match.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use slipway_runtime::cgroup::{CgroupDriver, DynoCgroup, Limits};
use tokio::time::Instant;
use tracing::{debug, warn};

/// The environment variable that carries [`ExecSpec`] to `slipway addon-exec`.
pub const EXEC_ENV: &str = "SLIPWAY_ADDON_EXEC";

/// How long a server has to stop after its stop signal, before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `slipway addon-exec` does before it becomes the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// `cgroup.procs` files to write its pid to.
    pub procs: Vec<PathBuf>,
    /// The user and group to run as; `None` keeps the caller's.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// `slipway addon-exec`: joins the cgroup, drops privileges and execs the server; never returns.
pub fn exec_main() -> ! {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        let _ = writeln!(std::io::stderr(), "addon-exec: {what}: {e}");
        std::process::exit(126)
    };
    let spec: ExecSpec = match std::env::var(EXEC_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => fail("reading the spec", &e),
    };
    let me = std::process::id().to_string();
    for procs in &spec.procs {
        if let Err(e) = std::fs::write(procs, &me) {
            fail(&format!("joining {}", procs.display()), &e);
        }
    }
    if let Some(gid) = spec.gid {
        let gid = nix::unistd::Gid::from_raw(gid);
        if let Err(e) = nix::unistd::setgroups(&[gid]) {
            fail("setting groups", &e);
        }
        if let Err(e) = nix::unistd::setgid(gid) {
            fail("setting the group", &e);
        }
    }
    if let Some(uid) = spec.uid {
        if let Err(e) = nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)) {
            fail("setting the user", &e);
        }
    }
    if let Err(e) = std::env::set_current_dir(&spec.cwd) {
        fail(&format!("entering {}", spec.cwd.display()), &e);
    }
    let cstr = |s: &str| match std::ffi::CString::new(s) {
        Ok(c) => c,
        Err(e) => fail("an argument", &e),
    };
    let argv: Vec<_> = spec.argv.iter().map(|a| cstr(a)).collect();
    let env: Vec<_> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect();
    let Some(program) = argv.first() else {
        fail("the spec", &"no program given")
    };
    match nix::unistd::execve(program, &argv, &env) {
        Err(e) => fail(&format!("running {}", spec.argv[0]), &e),
        Ok(never) => match never {},
    }
}

/// `<dir>/server.json`: the process a server runs as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: with the pid, names one process for good.
    start_ticks: u64,
    cgroup: Option<String>,
}

fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn alive(pid: i32, ticks: u64) -> bool {
    start_ticks(pid) == Some(ticks)
}

/// How to run one add-on's server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// For log lines: `redis-rigid-12345`.
    pub name: String,
    /// The add-on's directory: `server.json` and `server.out` go here.
    pub dir: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<(u32, u32)>,
    pub limits: Option<Limits>,
    /// What asks the server to stop cleanly (Redis: SIGTERM; Postgres: SIGINT, fast shutdown).
    pub stop_signal: Signal,
}

/// Where a server's events are told (the attached apps' logs).
pub type Events = Arc<dyn Fn(&str) + Send + Sync>;

/// A supervised server.
pub struct Server {
    spec: Mutex<ServerSpec>,
    exe: PathBuf,
    cgroups: Option<Arc<CgroupDriver>>,
    pid: AtomicI32,
    stopping: AtomicBool,
    /// A restart asked for (a plan change): no backoff, no crash report.
    restarting: AtomicBool,
    cgroup: Mutex<Option<DynoCgroup>>,
    events: Events,
    /// Ends the supervisor's wait between restarts.
    wake: tokio::sync::Notify,
    done: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Adopts the server recorded in the spec's dir if it still runs, else starts it; then keeps
    /// it running until [`Server::stop`] or [`Server::release`].
    pub fn run(
        spec: ServerSpec,
        exe: PathBuf,
        cgroups: Option<Arc<CgroupDriver>>,
        events: Events,
    ) -> Arc<Server> {
        let server = Arc::new(Server {
            spec: Mutex::new(spec),
            exe,
            cgroups,
            pid: AtomicI32::new(0),
            stopping: AtomicBool::new(false),
            restarting: AtomicBool::new(false),
            cgroup: Mutex::new(None),
            events,
            wake: tokio::sync::Notify::new(),
            done: tokio::sync::watch::channel(false).0,
        });
        let adopted = server.adopt();
        tokio::spawn(server.clone().supervise(adopted));
        server
    }

    fn spec(&self) -> ServerSpec {
        self.spec.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes how the next start runs (a plan change).
    pub fn set_spec(&self, spec: ServerSpec) {
        *self.spec.lock().unwrap_or_else(|e| e.into_inner()) = spec;
    }

    /// The server's pid, 0 while it is not running.
    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Its cgroup, when it has one.
    pub fn with_cgroup<T>(&self, f: impl FnOnce(&DynoCgroup) -> T) -> Option<T> {
        self.cgroup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(f)
    }

    fn record_path(&self) -> PathBuf {
        self.spec().dir.join("server.json")
    }

    /// The recorded process, if it is still the same one.
    fn adopt(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.record_path()).ok()?;
        let r: Record = serde_json::from_str(&text).ok()?;
        let cg = r
            .cgroup
            .as_deref()
            .and_then(|name| self.cgroups.as_ref()?.existing(name).ok());
        if !alive(r.pid, r.start_ticks) {
            // Gone: whatever it left in its cgroup goes too.
            if let Some(cg) = cg {
                let _ = cg.remove();
            }
            return None;
        }
        debug!(server = %self.spec().name, pid = r.pid, "Adopted a running add-on server.");
        *self.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = cg;
        self.pid.store(r.pid, Ordering::SeqCst);
        Some(r.pid)
    }

    fn spawn(&self) -> Result<tokio::process::Child, String> {
        let spec = self.spec();
        let cg = match (&self.cgroups, &spec.limits) {
            (Some(driver), Some(limits)) => {
                let name = format!(
                    "addon-{}-{}",
                    spec.dir
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("x")
                        .chars()
                        .take(8)
                        .collect::<String>(),
                    chrono::Utc::now().timestamp_millis()
                );
                Some(
                    driver
                        .create_named(&name, limits)
                        .map_err(|e| format!("creating its cgroup: {e}"))?,
                )
            }
            _ => None,
        };
        let exec = ExecSpec {
            procs: cg.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
            uid: spec.user.map(|u| u.0),
            gid: spec.user.map(|u| u.1),
            cwd: spec.dir.clone(),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.dir.join("server.out"))
            .map_err(|e| format!("opening server.out: {e}"))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let json = serde_json::to_string(&exec).map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(&self.exe)
            .arg("addon-exec")
            .env_clear()
            .env(EXEC_ENV, json)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C meant for `slipway server` does not reach it.
            .process_group(0)
            .kill_on_drop(false)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if let Some(cg) = cg {
                    let _ = cg.remove();
                }
                return Err(format!("starting {}: {e}", self.exe.display()));
            }
        };
        let pid = child.id().map_or(0, |p| p as i32);
        let record = Record {
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
            cgroup: cg.as_ref().map(|c| c.name().to_string()),
        };
        if let Ok(json) = serde_json::to_vec(&record) {
            // Whoever reads it (a server starting again, to adopt the process) never sees it
            // half written.
            let _ = slipway_types::files::write_atomic(&self.record_path(), &json, 0o600);
        }
        *self.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = cg;
        self.pid.store(pid, Ordering::SeqCst);
        Ok(child)
    }

    /// Kills what is left of a server that died, and removes its cgroup.
    fn clean_up(&self) {
        self.pid.store(0, Ordering::SeqCst);
        let cg = self.cgroup.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(cg) = cg {
            if let Err(error) = cg.remove() {
                warn!(%error, "Could not remove an add-on server's cgroup.");
            }
        }
    }

    async fn supervise(self: Arc<Self>, mut adopted: Option<i32>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let oom_before = self.with_cgroup(|c| c.oom_kills()).unwrap_or(0);
            let status = match adopted.take() {
                Some(pid) => {
                    let ticks = start_ticks(pid).unwrap_or(0);
                    while alive(pid, ticks) {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = self.wake.notified() => {}
                        }
                    }
                    None
                }
                None => {
                    if self.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    match self.spawn() {
                        Ok(mut child) => child.wait().await.ok(),
                        Err(e) => {
                            (self.events)(&format!("could not start: {e}"));
                            None
                        }
                    }
                }
            };
            let oom = self.with_cgroup(|c| c.oom_kills()).unwrap_or(0) > oom_before;
            let cap = self.spec().limits.map(|l| l.memory_bytes / (1024 * 1024));
            self.clean_up();
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            if self.restarting.swap(false, Ordering::SeqCst) {
                continue;
            }
            let how = match (oom, cap, status) {
                (true, Some(mb), _) => format!("was killed at its memory cap of {mb} MB"),
                (_, _, Some(s)) => format!("exited ({s})"),
                _ => "stopped".to_string(),
            };
            if started.elapsed() > Duration::from_secs(600) {
                backoff = Duration::from_secs(1);
            }
            (self.events)(&format!("{how}; restarting in {} s", backoff.as_secs()));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.wake.notified() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        self.done.send_replace(true);
    }

    /// Stops the server: its stop signal, then SIGKILL after [`STOP_TIMEOUT`]; returns once it
    /// is gone and its cgroup removed. Its record is removed, so nothing adopts it.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let signal = self.spec().stop_signal;
        let pid = self.pid();
        if pid > 0 {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        self.wake.notify_one();
        let mut done = self.done.subscribe();
        if tokio::time::timeout(STOP_TIMEOUT, done.wait_for(|d| *d))
            .await
            .is_err()
        {
            let pid = self.pid();
            if pid > 0 {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.with_cgroup(|c| c.kill());
            self.wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await;
        }
        let _ = std::fs::remove_file(self.record_path());
    }

    /// Stops the server cleanly and starts it again at once (new settings); returns when the
    /// new process has started. A server that is not running is started at its next turn.
    pub async fn restart(&self) {
        let old = self.pid();
        if old <= 0 {
            self.wake.notify_one();
            return;
        }
        self.restarting.store(true, Ordering::SeqCst);
        let _ = kill(Pid::from_raw(old), self.spec().stop_signal);
        let until = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < until {
            let pid = self.pid();
            if pid > 0 && pid != old {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = kill(Pid::from_raw(old), Signal::SIGKILL);
    }

    /// Stops supervising but leaves the server running, for the next `slipway server` to adopt.
    pub fn release(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The supervisor task ends with the runtime; the process and its record stay.
    }

    /// Waits until `ready` says yes, the server is restarted, or `deadline` passes.
    pub async fn wait_ready<F, Fut>(&self, deadline: Duration, mut ready: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let until = Instant::now() + deadline;
        let mut last = String::from("it did not start");
        loop {
            if self.pid() > 0 {
                match ready().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            if Instant::now() >= until {
                let out = tail(&self.spec().dir.join("server.out"), 5);
                return Err(format!(
                    "{} was not ready within {} s: {last}{}",
                    self.spec().name,
                    deadline.as_secs(),
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!("; it said: {out}")
                    }
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The last `n` lines of a file, joined with " / ".
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_names_a_live_process() {
        let me = std::process::id() as i32;
        let t = start_ticks(me).unwrap();
        assert!(alive(me, t));
        assert!(!alive(me, t + 1));
        assert!(!alive(i32::MAX, t));
    }
}
