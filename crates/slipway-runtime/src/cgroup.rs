//! Dyno cgroups: one fresh cgroup per dyno instance, with the limits of its size, a reliable way to
//! kill everything in it, and the counters the dyno manager reports (memory, OOM kills, processes).
//!
//! [`CgroupDriver::detect`] finds out which of three layouts the host has, the same way libcgroups'
//! `get_cgroup_setup` does:
//!
//! - **V2** (`/sys/fs/cgroup` is cgroup2): one tree. The driver enables `+memory +pids +cpu` in the
//!   subtree of its base dir and writes `memory.max`, `memory.swap.max`, `pids.max` and `cpu.weight`;
//!   `cgroup.kill` and `cgroup.events` kill and watch a dyno.
//! - **V1** (legacy, no cgroup2 at all): one hierarchy per controller (`memory`, `pids`, `cpu`). A dyno
//!   gets a dir in each; limits are `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`),
//!   `pids.max` and `cpu.shares`; killing means SIGKILLing every pid in `cgroup.procs` until none is left.
//! - **Hybrid** (`/sys/fs/cgroup` is tmpfs and `unified/` is cgroup2): the limits come from the V1
//!   controllers, and a dyno also gets a dir in the (controller-less) cgroup2 tree, which still gives
//!   `cgroup.kill`, `cgroup.events` and `CLONE_INTO_CGROUP`.
//!
//! Layout: `<hierarchy>/<base>/dyno-<id>` in every hierarchy used. A name is never reused: on current
//! kernels a process started with `clone3(CLONE_INTO_CGROUP)` into a cgroup2 dir that was ever
//! `cgroup.kill`ed is SIGKILLed at birth, so each instance gets a fresh cgroup, removed after it exits
//! ([`DynoCgroup::remove`]), and leftovers of a previous run are swept at start
//! ([`CgroupDriver::cleanup_stale`]).
//!
//! Everything here is blocking file I/O on cgroupfs (microseconds), except `kill` and `remove`, which
//! poll for up to a few seconds while the kernel reaps; call those from `spawn_blocking`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, warn};

/// `statfs` magic of a cgroup2 filesystem.
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// `statfs` magic of tmpfs, which holds the v1 and hybrid hierarchies.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// How long `kill` and `remove` wait for the kernel to reap a dyno's processes.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two checks while waiting for the kernel.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Legacy: one v1 hierarchy per controller, no cgroup2.
    V1,
    /// v1 controllers plus a cgroup2 tree at `unified/` (used for kill and events only).
    Hybrid,
    /// Unified cgroup2 only.
    V2,
}

/// Limits of one dyno size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Hard limit on memory plus swap: the dyno is OOM-killed above it.
    pub memory_bytes: u64,
    /// Most processes and threads the dyno may have at once.
    pub pids: u64,
    /// v1 `cpu.shares` (1024 = one share); mapped to `cpu.weight` on v2 by [`shares_to_weight`].
    pub cpu_shares: u64,
}

/// What this host can enforce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controllers {
    /// Memory limits and OOM accounting.
    pub memory: bool,
    /// A cap on the number of processes.
    pub pids: bool,
    /// CPU shares or weight.
    pub cpu: bool,
    /// `cgroup.kill` in a cgroup2 dir (hybrid or v2).
    pub kill: bool,
}

/// Errors from creating, killing or removing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroups at {root}: {reason}; mount cgroupfs there and run the server as root"
    )]
    Unavailable { root: PathBuf, reason: String },
    #[error("could not {action} {path}: {error}; run the server as root with a writable cgroupfs")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("cgroup {path} already exists; give every dyno instance a fresh id")]
    Exists { path: PathBuf },
    #[error("invalid cgroup name {0:?}; use 1 to 128 letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    #[error("invalid dyno limits: {0}; give every dyno size a non-zero memory and pids limit")]
    InvalidLimits(&'static str),
    #[error("cgroup {path} still has processes after {waited:?}; look for processes stuck in D state (ps -eo pid,stat,cmd)")]
    Busy { path: PathBuf, waited: Duration },
}

/// Creates and sweeps dyno cgroups below one base dir per hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupDriver {
    mode: CgroupMode,
    controllers: Controllers,
    bases: Dirs,
}

/// One dir per hierarchy; on v2 the controller fields point at the unified dir.
#[derive(Debug, Clone, Default)]
struct Dirs {
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
    unified: Option<PathBuf>,
}

