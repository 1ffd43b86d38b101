//! The cgroup driver against the host's real cgroups. Needs root; skips otherwise.
//!
//! Each test works below its own base dir (`slipway-test-<pid>-<nanos>-<test>`), which it removes
//! at the end, even when it fails, together with every process it started.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use slipway_runtime::cgroup::{
    parse_proc_cgroup, CgroupDriver, CgroupError, CgroupMode, Controllers, DynoCgroup, Limits,
    ProcCgroup,
};

const ROOT: &str = "/sys/fs/cgroup";

/// A driver on a fresh base; on drop, sweeps its dyno cgroups and removes the base dirs.
struct Base {
    driver: CgroupDriver,
    name: String,
}

impl Drop for Base {
    fn drop(&mut self) {
        if let Err(e) = self.driver.cleanup_stale() {
            eprintln!("cleanup of {} failed: {e}", self.name);
        }
        if let Err(e) = self.driver.remove_base() {
            eprintln!("removing base {} failed: {e}", self.name);
        }
    }
}

fn setup(test: &str) -> Option<Base> {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: not running as root");
        return None;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("slipway-test-{}-{nanos}-{test}", std::process::id());
    match CgroupDriver::detect(Path::new(ROOT), &name) {
        Ok(driver) => Some(Base { driver, name }),
        Err(e) => {
            println!("SKIPPED: {ROOT} is unusable: {e}");
            None
        }
    }
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        pids: 100,
        cpu_shares: 512,
    }
}

/// A child process that is killed and reaped when the test ends, whatever happens.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// `sh -c 'read _; <script>'`: the script starts only after [`Proc::go`], so it can be
    /// attached to a cgroup first.
    fn gated(script: &str) -> Proc {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read _; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn go(&mut self) {
        let mut stdin = self.0.stdin.take().unwrap();
        stdin.write_all(b"\n").unwrap();
    }

    /// Waits for the exit, polling; panics after `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stdout_and_stderr(&mut self) -> (String, String) {
        use std::io::Read;
        let mut out = String::new();
        let mut err = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (out, err)
    }
}

/// The cgroup dirs of a dyno, as the tests expect them.
fn dyno_dirs(base: &Base, id: &str) -> Vec<PathBuf> {
    let dyno = format!("dyno-{id}");
    base.driver
        .base_dirs()
        .into_iter()
        .map(|b| b.join(&dyno))
        .collect()
}

/// Whether `pid` is in `<base>/dyno-<id>` in every hierarchy the driver uses.
fn is_member(base: &Base, cg: &DynoCgroup, pid: u32) -> bool {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let lines = parse_proc_cgroup(&text);
    let want = format!("/{}/{}", base.name, cg.name());
    let in_hierarchy = |which: &dyn Fn(&ProcCgroup) -> bool| {
        lines
            .iter()
            .find(|l| which(l))
            .is_some_and(|l| l.path.ends_with(&want))
    };
    let c = base.driver.controllers();
    let v1 = base.driver.mode() != CgroupMode::V2;
    for (on, ctl) in [(c.memory, "memory"), (c.pids, "pids"), (c.cpu, "cpu")] {
        if on && v1 && !in_hierarchy(&|l| l.controllers.iter().any(|x| x == ctl)) {
            return false;
        }
    }
    cg.unified_dir().is_none() || in_hierarchy(&|l| l.hierarchy_id == 0)
}

/// The layout this host should be detected as, read from /proc/mounts instead of statfs.
fn expected_mode() -> CgroupMode {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let cgroup2_at = |dir: &str| {
        mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == dir && f[2] == "cgroup2"
        })
    };
    if cgroup2_at(ROOT) {
        CgroupMode::V2
    } else if cgroup2_at(&format!("{ROOT}/unified")) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

#[test]
fn detects_the_host_layout_and_controllers() {
    let Some(base) = setup("detect") else { return };
    assert_eq!(base.driver.mode(), expected_mode());
    if base.driver.mode() == CgroupMode::Hybrid {
        assert_eq!(
            base.driver.controllers(),
            Controllers {
                memory: true,
                pids: true,
                cpu: true,
                kill: true
            }
        );
    }
    for dir in base.driver.base_dirs() {
        assert!(dir.is_dir(), "{}", dir.display());
    }
    // Detecting again with the same base is fine (the server restarts).
    let again = CgroupDriver::detect(Path::new(ROOT), &base.name).unwrap();
    assert_eq!(again.base_dirs(), base.driver.base_dirs());
}

