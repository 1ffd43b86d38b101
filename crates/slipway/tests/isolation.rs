//! The isolation suite: from inside a dyno of app A, every way out that Slipway closes is tried
//! (`tests/fixtures/probe.py`), and memory limits are shown to kill only the dyno that
//! overran them. Needs root (as in CI); prints SKIPPED otherwise.

mod common;

use common::*;
use serde_json::Value;

fn find_host_pid(needle: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.trim() == needle {
            return Some(pid);
        }
    }
    None
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path().join(name);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dyno_cannot_reach_out() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: the isolation suite needs root");
        return;
    }
    let s = TestServer::start();
    // App B: a web dyno, a long-running process, and a secret file.
    let b = s.home().join("app-b");
    s.repo(
        &b,
        &[
            ("Procfile", "web: python3 app.py\nsleeper: sleep 4242\n"),
            ("app.py", ECHO_APP),
            ("b-secret.txt", "B-SECRET-CONTENT\n"),
        ],
    );
    s.ok(&b, &["apps:create", "app-b"]);
    let out = s.git(&b, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&b, &["ps:scale", "sleeper=1"]);
    let b_client = s.router_client("app-b");
    eventually(60, "app B serves", || async {
        let r = b_client.get(s.app_url("app-b", "/")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let b_pid = eventually(30, "B's sleeper runs", || async {
        find_host_pid("sleep 4242")
    })
    .await;
    let b_file =
        find_file(&s.data_dir().join("unpacked"), "b-secret.txt").expect("B's slug on the host");
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();

    // App A: the probe, and two memory hogs.
    let a = s.home().join("app-a");
    let probe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/probe.py"
    ))
    .unwrap();
    s.repo(
        &a,
        &[
            (
                "Procfile",
                "probe: python3 probe.py; sleep 3600\n\
                 hog: python3 -c \"x = b'x' * (1536 * 1024 * 1024); import time; time.sleep(600)\" & exec sleep 600\n\
                 heavy: python3 -c \"x = b'x' * (700 * 1024 * 1024); import time; time.sleep(600)\"\n",
            ),
            ("probe.py", &probe),
        ],
    );
    s.ok(&a, &["apps:create", "app-a"]);
    s.ok(
        &a,
        &[
            "config:set",
            &format!("B_PID={b_pid}"),
            &format!("B_SLUG_FILE={}", b_file.display()),
            &format!("DATA_DIR={}", s.data_dir().display()),
            &format!("HOST_PORT={host_port}"),
            &format!("API_PORT={}", s.api.port()),
        ],
    );
    let out = s.git(&a, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&a, &["ps:scale", "probe=1"]);
    let logs = eventually(120, "the probe finishes", || async {
        let logs = s.logs("app-a");
        logs.contains("PROBE DONE").then_some(logs)
    })
    .await;
    let checks: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("app[probe.1]: CHECK "))
        .collect();
    println!("{}", checks.join("\n"));
    let failed: Vec<&&str> = checks.iter().filter(|l| !l.contains(" ok")).collect();
    assert!(
        failed.is_empty(),
        "a dyno got out:\n{}",
        failed
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        checks.len() >= 29,
        "every check ran ({}):\n{logs}",
        checks.len()
    );

    // Over the quota: R14. Over the hard limit: killed, R15, the whole dyno even when the
    // process the kernel killed was not its main one (hog's is a child); app B keeps serving.
    s.ok(&a, &["ps:scale", "heavy=1", "hog=1"]);
    eventually(90, "R14 and R15", || async {
        let logs = s.logs("app-a");
        (logs.contains("heroku[heavy.1]: Error R14 (Memory quota exceeded)")
            && logs.contains("heroku[hog.1]: Error R15 (Memory quota vastly exceeded)"))
        .then_some(())
    })
    .await;
    let r = b_client.get(s.app_url("app-b", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // ps:type changes the limits the kernel enforces: standard-2x is 1 GB, killed at 2 GB.
    let out = s.ok(&b, &["ps:type", "sleeper=standard-2x"]);
    assert!(out.contains("standard-2x"), "{out}");
    let base = std::path::Path::new("/sys/fs/cgroup/memory").join(&s.net.node_name);
    eventually(60, "a 2 GB memory cgroup for the resized dyno", || async {
        let found = std::fs::read_dir(&base).ok()?.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("memory.limit_in_bytes"))
                .is_ok_and(|v| v.trim() == "2147483648")
        });
        found.then_some(())
    })
    .await;
    let ps: Value = serde_json::from_str(&s.ok(&b, &["ps", "--json"])).unwrap();
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["state"] == "up")
            .count()
            >= 2,
        "{ps}"
    );
    drop(host_service);
}

/// As root, a server that cannot give dynos their own network (here: a dyno subnet that is no
/// subnet) does not fall back to the host's network, where one app's dynos could reach
/// another's ports: it stops at start with the reason and what to pass to accept less.
#[test]
fn a_root_server_that_cannot_isolate_dynos_does_not_start() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: container dynos need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--addons-dir")
        .arg(dir.path().join("addons"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
            "--router-tls-listen",
            "127.0.0.1:0",
            "--rendezvous-listen",
            "127.0.0.1:0",
            "--api-tls-listen",
            "127.0.0.1:0",
            "--node-name",
            "nofb",
            "--dyno-subnet",
            "10.300.0.0/16",
        ])
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started (or hung) instead of refusing the host network");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("bridge networking") && err.contains("--network host"),
        "{err}"
    );
    assert!(!err.contains("Slipway ready"), "{err}");
}
