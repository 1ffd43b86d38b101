//! How a dyno outlives `slipway server`: its shim (the launcher's first process) owns the pipe the
//! dyno's output goes to, keeps reading it whoever listens, and offers it on a unix socket
//! (`<id>.sock`) that the server connects to, and reconnects to after a restart.
//!
//! Shim → server, one record per line: `O <output line>`, `D <n>` (lines dropped while nobody was
//! connected and the buffer was full), `X <status>` (the dyno has ended; the shim exits). The
//! status is also left in `<id>.exit`, for a server that was not connected when the dyno ended.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Lines kept while no server is connected; older ones are dropped (and counted).
const BUFFER_LINES: usize = 10_000;
/// Longest line passed on whole; longer ones are split (Heroku splits at 10,000 bytes).
const MAX_LINE: usize = 10_000;

/// Where a dyno's status goes when it ends with no server connected.
pub fn exit_file(sock: &Path) -> PathBuf {
    sock.with_extension("exit")
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// The shim's loop in relay mode: forwards `set`'s signals to init, reads the dyno's output from
/// `pipe`, serves it on `listener`, and exits with init's status once the output has ended.
pub(crate) fn shim_relay(
    init_pid: Pid,
    set: &SigSet,
    pipe: OwnedFd,
    listener: UnixListener,
    sock: PathBuf,
    state_dir: OwnedFd,
) -> ! {
    // The shim shares the dyno's mount namespace, whose root init has pivoted: host paths no
    // longer resolve, so its files are reached through the state dir opened beforehand.
    let name = |ext: &str| {
        sock.with_extension(ext)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default()
    };
    let write_status = |code: i32| {
        use nix::fcntl::{openat, OFlag};
        use nix::sys::stat::Mode;
        if let Ok(fd) = openat(
            Some(state_dir.as_raw_fd()),
            name("exit").as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            // SAFETY: openat just returned this fd and nothing else owns it.
            let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let _ = f.write_all(format!("{code}\n").as_bytes());
        }
    };
    let remove_sock = || {
        let _ = nix::unistd::unlinkat(
            Some(state_dir.as_raw_fd()),
            name("sock").as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    };
    let Ok(sigfd) = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        // Without a signalfd nothing can be relayed; let init go with us.
        let _ = kill(init_pid, Signal::SIGKILL);
        std::process::exit(255)
    };
    let _ = listener.set_nonblocking(true);
    let mut pipe = std::fs::File::from(pipe);
    let mut client: Option<UnixStream> = None;
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    let mut partial: Vec<u8> = Vec::new();
    // The last line was cut at MAX_LINE bytes (not ended by a newline).
    let mut split_long = false;
    let mut dropped: u64 = 0;
    let mut status: Option<i32> = None;
    let mut output_open = true;
    let mut waited_for_client = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Send what is queued.
        if let Some(c) = client.as_mut() {
            let mut ok = true;
            if dropped > 0 {
                ok = c.write_all(format!("D {dropped}\n").as_bytes()).is_ok();
                if ok {
                    dropped = 0;
                }
            }
            // Records go in batches: one write for many lines, not one per line.
            let mut batch: Vec<u8> = Vec::new();
            while ok && !queue.is_empty() {
                batch.clear();
                let mut n = 0;
                for line in queue.iter() {
                    if batch.len() + line.len() + 3 > 64 * 1024 && n > 0 {
                        break;
                    }
                    batch.extend_from_slice(b"O ");
                    batch.extend_from_slice(line);
                    batch.push(b'\n');
                    n += 1;
                }
                ok = c.write_all(&batch).is_ok();
                if ok {
                    queue.drain(..n);
                }
            }
            if !ok {
                client = None;
            }
        }
        if let Some(code) = status.filter(|_| !output_open) {
            if !partial.is_empty() {
                queue.push_back(std::mem::take(&mut partial));
                continue;
            }
            // A dyno that ended before its server connected (a short command) still has its
            // output delivered: the server is given a few seconds to come.
            if client.is_none() && !queue.is_empty() && !waited_for_client {
                waited_for_client = true;
                let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
                if matches!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(n) if n > 0) {
                    if let Ok((conn, _)) = listener.accept() {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(5)));
                        limit_backlog(&conn);
                        client = Some(conn);
                    }
                }
                continue;
            }
            // The status is written down first: a connection can look alive to a writer after
            // its server has died, and the next server must still learn it.
            write_status(code);
            if let Some(c) = client.as_mut() {
                let _ = c.write_all(format!("X {code}\n").as_bytes());
                let _ = c.flush();
            }
            remove_sock();
            std::process::exit(code);
        }
        let mut fds = vec![
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        if output_open {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        let client_fd = client.as_ref().map(|c| c.as_raw_fd());
        // SAFETY: the fd stays open for the duration of the poll (the client is not dropped
        // before it returns).
        let client_borrow = client_fd.map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        if let Some(fd) = client_borrow {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, listen_ready) = (ready(0), ready(1));
        let pipe_ready = output_open && ready(2);
        let client_ready = client_fd.is_some() && ready(if output_open { 3 } else { 2 });
        drop(fds);
        if sig_ready {
            while let Ok(Some(info)) = sigfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => loop {
                        match waitpid(init_pid, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) => break,
                            Ok(st) => {
                                if let Some(code) = exit_code(st) {
                                    status = Some(code);
                                }
                            }
                            Err(_) => {
                                status.get_or_insert(255);
                                break;
                            }
                        }
                    },
                    Ok(sig) => {
                        let _ = kill(init_pid, sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if listen_ready {
            while let Ok((conn, _)) = listener.accept() {
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_write_timeout(Some(std::time::Duration::from_secs(5)));
                limit_backlog(&conn);
                // A newer server replaces the old connection.
                client = Some(conn);
            }
        }
        if client_ready {
            // The server sends nothing; readable means it has gone.
            let mut scratch = [0u8; 64];
            let gone = match client.as_mut() {
                Some(c) => {
                    let _ = c.set_nonblocking(true);
                    let r = c.read(&mut scratch);
                    let _ = c.set_nonblocking(false);
                    !matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
                }
                None => false,
            };
            if gone {
                client = None;
            }
        }
        if pipe_ready {
            match pipe.read(&mut buf) {
                Ok(0) => output_open = false,
                Ok(n) => {
                    split_lines(&mut partial, &mut split_long, &buf[..n], |line| {
                        if queue.len() >= BUFFER_LINES {
                            queue.pop_front();
                            dropped += 1;
                        }
                        queue.push_back(line);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => output_open = false,
            }
        }
    }
}

/// Bytes of output that may wait in the socket to the server. The kernel's default (about
/// 200 KB, some 3,000 short lines) would hold a flooding dyno's lines for tens of milliseconds
/// on their way to tails; past this the dyno's own pipe fills and it waits to write, as it
/// would on a terminal.
const SOCKET_BACKLOG: usize = 8 * 1024;

/// Size of the pipe a dyno writes its output to (the kernel's default is 64 KB), for the same
/// reason.
pub(crate) const PIPE_SIZE: i32 = 8 * 1024;

fn limit_backlog(conn: &UnixStream) {
    let _ = nix::sys::socket::setsockopt(conn, nix::sys::socket::sockopt::SndBuf, &SOCKET_BACKLOG);
}

/// Splits output into lines: at newlines, and at [`MAX_LINE`] bytes for longer ones (a newline
/// right after such a cut ends that line). `partial` holds an unfinished line between calls.
fn split_lines(
    partial: &mut Vec<u8>,
    split_long: &mut bool,
    data: &[u8],
    mut push: impl FnMut(Vec<u8>),
) {
    let mut rest = data;
    while !rest.is_empty() {
        if *split_long && rest[0] == b'\n' {
            *split_long = false;
            rest = &rest[1..];
            continue;
        }
        *split_long = false;
        // Up to the next newline, or as much as fits in a line.
        let room = MAX_LINE.saturating_sub(partial.len()).max(1);
        let window = &rest[..rest.len().min(room)];
        let (piece, ended, used) = match window.iter().position(|b| *b == b'\n') {
            Some(i) => (&window[..i], true, i + 1),
            None => (
                window,
                partial.len() + window.len() >= MAX_LINE,
                window.len(),
            ),
        };
        partial.extend_from_slice(piece);
        rest = &rest[used..];
        if ended {
            *split_long = used == piece.len();
            push(std::mem::take(partial));
        }
    }
}

/// What a relay record says.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A line of output: borrowed from the record when it is valid UTF-8, as it nearly always is.
    Output(std::borrow::Cow<'a, str>),
    Dropped(u64),
    Exit(i32),
}

/// Parses one record line (without its newline).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    match line.split_first()? {
        (b'O', rest) => Some(Record::Output(String::from_utf8_lossy(
            rest.strip_prefix(b" ").unwrap_or(rest),
        ))),
        (b'D', rest) => std::str::from_utf8(rest)
            .ok()?
            .trim()
            .parse()
            .ok()
            .map(Record::Dropped),
        (b'X', rest) => std::str::from_utf8(rest)
            .ok()?
            .trim()
            .parse()
            .ok()
            .map(Record::Exit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_splits_into_lines_like_before() {
        let run = |chunks: &[&[u8]]| {
            let (mut partial, mut split) = (Vec::new(), false);
            let mut lines = Vec::new();
            for c in chunks {
                split_lines(&mut partial, &mut split, c, |l| lines.push(l));
            }
            (lines, partial)
        };
        let (lines, rest) = run(&[b"a\nbc", b"d\n\nlast"]);
        assert_eq!(lines, vec![b"a".to_vec(), b"bcd".to_vec(), b"".to_vec()]);
        assert_eq!(rest, b"last");
        // Exactly MAX_LINE bytes then a newline: one line.
        let long = vec![b'x'; MAX_LINE];
        let mut with_nl = long.clone();
        with_nl.extend_from_slice(b"\nnext\n");
        let (lines, _) = run(&[&with_nl]);
        assert_eq!(lines, vec![long.clone(), b"next".to_vec()]);
        // Longer: cut at MAX_LINE, across reads too.
        let (lines, _) = run(&[&long[..4000], &long[..], b"yy\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1].len(), 4000 + 2);
    }

    #[test]
    fn records_parse() {
        assert_eq!(
            parse_record(b"O hello world"),
            Some(Record::Output("hello world".into()))
        );
        assert_eq!(parse_record(b"O "), Some(Record::Output("".into())));
        assert_eq!(parse_record(b"D 12"), Some(Record::Dropped(12)));
        assert_eq!(parse_record(b"X 143"), Some(Record::Exit(143)));
        assert_eq!(parse_record(b"Q"), None);
        assert_eq!(
            exit_file(Path::new("/s/abc.sock")),
            Path::new("/s/abc.exit")
        );
    }
}