impl Dirs {
    fn join(&self, name: &str) -> Dirs {
        let j = |p: &Option<PathBuf>| p.as_ref().map(|p| p.join(name));
        Dirs {
            memory: j(&self.memory),
            pids: j(&self.pids),
            cpu: j(&self.cpu),
            unified: j(&self.unified),
        }
    }

    /// Every distinct dir, unified last so it is created last and removed first.
    fn all(&self) -> Vec<&PathBuf> {
        let mut out: Vec<&PathBuf> = Vec::new();
        for p in [&self.memory, &self.pids, &self.cpu, &self.unified]
            .into_iter()
            .flatten()
        {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

impl CgroupDriver {
    /// Detects the mode (statfs(`root`) is cgroup2 → V2; tmpfs with `unified/` being cgroup2 →
    /// Hybrid; else V1), creates the base dirs `<hierarchy>/<base_name>` in each controller used
    /// (memory, pids, cpu and the cgroup2 dir), and on v2 enables `+memory +pids +cpu` for the
    /// dynos. `root` is normally `/sys/fs/cgroup`.
    pub fn detect(root: &Path, base_name: &str) -> Result<CgroupDriver, CgroupError> {
        validate_name(base_name)?;
        let unavailable = |reason: String| CgroupError::Unavailable {
            root: root.to_path_buf(),
            reason,
        };
        let root_magic = fs_magic(root).map_err(|e| unavailable(format!("statfs: {e}")))?;
        let unified_magic = fs_magic(&root.join("unified")).ok();
        let mode = mode_from_magic(root_magic, unified_magic);
        let driver = match mode {
            CgroupMode::V2 => Self::detect_v2(root, base_name)?,
            CgroupMode::V1 | CgroupMode::Hybrid => Self::detect_v1(root, base_name, mode)?,
        };
        let c = driver.controllers;
        if !(c.memory || c.pids || c.cpu || c.kill) {
            return Err(unavailable(format!(
                "{mode:?} layout but no memory, pids or cpu controller is usable"
            )));
        }
        debug!(mode = ?mode, controllers = ?c, "Cgroups detected.");
        Ok(driver)
    }

    fn detect_v2(root: &Path, base_name: &str) -> Result<CgroupDriver, CgroupError> {
        let available = read_string(&root.join("cgroup.controllers")).unwrap_or_default();
        let available: Vec<&str> = available.split_whitespace().collect();
        let wanted = ["memory", "pids", "cpu"];
        // The base can only hand a controller to the dynos if its parent handed it to the base.
        for c in wanted.iter().filter(|c| available.contains(c)) {
            enable_controller(root, c);
        }
        let base = root.join(base_name);
        mkdir_existing_ok(&base)?;
        for c in &wanted {
            enable_controller(&base, c);
        }
        let enabled = read_string(&base.join("cgroup.subtree_control")).unwrap_or_default();
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        let controllers = Controllers {
            memory: enabled.contains(&"memory"),
            pids: enabled.contains(&"pids"),
            cpu: enabled.contains(&"cpu"),
            kill: base.join("cgroup.kill").exists(),
        };
        let pick = |on: bool| on.then(|| base.clone());
        Ok(CgroupDriver {
            mode: CgroupMode::V2,
            controllers,
            bases: Dirs {
                memory: pick(controllers.memory),
                pids: pick(controllers.pids),
                cpu: pick(controllers.cpu),
                unified: Some(base.clone()),
            },
        })
    }

    fn detect_v1(
        root: &Path,
        base_name: &str,
        mode: CgroupMode,
    ) -> Result<CgroupDriver, CgroupError> {
        // A hierarchy counts when it is mounted (has cgroup.procs) and the base made in it has the
        // controller's files; the pids root, for one, has no pids.max.
        let v1 = |hierarchy: &str, probe: &str| -> Result<Option<PathBuf>, CgroupError> {
            let dir = root.join(hierarchy);
            if !dir.join("cgroup.procs").exists() {
                return Ok(None);
            }
            let base = dir.join(base_name);
            mkdir_existing_ok(&base)?;
            Ok(base.join(probe).exists().then_some(base))
        };
        let memory = v1("memory", "memory.limit_in_bytes")?;
        let pids = v1("pids", "pids.max")?;
        let cpu = v1("cpu", "cpu.shares")?;
        let unified = if mode == CgroupMode::Hybrid {
            v1("unified", "cgroup.procs")?
        } else {
            None
        };
        let controllers = Controllers {
            memory: memory.is_some(),
            pids: pids.is_some(),
            cpu: cpu.is_some(),
            kill: unified
                .as_ref()
                .is_some_and(|u| u.join("cgroup.kill").exists()),
        };
        Ok(CgroupDriver {
            mode,
            controllers,
            bases: Dirs {
                memory,
                pids,
                cpu,
                unified,
            },
        })
    }

    /// Turns on `favordynmods` for the host's cgroup2 mount (the v2 root, or `unified/` on a
    /// hybrid host): moving a process into a cgroup then no longer waits for an RCU grace period.
    /// Measured here: joining a dyno's cgroups took 0.2 ms with it and up to 15 ms without;
    /// forks and exits get slightly dearer host-wide. It lasts until the next reboot or remount.
    /// Returns whether it is on; `Ok(false)` where there is no cgroup2 mount (pure v1).
    pub fn favor_dynmods(&self) -> Result<bool, CgroupError> {
        let Some(mount) = self.bases.unified.as_ref().and_then(|b| b.parent()) else {
            return Ok(false);
        };
        let info = Path::new("/proc/self/mountinfo");
        let io_err = |action: &'static str, error: io::Error| CgroupError::Io {
            action,
            path: mount.to_path_buf(),
            error,
        };
        let text = read_string(info).map_err(|e| io_err("read mountinfo for", e))?;
        let Some(plan) = favordynmods_remount(&text, mount) else {
            return Ok(false);
        };
        let (flags, data) = match plan {
            Remount::AlreadyOn => return Ok(true),
            Remount::With { flags, data } => (flags, data),
        };
        nix::mount::mount(
            None::<&str>,
            mount,
            None::<&str>,
            flags | nix::mount::MsFlags::MS_REMOUNT,
            Some(data.as_str()),
        )
        .map_err(|e| io_err("remount", e.into()))?;
        let text = read_string(info).map_err(|e| io_err("read mountinfo for", e))?;
        Ok(matches!(
            favordynmods_remount(&text, mount),
            Some(Remount::AlreadyOn)
        ))
    }

    /// The host's cgroup layout.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// What this host can enforce; sizes needing more should not be scheduled.
    pub fn controllers(&self) -> Controllers {
        self.controllers
    }

    /// The base dirs, one per hierarchy used.
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        self.bases.all().into_iter().cloned().collect()
    }

    /// Creates a fresh cgroup `<base>/dyno-<id>` in every hierarchy and writes `limits` to it.
    /// Fails with [`CgroupError::Exists`] if the name was used before; nothing is left behind on
    /// error.
    pub fn create(&self, id: &str, limits: &Limits) -> Result<DynoCgroup, CgroupError> {
        validate_name(id)?;
        self.create_named(&format!("dyno-{id}"), limits)
    }

    /// [`CgroupDriver::create`] with the whole name given (`<base>/<name>`): for what is not a
    /// dyno, such as an add-on's server.
    pub fn create_named(&self, name: &str, limits: &Limits) -> Result<DynoCgroup, CgroupError> {
        validate_name(name)?;
        if limits.memory_bytes == 0 {
            return Err(CgroupError::InvalidLimits("memory_bytes is 0"));
        }
        if limits.pids == 0 {
            return Err(CgroupError::InvalidLimits("pids is 0"));
        }
        let cg = self.open(name);
        let mut made: Vec<&PathBuf> = Vec::new();
        let result = cg
            .dirs
            .all()
            .into_iter()
            .try_for_each(|dir| match fs::create_dir(dir) {
                Ok(()) => {
                    made.push(dir);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(CgroupError::Exists { path: dir.clone() })
                }
                Err(error) => Err(CgroupError::Io {
                    action: "create",
                    path: dir.clone(),
                    error,
                }),
            })
            .and_then(|()| cg.write_limits(limits));
        if let Err(e) = result {
            // Nothing has joined yet, so the new dirs are empty and rmdir succeeds at once.
            for dir in made.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            return Err(e);
        }
        debug!(cgroup = %cg.name, limits = ?limits, "Cgroup created.");
        Ok(cg)
    }

    /// Kills the processes of and removes every `dyno-*` cgroup below the base dirs: leftovers
    /// of a previous run. Returns how many were removed. Call it at server start, before any
    /// dyno is created.
    pub fn cleanup_stale(&self) -> Result<usize, CgroupError> {
        self.cleanup_stale_except(&BTreeSet::new())
    }

    /// [`Self::cleanup_stale`], sparing the cgroups named in `keep` (dynos that outlived the
    /// previous server and are taken over).
    pub fn cleanup_stale_except(&self, keep: &BTreeSet<String>) -> Result<usize, CgroupError> {
        let mut names = BTreeSet::new();
        for base in self.bases.all() {
            let entries = match fs::read_dir(base) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(CgroupError::Io {
                        action: "list",
                        path: base.clone(),
                        error,
                    })
                }
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("dyno-")
                    && !keep.contains(&name)
                    && entry.file_type().is_ok_and(|t| t.is_dir())
                {
                    names.insert(name);
                }
            }
        }
        let mut removed = 0;
        let mut first_error = None;
        for name in names {
            match self.open(&name).remove() {
                Ok(()) => removed += 1,
                Err(error) => {
                    warn!(cgroup = %name, error = %error, "Could not remove a stale cgroup.");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Removes the (empty) base dirs; for tests and uninstalling. Run [`Self::cleanup_stale`]
    /// first.
    pub fn remove_base(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REAP_TIMEOUT;
        for dir in self.bases.all().into_iter().rev() {
            rmdir_until(dir, deadline)?;
        }
        Ok(())
    }

    /// The cgroup of a dyno that outlived the previous server, by its name (`dyno-<id>`).
    pub fn existing(&self, name: &str) -> Result<DynoCgroup, CgroupError> {
        validate_name(name)?;
        Ok(self.open(name))
    }

    /// A handle on `<base>/<name>` in every hierarchy, whether it exists or not.
    fn open(&self, name: &str) -> DynoCgroup {
        DynoCgroup {
            name: name.to_string(),
            mode: self.mode,
            dirs: self.bases.join(name),
        }
    }
}

/// The cgroup of one dyno instance, in every hierarchy. Dropping it leaves the cgroup in place;
/// [`DynoCgroup::remove`] deletes it (and [`CgroupDriver::cleanup_stale`] sweeps forgotten ones).
#[derive(Debug)]
pub struct DynoCgroup {
    name: String,
    mode: CgroupMode,
    dirs: Dirs,
}

impl DynoCgroup {
    /// The dir name, `dyno-<id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup2 dir (hybrid and v2), for `clone3(CLONE_INTO_CGROUP)`.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.dirs.unified.as_deref()
    }

    /// Every `cgroup.procs` file a process must write its own pid into to join this cgroup in
    /// all hierarchies (the launcher self-attaches before it unshares).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .all()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Moves a process (by pid) into this cgroup in all hierarchies.
    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for file in self.procs_files() {
            write_file(&file, &pid.to_string())?;
        }
        Ok(())
    }

    /// Kills every process in the cgroup and waits until none is left: `cgroup.kill` where
    /// there is a cgroup2 dir, and SIGKILL to each pid listed in any hierarchy, repeated until
    /// all are gone or [`CgroupError::Busy`] after a few seconds. Must not be called from a
    /// process inside the cgroup.
    pub fn kill(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REAP_TIMEOUT;
        if let Some(file) = self.unified_file("cgroup.kill") {
            if file.exists() {
                write_file(&file, "1")?;
            }
        }
        let me = std::process::id();
        loop {
            if !self.populated() {
                return Ok(());
            }
            for pid in self.pids() {
                if pid == me {
                    warn!(cgroup = %self.name, "The server itself is in a dyno cgroup.");
                    continue;
                }
                if let Ok(raw) = i32::try_from(pid) {
                    // ESRCH: it exited in the meantime, which is what we want.
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Busy {
                    path: self.first_dir(),
                    waited: REAP_TIMEOUT,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Memory charged to the dyno that it cannot give back without swapping, in bytes: anonymous
    /// memory (RSS) plus shmem/tmpfs plus swap. Page cache is left out, since the kernel reclaims
    /// it before it OOM-kills. `None` without a memory controller.
    pub fn memory_usage(&self) -> Option<u64> {
        let dir = self.dirs.memory.as_ref()?;
        let stat = read_string(&dir.join("memory.stat")).ok()?;
        let get = |key| parse_flat_keyed(&stat, key).unwrap_or(0);
        match self.mode {
            CgroupMode::V2 => {
                let swap = read_u64(&dir.join("memory.swap.current")).unwrap_or(0);
                Some(get("anon") + get("shmem") + swap)
            }
            // v1 `rss` includes transparent huge pages; the `total_` keys include descendants.
            CgroupMode::V1 | CgroupMode::Hybrid => {
                Some(get("total_rss") + get("total_shmem") + get("total_swap"))
            }
        }
    }

    /// How many times the kernel OOM-killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = &self.dirs.memory else {
            return 0;
        };
        let file = match self.mode {
            CgroupMode::V2 => "memory.events",
            CgroupMode::V1 | CgroupMode::Hybrid => "memory.oom_control",
        };
        read_string(&dir.join(file))
            .ok()
            .and_then(|text| parse_flat_keyed(&text, "oom_kill"))
            .unwrap_or(0)
    }

    /// Whether any process is still in the cgroup (in any hierarchy).
    pub fn populated(&self) -> bool {
        if let Some(events) = self.unified_file("cgroup.events") {
            if let Ok(text) = read_string(&events) {
                if parse_flat_keyed(&text, "populated") == Some(1) {
                    return true;
                }
                // The cgroup2 dir says empty; a process may still have joined only the v1 dirs.
                if self.mode == CgroupMode::V2 {
                    return false;
                }
            }
        }
        !self.pids().is_empty()
    }

    /// Number of processes and threads (`pids.current`), when the pids controller is there.
    pub fn pids_current(&self) -> Option<u64> {
        read_u64(&self.dirs.pids.as_ref()?.join("pids.current")).ok()
    }

    /// Kills what is left and removes the dirs, waiting briefly while the kernel finishes
    /// reaping. Dirs that are already gone are fine.
    pub fn remove(self) -> Result<(), CgroupError> {
        self.kill()?;
        let deadline = Instant::now() + REAP_TIMEOUT;
        for dir in self.dirs.all().into_iter().rev() {
            rmdir_until(dir, deadline)?;
        }
        debug!(cgroup = %self.name, "Cgroup removed.");
        Ok(())
    }

    /// Writes `limits` (a size or plan change).
    pub fn write_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let v2 = self.mode == CgroupMode::V2;
        if let Some(dir) = &self.dirs.memory {
            let bytes = limits.memory_bytes.to_string();
            if v2 {
                write_file(&dir.join("memory.max"), &bytes)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
            } else {
                // memsw (memory + swap) must stay >= the memory limit, so it goes second.
                write_file(&dir.join("memory.limit_in_bytes"), &bytes)?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &bytes)?;
                } else {
                    // No swap accounting: keep the dyno's anonymous memory out of swap instead.
                    write_file(&dir.join("memory.swappiness"), "0")?;
                }
            }
        }
        if let Some(dir) = &self.dirs.pids {
            write_file(&dir.join("pids.max"), &limits.pids.to_string())?;
        }
        if let Some(dir) = &self.dirs.cpu {
            if v2 {
                let weight = shares_to_weight(limits.cpu_shares);
                write_file(&dir.join("cpu.weight"), &weight.to_string())?;
            } else {
                let shares = limits.cpu_shares.clamp(2, 262_144);
                write_file(&dir.join("cpu.shares"), &shares.to_string())?;
            }
        }
        Ok(())
    }

    fn unified_file(&self, file: &str) -> Option<PathBuf> {
        self.dirs.unified.as_ref().map(|d| d.join(file))
    }

    /// Every pid listed in any hierarchy's `cgroup.procs`; dirs that are gone count as empty.
    fn pids(&self) -> BTreeSet<u32> {
        self.procs_files()
            .iter()
            .filter_map(|f| read_string(f).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }

    fn first_dir(&self) -> PathBuf {
        self.dirs
            .all()
            .first()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    }
}

/// Maps v1 `cpu.shares` to v2 `cpu.weight` proportionally, so the defaults match (1024 → 100)
/// and ratios between dyno sizes are kept; clamped to the valid 1..=10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    (shares.saturating_mul(100) / 1024).clamp(1, 10_000)
}

/// What remounting a cgroup2 mount with `favordynmods` takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Remount {
    AlreadyOn,
    /// Remount with these per-mount flags (kept as they are) and superblock options (all of
    /// today's plus `favordynmods`, since a remount replaces them).
    With {
        flags: nix::mount::MsFlags,
        data: String,
    },
}

