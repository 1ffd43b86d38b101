//! `dyno-exec`: the small launcher that turns a [`LaunchSpec`] into a running container.
//!
//! The dyno manager spawns it (the `slipway` binary with the hidden `dyno-exec` command) with the
//! spec in `SLIPWAY_LAUNCH_SPEC`. It runs single-threaded:
//!
//! 1. **shim** (host pid namespace): joins the dyno's cgroups, enters its network namespace,
//!    unshares mount, pid, UTS and IPC namespaces and forks; then forwards SIGTERM & co. to init
//!    and exits with init's status.
//! 2. **init** (PID 1 of the dyno): builds the root (read-only `nosuid,nodev` stack, overlay `/app`
//!    on a tmpfs scratch, minimal `/dev` with a private devpts, `/proc` with read-only `/proc/sys`,
//!    tmpfs `/tmp`, generated `/etc/hosts`, `resolv.conf`, `hostname`), pivots into it, forks the
//!    app, drops to the dyno user, reaps zombies, turns SIGTERM into `kill(-1, SIGTERM)` for the
//!    whole dyno and exits with the app's status: at once when the app exits by itself, or once
//!    every process has exited after a SIGTERM (so each gets its grace period). Its death (or the
//!    shim's) ends the pid namespace.
//! 3. **app**: no capabilities, no supplementary groups, the dyno uid, NO_NEW_PRIVS and a seccomp
//!    deny-list, then `bash -c` of the Procfile command in `/app`.
//!
//! A *build dyno* (the builder's sandbox) sets [`LaunchSpec::writable_root`]: `/` is then an
//! overlay of the stack on the scratch tmpfs, so init can make mount points for
//! [`LaunchSpec::binds`] (the build's own directories, at their host paths) anywhere; `/usr` and
//! the stack's other binds stay read-only.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    chdir, execve, fork, pivot_root, sethostname, setresgid, setresuid, ForkResult, Gid, Pid, Uid,
};
use serde::{Deserialize, Serialize};

use crate::stack::Stack;

/// The environment variable the spec travels in.
pub const SPEC_ENV: &str = "SLIPWAY_LAUNCH_SPEC";

/// Everything the launcher needs to start one dyno.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    pub stack: Stack,
    /// The unpacked slug: the overlay's lower layer at `/app`.
    pub slug_dir: PathBuf,
    /// Per-instance directory on the host: mount point of the new root and generated files.
    pub dyno_dir: PathBuf,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    /// The Procfile command, run by `bash -c` after `.profile.d`.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// `cgroup.procs` files to join before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// A network namespace to enter (`/run/netns/<name>`); `None` shares the host's network.
    pub netns: Option<PathBuf>,
    /// Size of the tmpfs holding `/app`'s writable layer, e.g. `512m`.
    pub scratch_size: String,
    /// Size of `/tmp`, e.g. `256m`.
    pub tmp_size: String,
    /// Host paths bound into the root after everything else, always `nosuid,nodev`.
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// The command's working directory; `/app` when unset.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// `/` is a writable overlay of the stack (on the scratch tmpfs) instead of a read-only bind,
    /// so mount points for `binds` can be made anywhere. For build dynos.
    #[serde(default)]
    pub writable_root: bool,
    /// Runs `command` as it is: no `.profile.d`, and `env` is the whole environment (no `PATH`,
    /// `HOME`, `LANG` or `TMPDIR` defaults). For build dynos.
    #[serde(default)]
    pub raw: bool,
    /// Gives the app a terminal of this size, whose master goes back over the console socket
    /// ([`crate::tty::CONSOLE_FD`]).
    #[serde(default)]
    pub tty: Option<crate::tty::TtySize>,
    /// Relay mode (see [`crate::relay`]): the dyno's output goes to a pipe the shim serves on
    /// this unix socket, and the dyno outlives the server.
    #[serde(default)]
    pub relay: Option<PathBuf>,
}

/// A host path bound into a dyno.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// The directory (or file) on the host.
    pub host: PathBuf,
    /// Where it appears inside: absolute, without `..`; missing directories are made (as root).
    pub inside: PathBuf,
    /// Read-write; otherwise the bind is remounted read-only.
    pub writable: bool,
}

/// Signals init passes on to every process of the dyno.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn fail(step: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("Error R99 (Platform error) -> could not start the dyno: {step}: {err}");
    std::process::exit(127)
}

