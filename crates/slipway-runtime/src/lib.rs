//! Dyno runtimes: how a dyno's process is started, watched and stopped.
//!
//! The dyno manager talks to a [`DynoRuntime`]: it hands over a [`DynoSpec`] (command, unpacked
//! slug, environment) and gets back a [`RunningDyno`] whose output lines go to a sink and whose
//! exit status arrives on a channel. [`HostRuntime`] runs each dyno as a supervised host process
//! in its own process group, with its own `$PORT` on 127.0.0.1; container runtimes implement the
//! same trait.

pub mod cgroup;
pub mod container;
pub mod launcher;
pub mod net;
pub mod relay;
mod seccomp;
pub mod stack;
pub mod tty;

pub use nix::sys::signal::Signal;
pub use tty::{DynoIo, DynoStdio, PtyMaster, TtySize};

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::signal::killpg;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

/// Errors from starting a dyno.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not start the dyno's process: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("could not set the dyno up: {0}")]
    Setup(String),
}

/// A boxed future, so [`DynoRuntime`] stays object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A dyno's memory, for R14 and R15.
#[derive(Debug, Clone, Copy)]
pub struct MemoryStats {
    /// Bytes in use (RSS, shared memory and swap).
    pub usage: u64,
    /// The size's quota: above it the dyno logs R14.
    pub quota: u64,
    /// Times the kernel killed a process of the dyno for memory (R15).
    pub oom_kills: u64,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DynoSpec {
    /// Unique per instance: names its cgroup, directories and hostname.
    pub id: String,
    /// `web.1`, `worker.2`, `run.1234`.
    pub name: String,
    /// The dyno size (`basic`, `standard-2x`...), which sets its limits.
    pub size: String,
    /// The stack it runs on (the one its slug was built on).
    pub stack: String,
    /// The Procfile command, run through a shell.
    pub command: String,
    /// The unpacked slug: the dyno's working directory and `$HOME`.
    pub slug_dir: PathBuf,
    /// Config vars and platform variables (`DYNO`, ...). The runtime adds `PORT`.
    pub env: BTreeMap<String, String>,
    /// Where its standard streams go: the logs, or (one-off dynos) a terminal or pipes.
    pub stdio: DynoStdio,
}

/// Receives each line a dyno prints on stdout or stderr.
pub type OutputSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A dyno that has been started.
pub struct RunningDyno {
    /// Where its `$PORT` can be reached.
    pub addr: SocketAddr,
    /// Becomes `Some(status)` when the process has exited; 128+N after signal N.
    pub exit: watch::Receiver<Option<i32>>,
    /// For a dyno started with a terminal or pipes: its streams, to be taken once.
    pub io: Option<DynoIo>,
    /// Whether it outlives the server and can be taken over by the next one ([`DynoRuntime::adopt`]).
    pub adoptable: bool,
    control: Arc<dyn DynoControl>,
}

/// Reads a running dyno's memory without borrowing the dyno.
#[derive(Clone)]
pub struct DynoMonitor(Arc<dyn DynoControl>);

impl DynoMonitor {
    /// Memory use and OOM kills, where the runtime measures them; after exit, the last reading.
    pub fn memory(&self) -> Option<MemoryStats> {
        self.0.memory()
    }
}

impl RunningDyno {
    fn new(
        addr: SocketAddr,
        exit: watch::Receiver<Option<i32>>,
        control: Arc<dyn DynoControl>,
    ) -> Self {
        RunningDyno {
            addr,
            exit,
            io: None,
            adoptable: false,
            control,
        }
    }

    /// A dyno run by something other than these runtimes (a test's fake runtime): `signal`
    /// receives what [`Self::terminate`] and [`Self::kill`] send.
    pub fn from_parts(
        addr: SocketAddr,
        exit: watch::Receiver<Option<i32>>,
        signal: Arc<dyn Fn(Signal) + Send + Sync>,
    ) -> Self {
        RunningDyno::new(addr, exit, Arc::new(FnControl(signal)))
    }

    /// A handle that reads the dyno's memory.
    pub fn monitor(&self) -> DynoMonitor {
        DynoMonitor(self.control.clone())
    }

    /// Asks every process of the dyno to stop (SIGTERM).
    pub fn terminate(&self) {
        self.control.signal(Signal::SIGTERM);
    }

