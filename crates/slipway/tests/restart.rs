//! `slipway server` can be killed and started again without touching the dynos: they run on,
//! and the new server takes them over (output, states, routes) without starting duplicates.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Answers every request with a token made when the process started.
const WEB: &str = r#"import os, uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
TOKEN = uuid.uuid4().hex
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = TOKEN.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn host_pid_of(needle: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).replace('\0', " ").trim() == needle {
            return Some(pid);
        }
    }
    None
}

async fn token(s: &TestServer) -> Option<String> {
    let r = s
        .router_client("keep")
        .get(s.app_url("keep", "/"))
        .send()
        .await
        .ok()?;
    (r.status() == 200).then_some(r.text().await.ok()?)
}

fn dynos(s: &TestServer, dir: &std::path::Path) -> Vec<Value> {
    serde_json::from_str::<Value>(&s.ok(dir, &["ps", "--json"]))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn last_tick(logs: &str) -> u64 {
    logs.lines()
        .filter_map(|l| l.split("app[worker.1]: tick ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn dynos_outlive_a_killed_server_and_are_taken_over() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: container dynos need root");
        return;
    }
    let mut s = TestServer::start();
    let dir = s.home().join("keep");
    s.repo(
        &dir,
        &[
            (
                "Procfile",
                "web: python3 web.py\nworker: i=0; while true; i=$((i+1)); do echo \"tick $i\"; sleep 0.2; done\nshort: sleep 7171; exit 4\n",
            ),
            ("web.py", WEB),
        ],
    );
    s.ok(&dir, &["apps:create", "keep"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&dir, &["ps:scale", "worker=1", "short=1"]);
    let before = eventually(60, "the web dyno answers", || token(&s)).await;
    eventually(30, "ticks in the log", || async {
        (last_tick(&s.logs("keep")) > 2).then_some(())
    })
    .await;
    let short_pid = eventually(30, "the short dyno runs", || async {
        host_pid_of("sleep 7171")
    })
    .await;
    let ids: Vec<(String, String)> = eventually(30, "three dynos up", || async {
        let ds = dynos(&s, &dir);
        (ds.len() == 3 && ds.iter().all(|d| d["state"] == "up")).then(|| {
            ds.iter()
                .map(|d| {
                    (
                        d["name"].as_str().unwrap().to_string(),
                        d["id"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
    })
    .await;

    // SIGKILL: the server is gone at once; its dynos are not.
    let tick_at_kill = last_tick(&s.logs("keep"));
    s.kill_hard();
    // While it is down, one dyno ends (its process is killed from outside).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(short_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = s.restart_after_kill();
    // How fast is bench/server-restart's business; here it only has to come back.
    let after = eventually(60, "the web dyno answers again", || token(&s)).await;
    assert_eq!(
        after, before,
        "the same web process answers: it was not restarted"
    );
    let log = s.log.lock().unwrap().join("\n");
    assert!(log.contains("Took over 3 running dynos"), "{log}");
    // Output capture resumed, from the same process (its counter went on).
    eventually(30, "new ticks after the restart", || async {
        (last_tick(&s.logs("keep")) > tick_at_kill + 3).then_some(())
    })
    .await;
    // The same dynos (no duplicates); the one that ended meanwhile is noticed and started again.
    let ds = dynos(&s, &dir);
    assert_eq!(ds.len(), 3, "{ds:?}");
    for (name, id) in &ids {
        if name != "short.1" {
            assert!(
                ds.iter().any(|d| &d["name"] == name && &d["id"] == id),
                "{name} kept: {ds:?}"
            );
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let logs = s.logs("keep");
        if logs.contains("heroku[short.1]: Process exited with status 4")
            && host_pid_of("sleep 7171").is_some()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the short dyno's exit was not noticed, or it did not run again:\n{logs}\n{}",
            s.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_leaves_its_dynos_running() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: container dynos need root");
        return;
    }
    // The default: stopping the server keeps the dynos.
    let mut s = TestServer::start_with(&["--on-exit", "keep"]);
    let dir = s.home().join("keep");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 web.py\n"), ("web.py", WEB)],
    );
    s.ok(&dir, &["apps:create", "keep"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = eventually(60, "the web dyno answers", || token(&s)).await;
    s.stop_gracefully();
    let log = s.log.lock().unwrap().join("\n");
    assert!(log.contains("dynos keep running"), "{log}");
    // The next server (this one stops its dynos when it goes) finds the same process serving.
    let s = s.restart_after_kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        if let Some(t) = token(&s).await {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the web dyno does not answer after the restart:\n{log}\n---\n{}",
            s.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after, before);
    assert!(s
        .log
        .lock()
        .unwrap()
        .join("\n")
        .contains("Took over 1 running dynos"));
}

/// Processes whose command line is exactly `needle`.
fn host_pids_of(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).replace('\0', " ").trim() == needle {
            pids.push(pid);
        }
    }
    pids
}

/// A restart starts the new process while the old one has its grace period. A server killed
/// in that moment leaves both running; the next one takes over the new one only, and the old
/// one is killed: one dyno of the name, one process.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_during_a_restart_takes_over_only_the_new_process() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: container dynos need root");
        return;
    }
    let mut s = TestServer::start();
    let dir = s.home().join("keep");
    s.repo(
        &dir,
        &[("Procfile", "stubborn: trap '' TERM; exec sleep 7272\n")],
    );
    s.ok(&dir, &["apps:create", "keep"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&dir, &["ps:scale", "stubborn=1"]);
    let first = eventually(60, "the dyno runs", || async {
        let pids = host_pids_of("sleep 7272");
        (pids.len() == 1).then(|| pids[0])
    })
    .await;
    s.ok(&dir, &["ps:restart", "stubborn"]);
    // Both run for a moment (the old one ignores SIGTERM for its 3 s grace): kill the server
    // then.
    eventually(10, "the new process beside the old", || async {
        (host_pids_of("sleep 7272").len() == 2).then_some(())
    })
    .await;
    s.kill_hard();
    let s = s.restart_after_kill();
    eventually(60, "one process left, not the old one", || async {
        let pids = host_pids_of("sleep 7272");
        (pids.len() == 1 && pids[0] != first).then_some(())
    })
    .await;
    let ds = dynos(&s, &dir);
    let named: Vec<&Value> = ds.iter().filter(|d| d["name"] == "stubborn.1").collect();
    assert_eq!(named.len(), 1, "{ds:?}");
    drop(s);
}