fn forwarded_set(with_chld: bool) -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    if with_chld {
        set.add(Signal::SIGCHLD);
    }
    set
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Entry point of `slipway dyno-exec`. Never returns.
pub fn launcher_main() -> ! {
    let spec: LaunchSpec = match std::env::var(SPEC_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => fail("reading the launch spec", e),
    };
    std::env::remove_var(SPEC_ENV);
    // Without a relay, killed with the dyno manager, never left behind; with one, the dyno
    // outlives it and the next server takes it over.
    if spec.relay.is_none() {
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
            fail("PR_SET_PDEATHSIG", e);
        }
    }
    let me = std::process::id().to_string();
    for procs in &spec.cgroup_procs {
        if let Err(e) = std::fs::write(procs, &me) {
            fail(&format!("joining cgroup {}", procs.display()), e);
        }
    }
    if let Some(ns) = &spec.netns {
        match std::fs::File::open(ns) {
            Ok(f) => {
                if let Err(e) = setns(f, CloneFlags::CLONE_NEWNET) {
                    fail("entering the network namespace", e);
                }
            }
            Err(e) => fail(&format!("opening {}", ns.display()), e),
        }
    }
    if let Err(e) = unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    ) {
        fail("unshare", e);
    }
    // Block the forwarded signals before forking so none is lost between fork and sigwait.
    // Compiled once; init and the app each install it after the forks.
    let filters = match crate::seccomp::compile() {
        Ok(f) => f,
        Err(e) => fail("compiling the seccomp filter", e),
    };
    let shim_set = forwarded_set(true);
    if let Err(e) = shim_set.thread_block() {
        fail("blocking signals", e);
    }
    // Relay mode: the dyno writes to a pipe the shim reads, served on a unix socket.
    let relay = spec.relay.clone().map(|sock| {
        let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(p) => p,
            Err(e) => fail("creating the output pipe", e),
        };
        // A small pipe keeps a flooding dyno's lines from waiting long on their way to tails.
        let _ = nix::fcntl::fcntl(
            read.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(crate::relay::PIPE_SIZE),
        );
        let _ = std::fs::remove_file(&sock);
        let listener = match std::os::unix::net::UnixListener::bind(&sock) {
            Ok(l) => l,
            Err(e) => fail(&format!("listening on {}", sock.display()), e),
        };
        for target in [1, 2] {
            if let Err(e) = nix::unistd::dup2(write.as_raw_fd(), target) {
                fail("redirecting output", e);
            }
        }
        drop(write);
        let dir = match std::fs::File::open(sock.parent().unwrap_or(Path::new("/"))) {
            Ok(d) => OwnedFd::from(d),
            Err(e) => fail("opening the state dir", e),
        };
        (read, listener, sock, dir)
    });
    // SAFETY: single-threaded process; the child only calls async-signal-safe functions until it
    // execs or exits (it is itself a fresh single-threaded process).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => init(spec, &filters),
        Ok(ForkResult::Parent { child }) => {
            if spec.tty.is_some() {
                // Only init sends on the console socket; its end must close when init does.
                let _ = nix::unistd::close(crate::tty::CONSOLE_FD);
            }
            match relay {
                Some((read, listener, sock, dir)) => {
                    // Only the dyno's processes may hold the pipe, so it ends with them.
                    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
                        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
                    }
                    crate::relay::shim_relay(child, &shim_set, read, listener, sock, dir)
                }
                None => shim(child, &shim_set),
            }
        }
        Err(e) => fail("fork", e),
    }
}

/// The shim: forwards signals to init and exits with its status.
fn shim(init_pid: Pid, set: &SigSet) -> ! {
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(init_pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(status) => {
                        if let Some(code) = exit_code(status) {
                            std::process::exit(code);
                        }
                    }
                    Err(_) => std::process::exit(255),
                }
            },
            Ok(sig) => {
                let _ = kill(init_pid, sig);
            }
            Err(_) => {}
        }
    }
}

fn mnt(src: Option<&str>, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) {
    if let Err(e) = mount(src, target, fstype, flags, data) {
        fail(&format!("mounting {}", target.display()), e);
    }
}