    /// Stops every process of the dyno now (SIGKILL).
    pub fn kill(&self) {
        self.control.signal(Signal::SIGKILL);
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait(&mut self) -> i32 {
        loop {
            if let Some(code) = *self.exit.borrow_and_update() {
                return code;
            }
            if self.exit.changed().await.is_err() {
                return self.exit.borrow().unwrap_or(-1);
            }
        }
    }
}

struct FnControl(Arc<dyn Fn(Signal) + Send + Sync>);

impl DynoControl for FnControl {
    fn signal(&self, sig: Signal) {
        (self.0)(sig)
    }
}

/// Sends signals to all of a dyno's processes.
trait DynoControl: Send + Sync {
    fn signal(&self, sig: Signal);
    fn memory(&self) -> Option<MemoryStats> {
        None
    }
}

/// Starts dynos.
pub trait DynoRuntime: Send + Sync + 'static {
    /// Starts the dyno; its output goes to `output` line by line.
    fn start<'a>(
        &'a self,
        spec: DynoSpec,
        output: OutputSink,
    ) -> BoxFuture<'a, Result<RunningDyno, RuntimeError>>;
    /// Readies a freshly unpacked slug for this runtime (once per slug).
    fn prepare_slug<'a>(
        &'a self,
        _dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    /// Takes over dyno instance `id` started by a previous server (its output from now on goes to
    /// `output`); an error if it is gone or this runtime cannot.
    fn adopt<'a>(
        &'a self,
        id: &'a str,
        _output: OutputSink,
    ) -> BoxFuture<'a, Result<RunningDyno, RuntimeError>> {
        Box::pin(async move {
            Err(RuntimeError::Setup(format!(
                "dyno {id} cannot be taken over by this runtime"
            )))
        })
    }
    /// A short name for logs and `ps`: `host`, `container`.
    fn name(&self) -> &'static str;
}

/// Runs dynos as host processes, each in its own process group with its own port on 127.0.0.1.
#[derive(Debug, Default, Clone)]
pub struct HostRuntime;

struct ProcessGroup {
    pid: Pid,
    /// Set by SIGTERM: the group then gets its grace period even after the shell has exited.
    terminating: Arc<std::sync::atomic::AtomicBool>,
}

impl DynoControl for ProcessGroup {
    fn signal(&self, sig: Signal) {
        if sig == Signal::SIGTERM {
            self.terminating
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // ESRCH means it is already gone, which is what we want.
        let _ = killpg(self.pid, sig);
    }
}

/// Picks a free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The shell script that runs a Procfile command as Heroku does: `.profile.d/*.sh` and
/// `.profile` first, then the command.
pub fn launch_script(command: &str) -> String {
    format!(
        "for f in \"$HOME\"/.profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done\n\
         [ -r \"$HOME/.profile\" ] && . \"$HOME/.profile\"\n\
         {command}\n"
    )
}

impl DynoRuntime for HostRuntime {
    fn start<'a>(
        &'a self,
        spec: DynoSpec,
        output: OutputSink,
    ) -> BoxFuture<'a, Result<RunningDyno, RuntimeError>> {
        Box::pin(async move { self.start_host(spec, output) })
    }

    fn name(&self) -> &'static str {
        "host"
    }
}

impl HostRuntime {
    fn start_host(&self, spec: DynoSpec, output: OutputSink) -> Result<RunningDyno, RuntimeError> {
        let port = free_port()?;
        let shell = if std::path::Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        let mut cmd = Command::new(shell);
        cmd.arg("-c")
            .arg(launch_script(&spec.command))
            .current_dir(&spec.slug_dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", &spec.slug_dir)
            .envs(&spec.env)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        let mut master = None;
        match spec.stdio {
            DynoStdio::Logs => {
                cmd.process_group(0);
            }
            DynoStdio::Pipes => {
                cmd.process_group(0).stdin(Stdio::piped());
            }
            DynoStdio::Tty(size) => {
                // A new session (and so process group) led by the shell, on a fresh terminal.
                let pty = nix::pty::openpty(
                    Some(&nix::pty::Winsize {
                        ws_row: size.rows,
                        ws_col: size.cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    }),
                    None,
                )
                .map_err(std::io::Error::from)?;
                tty::use_terminal(&mut cmd, std::os::fd::AsRawFd::as_raw_fd(&pty.slave));
                cmd.stdin(Stdio::null());
                master = Some((pty.master, pty.slave));
            }
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().map(|p| Pid::from_raw(p as i32));
        let mut io = None;
        match spec.stdio {
            DynoStdio::Pipes => {
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
            DynoStdio::Tty(_) => {
                if let Some((m, slave)) = master.take() {
                    drop(slave);
                    io = Some(DynoIo::Tty(PtyMaster::new(m)?));
                }
            }
            DynoStdio::Logs => {}
        }
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, output));
        }
        let (tx, rx) = watch::channel(None);
        let terminating = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let term = terminating.clone();
        tokio::spawn(async move {
            let code = wait_status(&mut child).await;
            if let Some(pid) = pid {
                if term.load(std::sync::atomic::Ordering::SeqCst) {
                    // Stopping: the rest of the group finishes its work (the manager's SIGKILL
                    // ends the grace period).
                    while killpg(pid, None).is_ok() {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                } else {
                    // The shell is gone; make sure nothing it left behind survives.
                    let _ = killpg(pid, Signal::SIGKILL);
                }
            }
            let _ = tx.send(Some(code));
        });
        let control: Arc<dyn DynoControl> = Arc::new(ProcessGroup {
            pid: pid.unwrap_or(Pid::from_raw(-1)),
            terminating,
        });
        let mut dyno = RunningDyno::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), rx, control);
        dyno.io = io;
        Ok(dyno)
    }
}