#[test]
fn attach_kill_and_remove() {
    let Some(base) = setup("attach") else { return };
    let cg = base.driver.create("attach", &limits()).unwrap();
    let dirs = dyno_dirs(&base, "attach");
    assert!(dirs.iter().all(|d| d.is_dir()));
    assert!(!cg.populated());

    let mut child = Proc::gated("sleep 30");
    cg.attach(child.pid()).unwrap();
    child.go();
    assert!(is_member(&base, &cg, child.pid()));
    for file in cg.procs_files() {
        let procs = std::fs::read_to_string(&file).unwrap();
        assert!(
            procs.lines().any(|l| l == child.pid().to_string()),
            "{} lacks the child",
            file.display()
        );
    }
    assert!(cg.populated());
    let c = base.driver.controllers();
    if c.pids {
        assert!(cg.pids_current().unwrap() >= 1);
    }
    if c.memory {
        assert!(cg.memory_usage().is_some());
    }

    cg.kill().unwrap();
    assert!(!cg.populated());
    let status = child.wait(Duration::from_secs(5));
    assert!(!status.success());
    cg.remove().unwrap();
    for dir in &dirs {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

#[test]
fn limits_are_written() {
    let Some(base) = setup("limits") else { return };
    let _cg = base.driver.create("limits", &limits()).unwrap();
    let dyno = format!("{}/dyno-limits", base.name);
    let read = |f: &str| std::fs::read_to_string(format!("{ROOT}/{f}")).unwrap();
    match base.driver.mode() {
        CgroupMode::V1 | CgroupMode::Hybrid => {
            assert_eq!(
                read(&format!("memory/{dyno}/memory.limit_in_bytes")).trim(),
                (64u64 << 20).to_string()
            );
            let memsw = format!("{ROOT}/memory/{dyno}/memory.memsw.limit_in_bytes");
            if Path::new(&memsw).exists() {
                assert_eq!(
                    std::fs::read_to_string(&memsw).unwrap().trim(),
                    (64u64 << 20).to_string()
                );
            }
            assert_eq!(read(&format!("pids/{dyno}/pids.max")).trim(), "100");
            assert_eq!(read(&format!("cpu/{dyno}/cpu.shares")).trim(), "512");
        }
        CgroupMode::V2 => {
            assert_eq!(
                read(&format!("{dyno}/memory.max")).trim(),
                (64u64 << 20).to_string()
            );
            assert_eq!(read(&format!("{dyno}/pids.max")).trim(), "100");
            assert_eq!(read(&format!("{dyno}/cpu.weight")).trim(), "50");
        }
    }
}

#[test]
fn memory_limit_oom_kills() {
    let Some(base) = setup("oom") else { return };
    if !base.driver.controllers().memory {
        println!("SKIPPED: no memory controller");
        return;
    }
    let cg = base
        .driver
        .create(
            "oom",
            &Limits {
                memory_bytes: 32 << 20,
                ..limits()
            },
        )
        .unwrap();
    assert_eq!(cg.oom_kills(), 0);
    // tail keeps the whole newline-free 100 MB "line" in memory.
    let mut child = Proc::gated("head -c 100M /dev/zero | tail >/dev/null");
    cg.attach(child.pid()).unwrap();
    child.go();
    let status = child.wait(Duration::from_secs(60));
    let (out, _) = child.stdout_and_stderr();
    assert!(!status.success(), "not killed: {status:?}, printed {out:?}");
    println!("status {status:?}, oom kills {}", cg.oom_kills());
    assert!(cg.oom_kills() >= 1);
    cg.remove().unwrap();
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(base) = setup("pids") else { return };
    if !base.driver.controllers().pids {
        println!("SKIPPED: no pids controller");
        return;
    }
    let cg = base
        .driver
        .create(
            "pids",
            &Limits {
                pids: 20,
                ..limits()
            },
        )
        .unwrap();
    // At most 60 forks; dash gives up at the first one that fails.
    let mut child = Proc::gated(
        "i=0; while [ $i -lt 60 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); echo $i; done",
    );
    cg.attach(child.pid()).unwrap();
    child.go();
    child.wait(Duration::from_secs(30));
    let (out, err) = child.stdout_and_stderr();
    let started: u32 = out.lines().last().and_then(|l| l.parse().ok()).unwrap_or(0);
    println!("{started} forks before the limit; stderr {err:?}");
    assert!(
        started < 20,
        "started {started} sleeps under pids.max=20; stderr {err:?}"
    );
    assert!(cg.pids_current().unwrap() <= 20);
    // The host can still fork.
    assert!(Command::new("true").status().unwrap().success());
    cg.kill().unwrap();
    // pids.current only drops when init reaps the orphaned sleeps; membership is gone now.
    assert!(!cg.populated());
    cg.remove().unwrap();
}

#[test]
fn an_id_is_never_reused() {
    let Some(base) = setup("reuse") else { return };
    let cg = base.driver.create("twice", &limits()).unwrap();
    match base.driver.create("twice", &limits()) {
        Err(CgroupError::Exists { .. }) => {}
        other => panic!("expected Exists, got {other:?}"),
    }
    // The failed attempt left the first one intact.
    assert!(dyno_dirs(&base, "twice").iter().all(|d| d.is_dir()));
    cg.remove().unwrap();
    assert!(matches!(
        base.driver.create("../escape", &limits()),
        Err(CgroupError::InvalidName(_))
    ));
}

#[test]
fn cleanup_stale_removes_leftovers_and_their_processes() {
    let Some(base) = setup("stale") else { return };
    let cg = base.driver.create("left", &limits()).unwrap();
    let mut child = Proc::gated("sleep 30");
    cg.attach(child.pid()).unwrap();
    child.go();
    drop(cg); // A crashed server forgets its handles.
              // A dir left in one hierarchy only.
    let partial = base.driver.base_dirs()[0].join("dyno-partial");
    std::fs::create_dir(&partial).unwrap();

    assert_eq!(base.driver.cleanup_stale().unwrap(), 2);
    assert!(!child.wait(Duration::from_secs(5)).success());
    assert!(!partial.exists());
    assert!(dyno_dirs(&base, "left").iter().all(|d| !d.exists()));
    assert_eq!(base.driver.cleanup_stale().unwrap(), 0);
}