fn bind_ro(src: &Path, target: &Path, rec: bool) {
    let rec = if rec {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    if let Err(e) = mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    ) {
        fail(
            &format!("binding {} on {}", src.display(), target.display()),
            e,
        );
    }
    let ro = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV;
    if let Err(e) = mount(None::<&str>, target, None::<&str>, ro, None::<&str>) {
        fail(&format!("making {} read-only", target.display()), e);
    }
}

/// Binds `src` on `target` (not recursively), `nosuid,nodev`, read-only unless `writable`.
fn bind(src: &Path, target: &Path, writable: bool) {
    if let Err(e) = mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        fail(
            &format!("binding {} on {}", src.display(), target.display()),
            e,
        );
    }
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
        fail(&format!("remounting {}", target.display()), e);
    }
}

/// The components of a bind's path inside the dyno, which must be absolute and free of `..`.
fn inside_components(inside: &Path) -> Result<Vec<&std::ffi::OsStr>, String> {
    use std::path::Component;
    if !inside.is_absolute() {
        return Err(format!("{} is not absolute", inside.display()));
    }
    let mut parts = Vec::new();
    for c in inside.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{} goes through ..", inside.display()))
            }
        }
    }
    if parts.is_empty() {
        return Err("a bind cannot cover /".into());
    }
    Ok(parts)
}

/// Makes the mount point for a bind under `root` (directories 0755 owned by root, or an empty
/// file when binding a file), refusing to go through symlinks, which would resolve on the host.
fn mount_point(root: &Path, inside: &Path, dir: bool) -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parts = match inside_components(inside) {
        Ok(p) => p,
        Err(e) => fail("checking a bind", e),
    };
    let mut at = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => fail(
                "making a mount point",
                format!("{} is a symlink", at.display()),
            ),
            Ok(m) if m.is_dir() || (last && !dir) => {}
            Ok(_) => fail(
                "making a mount point",
                format!("{} is not a directory", at.display()),
            ),
            Err(_) if last && !dir => {
                if let Err(e) = std::fs::write(&at, "") {
                    fail(&format!("creating {}", at.display()), e);
                }
            }
            Err(_) => {
                if let Err(e) = std::fs::DirBuilder::new().mode(0o755).create(&at) {
                    fail(&format!("creating {}", at.display()), e);
                }
                // Whatever the umask, the dyno user must be able to walk down to its binds.
                let _ = std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
    at
}

fn write_file(path: &Path, body: &str) {
    if let Err(e) = std::fs::write(path, body) {
        fail(&format!("writing {}", path.display()), e);
    }
}