/// Waits for a child and gives its status as a shell would: the exit code, or 128+N after
/// signal N (-1 if it cannot be waited for).
pub(crate) async fn wait_status(child: &mut tokio::process::Child) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match child.wait().await {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1),
        Err(_) => -1,
    }
}

pub(crate) async fn forward_lines(stream: impl AsyncRead + Unpin, sink: OutputSink) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                sink(line.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    fn collect() -> (OutputSink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        (
            Arc::new(move |s: &str| l.lock().unwrap().push(s.to_string())),
            lines,
        )
    }

    fn spec(dir: &std::path::Path, command: &str) -> DynoSpec {
        let mut env = BTreeMap::new();
        env.insert("DYNO".into(), "web.1".into());
        env.insert("GREETING".into(), "hi".into());
        DynoSpec {
            name: "web.1".into(),
            id: "test-dyno".into(),
            size: "basic".into(),
            stack: String::new(),
            command: command.into(),
            slug_dir: dir.to_path_buf(),
            env,
            stdio: DynoStdio::Logs,
        }
    }

    #[tokio::test]
    async fn runs_with_env_profile_and_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".profile.d")).unwrap();
        std::fs::write(
            dir.path().join(".profile.d/x.sh"),
            "export FROM_PROFILE=yes\n",
        )
        .unwrap();
        let (sink, lines) = collect();
        let mut d = HostRuntime
            .start(
                spec(
                    dir.path(),
                    "echo $GREETING $DYNO $FROM_PROFILE $PORT; pwd; exit 3",
                ),
                sink,
            )
            .await
            .unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), d.wait())
                .await
                .unwrap(),
            3
        );
        // Output tasks may lag the exit a little.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while lines.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lines = lines.lock().unwrap().clone();
        assert_eq!(lines[0], format!("hi web.1 yes {}", d.addr.port()));
        assert_eq!(lines[1], dir.path().to_string_lossy());
    }

    #[tokio::test]
    async fn a_host_dyno_can_have_a_terminal_or_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, _) = collect();
        let mut s = spec(dir.path(), "stty size; test -t 0 && echo on-a-tty; exit 2");
        s.stdio = DynoStdio::Tty(TtySize { cols: 77, rows: 22 });
        let mut d = HostRuntime.start(s, sink.clone()).await.unwrap();
        let Some(DynoIo::Tty(master)) = d.io.take() else {
            panic!("no terminal")
        };
        let mut shown = Vec::new();
        let mut buf = [0u8; 1024];
        let read_all = async {
            loop {
                match master.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => shown.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read_all)
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&shown), "22 77\r\non-a-tty\r\n");
        assert_eq!(d.wait().await, 2);

        let mut s = spec(dir.path(), "tr a-z A-Z");
        s.stdio = DynoStdio::Pipes;
        let mut d = HostRuntime.start(s, sink).await.unwrap();
        let Some(DynoIo::Pipes {
            mut stdin,
            mut stdout,
            ..
        }) = d.io.take()
        else {
            panic!("no pipes")
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stdin.write_all(b"shout\n").await.unwrap();
        drop(stdin);
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "SHOUT\n");
        assert_eq!(d.wait().await, 0);
    }

    #[tokio::test]
    async fn terminate_reaches_every_process_in_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, _) = collect();
        // A foreground child and a background one.
        let mut d = HostRuntime
            .start(spec(dir.path(), "sleep 300 & sleep 300; wait"), sink)
            .await
            .unwrap();
        d.terminate();
        let code = tokio::time::timeout(Duration::from_secs(10), d.wait())
            .await
            .unwrap();
        assert_eq!(code, 128 + 15);
    }
}
