//! Running buildpack programs: a cleared environment, a timeout that kills the whole process
//! group, and output streamed line by line as it arrives. With a [`BuildDyno`], each program runs
//! in a build dyno: the process started here is then the `dyno-exec` launcher, whose output is
//! the program's and whose process group holds the container's init, so the same timeout and
//! streaming logic applies.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::sandbox::BuildDyno;

/// The environment a buildpack program runs with, and nothing else.
pub(crate) type Env = BTreeMap<OsString, OsString>;

/// Lines longer than this are passed on in pieces.
const MAX_LINE: usize = 16 * 1024;
/// After the program exits, how long leftover processes holding its output open may keep it.
const LINGER: Duration = Duration::from_secs(5);

/// How a program run ended.
#[derive(Debug)]
pub(crate) enum Ended {
    Exited(ExitStatus),
    TimedOut,
}

/// What a captured run printed.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) ended: Ended,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// `program args...` in `cwd` with exactly `env`: a host process, or in `dyno` (whose launcher's
/// stderr joins its stdout with `merge_stderr`).
fn command(
    program: &OsStr,
    args: &[&OsStr],
    env: &Env,
    cwd: &Path,
    dyno: Option<&BuildDyno>,
    merge_stderr: bool,
) -> io::Result<Command> {
    let mut cmd = match dyno {
        Some(dyno) => dyno.command(program, args, env, cwd, merge_stderr)?,
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args).env_clear().envs(env).current_dir(cwd);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .kill_on_drop(true)
        // Its own process group, so a timeout can kill everything the program started.
        .process_group(0);
    Ok(cmd)
}

/// Kills the process group led by `pid` (the shell's `kill`, to avoid unsafe code here).
async fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg("kill -s KILL -- \"-$1\" 2>/dev/null")
        .arg("sh")
        .arg(pid.to_string())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Runs `program args...` and captures stdout and stderr separately (for `bin/detect` and
/// `bin/release`, whose output is data).
pub(crate) async fn run_captured(
    program: &Path,
    args: &[&OsStr],
    env: &Env,
    cwd: &Path,
    timeout: Duration,
    dyno: Option<&BuildDyno>,
) -> io::Result<Captured> {
    let mut child = command(program.as_os_str(), args, env, cwd, dyno, false)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let collect = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                s.read_to_end(&mut out).await?;
            }
            Ok::<_, io::Error>(())
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                s.read_to_end(&mut err).await?;
            }
            Ok::<_, io::Error>(())
        };
        let (a, b) = tokio::join!(read_out, read_err);
        a?;
        b?;
        let status = child.wait().await?;
        Ok::<_, io::Error>((status, out, err))
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(result) => {
            let (status, stdout, stderr) = result?;
            Ok(Captured {
                ended: Ended::Exited(status),
                stdout,
                stderr,
            })
        }
        Err(_) => {
            kill_group(pid).await;
            Ok(Captured {
                ended: Ended::TimedOut,
                stdout: Vec::new(),
                stderr: Vec::new(),
            })
        }
    }
}

/// Runs `program args...` with stderr merged into stdout (so lines keep their order), sending
/// each output line to `out` as it arrives. A program still running at `timeout` is killed with
/// its process group.
pub(crate) async fn run_streaming(
    program: &Path,
    args: &[&OsStr],
    env: &Env,
    cwd: &Path,
    timeout: Duration,
    out: &UnboundedSender<String>,
    dyno: Option<&BuildDyno>,
) -> io::Result<Ended> {
    // `exec 2>&1` first, so even the shell's own "cannot execute" lands in the stream.
    let mut sh_args: Vec<&OsStr> = vec![
        OsStr::new("-c"),
        OsStr::new("exec 2>&1; exec \"$0\" \"$@\""),
        program.as_os_str(),
    ];
    sh_args.extend_from_slice(args);
    let mut child: Child = command(OsStr::new("/bin/sh"), &sh_args, env, cwd, dyno, true)?
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let Some(mut stdout) = child.stdout.take() else {
        return Err(io::Error::other("child has no stdout"));
    };
    let deadline = Instant::now() + timeout;
    let mut lines = LineSplitter::default();
    let mut buf = vec![0u8; 8192];
    let mut status: Option<ExitStatus> = None;
    let mut eof = false;
    let mut linger_until: Option<Instant> = None;
    loop {
        if eof {
            if let Some(status) = status {
                lines.flush(out);
                return Ok(Ended::Exited(status));
            }
        }
        let wake = linger_until.map_or(deadline, |l| l.min(deadline));
        tokio::select! {
            read = stdout.read(&mut buf), if !eof => {
                match read {
                    Ok(0) => eof = true,
                    Ok(n) => lines.feed(&buf[..n], out),
                    Err(e) => return Err(e),
                }
            }
            waited = child.wait(), if status.is_none() => {
                status = Some(waited?);
                linger_until = Some(Instant::now() + LINGER);
            }
            _ = tokio::time::sleep_until(wake) => {
                kill_group(pid).await;
                // What the group wrote before it was stopped is still in the pipe: pass it on
                // (briefly, in case something outside the group holds the pipe open).
                if !eof {
                    let drain = async {
                        while let Ok(n @ 1..) = stdout.read(&mut buf).await {
                            lines.feed(&buf[..n], out);
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                }
                lines.flush(out);
                match status {
                    // The program is done; only processes it left behind kept the output open.
                    Some(status) => return Ok(Ended::Exited(status)),
                    None => {
                        let _ = child.wait().await;
                        return Ok(Ended::TimedOut);
                    }
                }
            }
        }
    }
}

/// Splits a byte stream into lines (`\n`, with a trailing `\r` dropped), lossily as UTF-8.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, mut data: &[u8], out: &UnboundedSender<String>) {
        while let Some(at) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..at]);
            self.emit(out);
            data = &data[at + 1..];
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() >= MAX_LINE {
            self.emit(out);
        }
    }

    fn flush(&mut self, out: &UnboundedSender<String>) {
        if !self.partial.is_empty() {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &UnboundedSender<String>) {
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        // A build goes on when nobody listens any more (say the pusher disconnected).
        let _ = out.send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s = LineSplitter::default();
        s.feed(b"one\r\ntw", &tx);
        s.feed(b"o\n\nthree", &tx);
        s.flush(&tx);
        let mut got = Vec::new();
        while let Ok(line) = rx.try_recv() {
            got.push(line);
        }
        assert_eq!(got, ["one", "two", "", "three"]);
    }
}