/// Builds the dyno's filesystem under `spec.dyno_dir/root` and pivots into it.
fn build_root(spec: &LaunchSpec) {
    let none = None::<&str>;
    mnt(
        none,
        Path::new("/"),
        none,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        none,
    );
    // Everything the dyno writes, and its mount points, live on a tmpfs that dies with it, so
    // a start touches the host's disk no more than it must.
    let scratch = spec.dyno_dir.join("scratch");
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        fail(&format!("creating {}", scratch.display()), e);
    }
    mnt(
        Some("tmpfs"),
        &scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={},mode=0755", spec.scratch_size)),
    );
    let root = scratch.join("root");
    let etc = scratch.join("etc");
    for dir in [&root, &etc] {
        if let Err(e) = std::fs::create_dir(dir) {
            fail(&format!("creating {}", dir.display()), e);
        }
    }
    write_file(&etc.join("hostname"), &format!("{}\n", spec.hostname));
    write_file(
        &etc.join("hosts"),
        &format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            spec.hostname
        ),
    );
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = resolv
        .lines()
        .filter(|l| {
            l.starts_with("nameserver") || l.starts_with("search") || l.starts_with("options")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_file(&etc.join("resolv.conf"), &resolv);
    // The stack, no setuid, no devices: read-only, or for a build dyno a throwaway overlay.
    if spec.writable_root {
        let (upper, work) = (scratch.join("root-upper"), scratch.join("root-work"));
        for dir in [&upper, &work] {
            if let Err(e) = std::fs::create_dir_all(dir) {
                fail("creating the root overlay dirs", e);
            }
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            spec.stack.root.display(),
            upper.display(),
            work.display()
        );
        mnt(
            Some("overlay"),
            &root,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&opts),
        );
    } else {
        bind_ro(&spec.stack.root, &root, false);
    }
    for (host, inside) in &spec.stack.binds {
        bind_ro(host, &root.join(inside), true);
    }
    // /app: overlay of the slug with a writable layer on the scratch tmpfs.
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    for dir in [&upper, &work] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            fail("creating the overlay dirs", e);
        }
    }
    let _ = nix::unistd::chown(
        &upper,
        Some(Uid::from_raw(spec.uid)),
        Some(Gid::from_raw(spec.gid)),
    );
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        spec.slug_dir.display(),
        upper.display(),
        work.display()
    );
    mnt(
        Some("overlay"),
        &root.join("app"),
        Some("overlay"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&opts),
    );
    // /proc for the new pid namespace, with /proc/sys read-only.
    let proc_dir = root.join("proc");
    mnt(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    );
    bind_ro(&proc_dir.join("sys"), &proc_dir.join("sys"), false);
    // /tmp.
    mnt(
        Some("tmpfs"),
        &root.join("tmp"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={},mode=1777", spec.tmp_size)),
    );
    // A minimal /dev.
    let dev = root.join("dev");
    mnt(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    );
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        if let Err(e) = mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        ) {
            fail(&format!("mknod {}", path.display()), e);
        }
        // mknod is subject to the umask.
        let _ = nix::sys::stat::fchmodat(
            None,
            &path,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        );
    }
    for sub in ["pts", "shm"] {
        let _ = std::fs::create_dir(dev.join(sub));
    }
    mnt(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&format!(
            "newinstance,ptmxmode=0666,mode=0620,gid={}",
            spec.gid
        )),
    );
    mnt(
        Some("tmpfs"),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=64m,mode=1777"),
    );
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    // Generated /etc files.
    for f in ["hosts", "resolv.conf", "hostname"] {
        bind_ro(&etc.join(f), &root.join("etc").join(f), false);
    }
    // Last, so that no mount above (say the /tmp tmpfs) hides them.
    for b in &spec.binds {
        let target = mount_point(&root, &b.inside, b.host.is_dir());
        bind(&b.host, &target, b.writable);
    }
    if let Err(e) = sethostname(&spec.hostname) {
        fail("sethostname", e);
    }
    // Pivot: the old root is stacked under the new one and detached.
    if let Err(e) = chdir(&root) {
        fail("chdir to the new root", e);
    }
    if let Err(e) = pivot_root(".", ".") {
        fail("pivot_root", e);
    }
    if let Err(e) = umount2(".", MntFlags::MNT_DETACH) {
        fail("detaching the old root", e);
    }
    if let Err(e) = chdir("/") {
        fail("chdir /", e);
    }
}

