//! Attached one-off dynos: a terminal allocated inside the dyno, or plain pipes.
//!
//! For a terminal, the dyno's init opens `/dev/ptmx` of the dyno's own devpts, makes the slave the
//! app's controlling terminal and sends the master back to Slipway over a console socket
//! (`SCM_RIGHTS`) inherited as fd [`CONSOLE_FD`]. Slipway then reads and writes the master and sets
//! its window size; Ctrl-C written to it becomes SIGINT for the foreground process group, as on
//! any terminal.
#![allow(unsafe_code)]

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

/// The fd the launcher finds its console socket on.
pub const CONSOLE_FD: RawFd = 3;

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    pub cols: u16,
    pub rows: u16,
}

impl Default for TtySize {
    fn default() -> Self {
        TtySize { cols: 80, rows: 24 }
    }
}

/// Where a dyno's standard streams go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DynoStdio {
    /// Output to the app's logs, no input (formation and detached dynos).
    #[default]
    Logs,
    /// A terminal inside the dyno; the master comes back in [`DynoIo::Tty`].
    Tty(TtySize),
    /// Plain pipes, handed back in [`DynoIo::Pipes`] (`run --no-tty`).
    Pipes,
}

/// The standard streams of an attached dyno.
pub enum DynoIo {
    Tty(PtyMaster),
    Pipes {
        stdin: ChildStdin,
        stdout: ChildStdout,
        stderr: ChildStderr,
    },
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Sets a terminal's window size (which sends SIGWINCH to its foreground process group).
pub fn set_window_size(fd: RawFd, size: TtySize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    unsafe { set_winsize(fd, &ws) }.map_err(std::io::Error::from)?;
    Ok(())
}

/// The master side of a dyno's terminal.
#[derive(Clone)]
pub struct PtyMaster(Arc<AsyncFd<OwnedFd>>);

impl PtyMaster {
    /// Wraps a master fd, making it non-blocking.
    pub fn new(fd: OwnedFd) -> std::io::Result<PtyMaster> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        // SAFETY: the fd is ours alone and registered with no other reactor.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(PtyMaster(Arc::new(fd)))
    }

    /// Reads what the dyno wrote; 0 once every process holding the terminal has gone.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard
                .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), buf).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => return Ok(n),
                // The slave side is closed everywhere: the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `buf` as terminal input.
    pub async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Changes the window size.
    pub fn resize(&self, size: TtySize) -> std::io::Result<()> {
        set_window_size(self.0.get_ref().as_raw_fd(), size)
    }
}

/// Sends `fd` over the unix socket `sock` (the launcher's side).
pub fn send_fd(sock: RawFd, fd: RawFd) -> nix::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"M")];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one fd sent with [`send_fd`]; an error if the other side closed without sending.
pub async fn recv_fd(sock: &tokio::net::UnixStream) -> std::io::Result<OwnedFd> {
    loop {
        sock.readable().await?;
        let got = sock.try_io(Interest::READABLE, || {
            let mut byte = [0u8; 1];
            let mut iov = [IoSliceMut::new(&mut byte)];
            let mut space = nix::cmsg_space!([RawFd; 1]);
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            for c in msg.cmsgs().map_err(std::io::Error::from)? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    if let Some(&fd) = fds.first() {
                        // SAFETY: the kernel just gave us this fd; nothing else owns it.
                        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
            }
            Ok(None)
        });
        match got {
            Ok(Some(fd)) => return Ok(fd),
            Ok(None) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the dyno ended before its terminal was ready",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes the child see `fd` as [`CONSOLE_FD`] (and nothing else new).
pub(crate) fn pass_console(cmd: &mut tokio::process::Command, fd: RawFd) {
    // SAFETY: dup2 is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, CONSOLE_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// For host dynos: the child starts a new session with `slave` as its controlling terminal and
/// standard streams.
pub(crate) fn use_terminal(cmd: &mut tokio::process::Command, slave: RawFd) {
    // SAFETY: only async-signal-safe calls, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for target in 0..3 {
                if libc::dup2(slave, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// In the dyno's app process (launcher only): become a session leader with the terminal at
/// `slave_path` as controlling terminal and standard streams, owned by the dyno user.
pub(crate) fn attach_terminal(slave_path: &str, uid: u32, gid: u32) -> nix::Result<()> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let _ = nix::unistd::setsid();
    let slave = open(slave_path, OFlag::O_RDWR, Mode::empty())?;
    // SAFETY: TIOCSCTTY takes an int argument and no pointer.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: fchown/dup2 on an fd we own.
    unsafe {
        libc::fchown(slave, uid, gid);
        for target in 0..3 {
            if libc::dup2(slave, target) < 0 {
                return Err(nix::errno::Errno::last());
            }
        }
        if slave > 2 {
            libc::close(slave);
        }
    }
    Ok(())
}

/// In the dyno's init (launcher only): opens a terminal on the dyno's devpts, sized `size`;
/// gives the master and the slave's path.
pub(crate) fn open_terminal(size: TtySize) -> nix::Result<(OwnedFd, String)> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let path = nix::pty::ptsname_r(&master)?;
    let _ = set_window_size(master.as_raw_fd(), size);
    // SAFETY: into_raw_fd hands over ownership of the master fd.
    let fd = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((fd, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_fd_crosses_the_console_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        send_fd(a.as_raw_fd(), w.as_raw_fd()).unwrap();
        drop(a);
        b.set_nonblocking(true).unwrap();
        let b = tokio::net::UnixStream::from_std(b).unwrap();
        let got = recv_fd(&b).await.unwrap();
        use std::io::{Read, Write};
        let mut copy = std::fs::File::from(got);
        copy.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        let _ = w.flush();
        // A closed socket without an fd is an error, not a hang.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(a);
        b.set_nonblocking(true).unwrap();
        let b = tokio::net::UnixStream::from_std(b).unwrap();
        assert!(recv_fd(&b).await.is_err());
    }
}