/// Reads `/proc/self/mountinfo` text for the cgroup2 mount at `mount_point`.
pub fn favordynmods_remount(mountinfo: &str, mount_point: &Path) -> Option<Remount> {
    use nix::mount::MsFlags;
    let want = mount_point.to_str()?;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(point), Some(opts)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let right: Vec<&str> = right.split(' ').collect();
        if *point != want || right.first() != Some(&"cgroup2") {
            continue;
        }
        let super_opts = right.get(2).copied().unwrap_or("");
        if super_opts.split(',').any(|o| o == "favordynmods") {
            return Some(Remount::AlreadyOn);
        }
        let mut flags = MsFlags::empty();
        for o in opts.split(',') {
            flags |= match o {
                "ro" => MsFlags::MS_RDONLY,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                _ => MsFlags::empty(),
            };
        }
        let mut data: Vec<&str> = super_opts
            .split(',')
            .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
            .collect();
        data.push("favordynmods");
        return Some(Remount::With {
            flags,
            data: data.join(","),
        });
    }
    None
}

/// The mode for the `statfs` magic numbers of the root and of `<root>/unified` (if it exists).
pub fn mode_from_magic(root_magic: u64, unified_magic: Option<u64>) -> CgroupMode {
    if root_magic == CGROUP2_SUPER_MAGIC {
        CgroupMode::V2
    } else if root_magic == TMPFS_MAGIC && unified_magic == Some(CGROUP2_SUPER_MAGIC) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

/// The value of `key` in a flat keyed cgroup file (`memory.oom_control`, `memory.events`,
/// `cgroup.events`, `memory.stat`, `pids.events`): lines of `<key> <number>`.
pub fn parse_flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// Hierarchy id; 0 for cgroup2.
    pub hierarchy_id: u32,
    /// Controllers bound to the hierarchy (`memory`, `cpu`, `name=systemd`); empty for cgroup2.
    pub controllers: Vec<String>,
    /// The process's cgroup, relative to the hierarchy's root.
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup` (`id:controllers:path` per line); malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let hierarchy_id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                hierarchy_id,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// Names become directory names: keep them to a safe alphabet.
fn validate_name(name: &str) -> Result<(), CgroupError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidName(name.to_string()))
    }
}

fn fs_magic(path: &Path) -> nix::Result<u64> {
    let st = nix::sys::statfs::statfs(path)?;
    // The width and sign of f_type vary by libc; the magic numbers are small and positive.
    Ok(u64::try_from(st.filesystem_type().0).unwrap_or(0))
}

/// Asks `dir` to pass `controller` on to its children; failures only shrink [`Controllers`].
fn enable_controller(dir: &Path, controller: &str) {
    let file = dir.join("cgroup.subtree_control");
    if let Err(error) = fs::write(&file, format!("+{controller}")) {
        warn!(path = %file.display(), controller, error = %error, "Could not enable a cgroup controller.");
    }
}

fn mkdir_existing_ok(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(CgroupError::Io {
            action: "create",
            path: dir.to_path_buf(),
            error,
        }),
    }
}

/// rmdir, retrying on EBUSY until `deadline` (a cgroup stays busy until its last process is
/// reaped). A dir that is already gone counts as removed.
fn rmdir_until(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && Instant::now() < deadline => {
                thread::sleep(POLL_INTERVAL);
            }
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                return Err(CgroupError::Busy {
                    path: dir.to_path_buf(),
                    waited: REAP_TIMEOUT,
                })
            }
            Err(error) => {
                return Err(CgroupError::Io {
                    action: "remove",
                    path: dir.to_path_buf(),
                    error,
                })
            }
        }
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|error| CgroupError::Io {
        action: "write",
        path: path.to_path_buf(),
        error,
    })
}

fn read_string(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}

fn read_u64(path: &Path) -> io::Result<u64> {
    read_string(path)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn favordynmods_remount_keeps_the_mounts_options() {
        use nix::mount::MsFlags;
        let info = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,favordynmods\n";
        assert_eq!(
            favordynmods_remount(info, Path::new("/sys/fs/cgroup")),
            Some(Remount::With {
                flags: MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC
                    | MsFlags::MS_RELATIME,
                data: "nsdelegate,memory_recursiveprot,favordynmods".into()
            })
        );
        assert_eq!(
            favordynmods_remount(info, Path::new("/sys/fs/cgroup/unified")),
            Some(Remount::AlreadyOn)
        );
        assert_eq!(favordynmods_remount(info, Path::new("/nope")), None);
    }

    #[test]
    fn magic_numbers_map_to_modes() {
        assert_eq!(mode_from_magic(CGROUP2_SUPER_MAGIC, None), CgroupMode::V2);
        assert_eq!(
            mode_from_magic(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            CgroupMode::Hybrid
        );
        assert_eq!(mode_from_magic(TMPFS_MAGIC, None), CgroupMode::V1);
        // unified/ on tmpfs is just a dir, not a cgroup2 mount.
        assert_eq!(
            mode_from_magic(TMPFS_MAGIC, Some(TMPFS_MAGIC)),
            CgroupMode::V1
        );
        assert_eq!(
            nix::sys::statfs::CGROUP2_SUPER_MAGIC.0 as u64,
            CGROUP2_SUPER_MAGIC
        );
        assert_eq!(nix::sys::statfs::TMPFS_MAGIC.0 as u64, TMPFS_MAGIC);
    }

    #[test]
    fn parses_oom_control_and_memory_events() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_flat_keyed(v1, "oom_kill"), Some(3));
        assert_eq!(parse_flat_keyed(v1, "under_oom"), Some(0));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_flat_keyed(v2, "oom_kill"), Some(1));
        assert_eq!(parse_flat_keyed(v2, "oom"), Some(2));
        assert_eq!(parse_flat_keyed(v2, "oom_kil"), None);
        assert_eq!(
            parse_flat_keyed("populated 1\nfrozen 0\n", "populated"),
            Some(1)
        );
        assert_eq!(parse_flat_keyed("oom_kill x\n", "oom_kill"), None);
        assert_eq!(parse_flat_keyed("", "oom_kill"), None);
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/x:y\n0::/\nbogus\n";
        let lines = parse_proc_cgroup(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].controllers, ["name=systemd"]);
        assert_eq!(lines[1].path, "/a/b");
        assert_eq!(lines[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(lines[2].path, "/x:y");
        assert_eq!(
            lines[3],
            ProcCgroup {
                hierarchy_id: 0,
                controllers: vec![],
                path: "/".into()
            }
        );
    }

    #[test]
    fn shares_map_to_weights() {
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(2048), 200);
        assert_eq!(shares_to_weight(16384), 1600);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn names_are_checked() {
        for ok in ["web.1-3f2a", "slipway", "a_b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    /// A fake v1 tree in a temp dir: the file logic without root.
    fn fake_v1(root: &Path) {
        for (h, probe) in [
            ("memory", "memory.limit_in_bytes"),
            ("pids", "pids.max"),
            ("cpu", "cpu.shares"),
        ] {
            fs::create_dir_all(root.join(h).join("base")).unwrap();
            fs::write(root.join(h).join("cgroup.procs"), "").unwrap();
            fs::write(root.join(h).join("base").join(probe), "").unwrap();
        }
    }

    #[test]
    fn fake_v1_tree_gets_limits_and_refuses_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path());
        let driver = CgroupDriver::detect(tmp.path(), "base").unwrap();
        assert_eq!(driver.mode(), CgroupMode::V1);
        assert_eq!(
            driver.controllers(),
            Controllers {
                memory: true,
                pids: true,
                cpu: true,
                kill: false
            }
        );
        let limits = Limits {
            memory_bytes: 512 << 20,
            pids: 256,
            cpu_shares: 1024,
        };
        let cg = driver.create("web-1", &limits).unwrap();
        let read = |p: &str| fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(
            read("memory/base/dyno-web-1/memory.limit_in_bytes"),
            "536870912"
        );
        assert_eq!(read("memory/base/dyno-web-1/memory.swappiness"), "0");
        assert_eq!(read("pids/base/dyno-web-1/pids.max"), "256");
        assert_eq!(read("cpu/base/dyno-web-1/cpu.shares"), "1024");
        assert_eq!(cg.procs_files().len(), 3);
        assert!(cg.unified_dir().is_none());
        assert!(matches!(
            driver.create("web-1", &limits),
            Err(CgroupError::Exists { .. })
        ));
        // A half-made cgroup is rolled back.
        fs::create_dir(tmp.path().join("cpu/base/dyno-web-2")).unwrap();
        assert!(driver.create("web-2", &limits).is_err());
        assert!(!tmp.path().join("memory/base/dyno-web-2").exists());
        assert!(matches!(
            driver.create("web-3", &Limits { pids: 0, ..limits }),
            Err(CgroupError::InvalidLimits(_))
        ));
    }
}