/// Drops every privilege: capabilities, groups, uid; NO_NEW_PRIVS; seccomp.
fn drop_privileges(uid: u32, gid: u32, filters: &crate::seccomp::Filters) {
    use caps::{CapSet, Capability};
    for cap in caps::all() {
        if cap != Capability::CAP_SETPCAP {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    let _ = caps::drop(None, CapSet::Bounding, Capability::CAP_SETPCAP);
    if let Err(e) = caps::clear(None, CapSet::Ambient) {
        fail("clearing ambient capabilities", e);
    }
    if let Err(e) = caps::clear(None, CapSet::Inheritable) {
        fail("clearing inheritable capabilities", e);
    }
    if let Err(e) = nix::unistd::setgroups(&[]) {
        fail("setgroups", e);
    }
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    if let Err(e) = setresgid(g, g, g) {
        fail("setresgid", e);
    }
    if let Err(e) = setresuid(u, u, u) {
        fail("setresuid", e);
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail("NO_NEW_PRIVS", e);
    }
    if let Err(e) = filters.apply() {
        fail("seccomp", e);
    }
}

/// PID 1 of the dyno.
fn init(spec: LaunchSpec, filters: &crate::seccomp::Filters) -> ! {
    build_root(&spec);
    // The terminal comes from the dyno's own devpts, now at /dev/pts.
    let terminal = spec.tty.map(|size| match crate::tty::open_terminal(size) {
        Ok(t) => t,
        Err(e) => fail("opening a terminal", e),
    });
    // SAFETY: still single-threaded.
    let app = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let slave = terminal.as_ref().map(|(_, path)| path.clone());
            drop(terminal);
            if slave.is_some() {
                let _ = nix::unistd::close(crate::tty::CONSOLE_FD);
            }
            run_app(&spec, slave.as_deref(), filters)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => fail("fork of the app", e),
    };
    if let Some((master, _)) = terminal {
        if let Err(e) = crate::tty::send_fd(crate::tty::CONSOLE_FD, master.as_raw_fd()) {
            let _ = kill(app, Signal::SIGKILL);
            fail("handing over the terminal", e);
        }
        drop(master);
        let _ = nix::unistd::close(crate::tty::CONSOLE_FD);
    }
    drop_privileges(spec.uid, spec.gid, filters);
    // After setresuid, which clears it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let set = forwarded_set(true);
    let mut app_status: Option<i32> = None;
    // Set once SIGTERM has been passed on: from then on every process gets its grace period,
    // and the dyno ends when the last one has exited (or the manager's SIGKILL comes).
    let mut terminating = false;
    loop {
        // Reap everything that has exited; note the app's status.
        let mut children_left = true;
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if status.pid() == Some(app) {
                        app_status = exit_code(status);
                    }
                }
                Err(nix::errno::Errno::ECHILD) => {
                    children_left = false;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(code) = app_status {
            // Otherwise the dyno ends with its app; the kernel kills what is left when PID 1
            // exits.
            if !terminating || !children_left {
                std::process::exit(code);
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(sig) => {
                if sig == Signal::SIGTERM {
                    terminating = true;
                }
                let _ = kill(Pid::from_raw(-1), sig);
            }
            Err(_) => {}
        }
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// The app: unprivileged, in `/app`, running the command through bash.
fn run_app(spec: &LaunchSpec, terminal: Option<&str>, filters: &crate::seccomp::Filters) -> ! {
    match terminal {
        Some(path) => {
            if let Err(e) = crate::tty::attach_terminal(path, spec.uid, spec.gid) {
                fail(&format!("attaching {path}"), e);
            }
        }
        None => {
            let _ = nix::unistd::setsid();
        }
    }
    // Signals blocked in init must not stay blocked in the app.
    let _ = SigSet::all().thread_unblock();
    drop_privileges(spec.uid, spec.gid, filters);
    let cwd = spec.cwd.as_deref().unwrap_or(Path::new("/app"));
    if let Err(e) = chdir(cwd) {
        fail(&format!("chdir {}", cwd.display()), e);
    }
    let mut env: HashMap<String, String> = HashMap::new();
    let script = if spec.raw {
        spec.command.clone()
    } else {
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("HOME".into(), "/app".into());
        env.insert("TMPDIR".into(), "/tmp".into());
        crate::launch_script(&spec.command)
    };
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    let env: Vec<CString> = env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect();
    let shell = if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let argv = [cstr(shell), cstr("-c"), cstr(&script)];
    let Err(e) = execve(&cstr(shell), &argv, &env);
    fail(&format!("running {shell}"), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_paths_must_be_absolute_and_stay_inside() {
        let ok = inside_components(Path::new("/tmp/x/./build_1")).unwrap();
        assert_eq!(ok, ["tmp", "x", "build_1"]);
        assert!(inside_components(Path::new("tmp/x")).is_err());
        assert!(inside_components(Path::new("/tmp/../etc")).is_err());
        assert!(inside_components(Path::new("/")).is_err());
    }

    #[test]
    fn older_specs_still_parse() {
        let spec = LaunchSpec {
            stack: Stack {
                name: "s".into(),
                root: "/r".into(),
                binds: vec![],
            },
            slug_dir: "/slug".into(),
            dyno_dir: "/d".into(),
            hostname: "h".into(),
            uid: 1,
            gid: 1,
            command: "true".into(),
            env: BTreeMap::new(),
            cgroup_procs: vec![],
            netns: None,
            scratch_size: "1m".into(),
            tmp_size: "1m".into(),
            binds: vec![],
            cwd: None,
            writable_root: false,
            raw: false,
            tty: None,
            relay: None,
        };
        let mut json: serde_json::Value = serde_json::to_value(&spec).unwrap();
        for k in ["binds", "cwd", "writable_root", "raw"] {
            json.as_object_mut().unwrap().remove(k);
        }
        let back: LaunchSpec = serde_json::from_value(json).unwrap();
        assert!(back.binds.is_empty() && back.cwd.is_none() && !back.writable_root && !back.raw);
    }
}
