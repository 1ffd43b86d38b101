//! The dyno lifecycle with real dynos: release phase, preboot, stop-then-start, in-flight requests,
//! maintenance mode, crash cool-offs in `ps`, and the commands around them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A web app that answers `/` with its VERSION file and `/slow` after two seconds; on SIGTERM it
/// stops accepting, finishes the requests it has, and exits 0, as a well-behaved app does.
const APP: &str = r#"import os, signal, sys, time, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = open("VERSION").read().strip()

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(2)
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

srv = ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H)
srv.daemon_threads = False  # server_close() then waits for requests in progress

def term(*_):
    print("got SIGTERM", flush=True)
    threading.Thread(target=srv.shutdown).start()

signal.signal(signal.SIGTERM, term)
print("version " + VERSION + " listening", flush=True)
srv.serve_forever()
srv.server_close()
"#;

fn push(s: &TestServer, dir: &std::path::Path) -> (bool, String) {
    let out = s.git(dir, &["push", "slipway", "main"]);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn new_app(s: &TestServer, name: &str, procfile: &str) -> std::path::PathBuf {
    let dir = s.home().join(name);
    s.repo(
        &dir,
        &[
            ("Procfile", procfile),
            ("app.py", APP),
            ("VERSION", "one\n"),
        ],
    );
    s.ok(&dir, &["apps:create", name]);
    dir
}

async fn get(s: &TestServer, app: &str, path: &str) -> Option<(u16, String)> {
    let resp = s
        .router_client(app)
        .get(s.app_url(app, path))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

async fn serves(s: &TestServer, app: &str, body: &str) {
    eventually(60, &format!("{app} serves {body}"), || async {
        match get(s, app, "/").await {
            Some((200, b)) if b == body => Some(()),
            _ => None,
        }
    })
    .await;
}

fn ps_json(s: &TestServer, dir: &std::path::Path) -> Vec<Value> {
    serde_json::from_str::<Value>(&s.ok(dir, &["ps", "--json"]))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_release_phase_gates_deploys() {
    let s = TestServer::start();
    let dir = new_app(
        &s,
        "phase",
        "web: python3 app.py\nrelease: test -z \"$HOLD\" || sleep 5; echo \"migrating to $(cat VERSION)\" && test \"$(cat VERSION)\" != broken\n",
    );
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    assert!(out.contains("Running release command"), "{out}");
    assert!(
        out.contains("migrating to one"),
        "the release output reaches the push: {out}"
    );
    serves(&s, "phase", "one").await;
    let logs = s.logs("phase");
    assert!(logs.contains("]: migrating to one"), "{logs}");
    assert!(logs.contains("Process exited with status 0"), "{logs}");
    // `release` is not a formation process.
    let formation = s.ok(&dir, &["ps:scale"]);
    assert!(!formation.contains("release"), "{formation}");

    // A failing release command: the push fails, the release is marked failed, and the old
    // code keeps serving.
    std::fs::write(dir.join("VERSION"), "broken\n").unwrap();
    s.commit_all(&dir, "break it");
    let (ok, out) = push(&s, &dir);
    assert!(!ok, "{out}");
    assert!(out.contains("migrating to broken"), "{out}");
    assert!(out.contains("Release command failed"), "{out}");
    let releases = s.ok(&dir, &["releases"]);
    assert!(releases.contains("(release command failed)"), "{releases}");
    assert_eq!(get(&s, "phase", "/").await, Some((200, "one".into())));
    let logs = s.logs("phase");
    assert!(
        logs.contains("failed: its release command did not exit 0"),
        "{logs}"
    );
    // A config change runs the release phase of the release it makes (on the good slug).
    s.ok(&dir, &["config:set", "X=1"]);
    eventually(60, "the config release succeeded", || async {
        let r = s.ok(&dir, &["releases", "--json"]);
        let v: Value = serde_json::from_str(&r).ok()?;
        let newest = v
            .as_array()?
            .iter()
            .max_by_key(|r| r["version"].as_i64())?
            .clone();
        (newest["status"] == "succeeded" && newest["description"].as_str()?.contains("X"))
            .then_some(())
    })
    .await;
    assert_eq!(s.logs("phase").matches("migrating to one").count(), 2);

    // A var set by a release still in its release phase can be unset at once: the unset is a
    // change to that release, not a no-op against the last one that finished.
    s.ok(&dir, &["config:set", "HOLD=1"]);
    s.ok(&dir, &["config:unset", "HOLD"]);
    eventually(60, "no release is pending", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["releases", "--json"])).ok()?;
        v.as_array()?
            .iter()
            .all(|r| r["status"] != "pending")
            .then_some(())
    })
    .await;
    let config: Value = serde_json::from_str(&s.ok(&dir, &["config", "--json"])).unwrap();
    assert!(config.get("HOLD").is_none(), "{config}");
}

/// Sends requests in a loop until told to stop; gives (total, failed, bodies seen).
fn load(
    s: &TestServer,
    app: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(u64, u64, Vec<String>)> {
    let client = s.router_client(app);
    let url = s.app_url(app, "/");
    tokio::spawn(async move {
        let (total, failed) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut seen: Vec<String> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            total.fetch_add(1, Ordering::SeqCst);
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => {
                    let b = r.text().await.unwrap_or_default();
                    if seen.last() != Some(&b) {
                        seen.push(b);
                    }
                }
                _ => {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        (total.into_inner(), failed.into_inner(), seen)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn preboot_deploys_without_a_failed_request() {
    let s = TestServer::start();
    let dir = new_app(&s, "boot", "web: python3 app.py\n");
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    serves(&s, "boot", "one").await;
    let features = s.ok(&dir, &["features"]);
    assert!(features.contains("[ ] preboot"), "{features}");
    let out = s.ok(&dir, &["features:enable", "preboot"]);
    assert!(out.contains("Enabling preboot for boot... done"), "{out}");
    assert!(s.ok(&dir, &["features"]).contains("[+] preboot"));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = load(&s, "boot", stop.clone());
    std::fs::write(dir.join("VERSION"), "two\n").unwrap();
    s.commit_all(&dir, "two");
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    serves(&s, "boot", "two").await;
    // A little more load after the switch, while the old dyno stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (total, failed, seen) = loader.await.unwrap();
    assert_eq!(failed, 0, "{failed} of {total} requests failed");
    assert!(total > 20, "{total}");
    assert_eq!(
        seen,
        ["one", "two"],
        "traffic switched once, from old to new"
    );
    // The new dyno was up before the old one got SIGTERM (which may come a little after the
    // switch on a busy machine).
    // From the history on disk: the load's router lines may have pushed them out of the
    // newest 1500.
    let logs = eventually(30, "the old dyno gets SIGTERM", || async {
        let logs = s.ok(
            &dir,
            &["logs", "--since", "1h", "--dyno", "web.1", "-a", "boot"],
        );
        logs.contains("heroku[web.1]: Stopping all processes with SIGTERM")
            .then_some(logs)
    })
    .await;
    let up_new = logs
        .rfind("heroku[web.1]: State changed from starting to up")
        .unwrap_or_else(|| panic!("{logs}"));
    let term_old = logs
        .rfind("heroku[web.1]: Stopping all processes with SIGTERM")
        .unwrap();
    assert!(up_new < term_old, "{logs}");
    s.ok(
        &dir,
        &["ps:wait", "--wait-interval", "1", "--timeout", "60"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stops_let_requests_in_flight_finish() {
    let s = TestServer::start();
    // Not the last command, so the shell stays the app's parent and dies at once on SIGTERM: the
    // dyno must still give the app its grace period.
    let dir = new_app(&s, "flight", "web: python3 app.py; echo after\n");
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    serves(&s, "flight", "one").await;
    // A slow request is in flight when the dyno is restarted.
    let client = s.router_client("flight");
    let url = s.app_url("flight", "/slow");
    let slow =
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = s.ok(&dir, &["ps:restart", "web"]);
    assert!(out.contains("done"), "{out}");
    assert_eq!(
        slow.await.unwrap().ok(),
        Some(200),
        "the in-flight request completed: {}",
        s.logs("flight")
    );
    serves(&s, "flight", "one").await;
    let logs = s.logs("flight");
    assert!(logs.contains("heroku[web.1]: Restarting"), "{logs}");
    assert!(logs.contains("app[web.1]: got SIGTERM"), "{logs}");
    assert!(
        logs.contains("heroku[web.1]: State changed from up to starting"),
        "{logs}"
    );

    // ps:stop TYPE stops every dyno of the type; the formation brings them back.
    let before = ps_json(&s, &dir)[0]["id"].clone();
    let out = s.ok(&dir, &["ps:stop", "web"]);
    assert!(
        out.contains("Stopping web dynos on flight... done"),
        "{out}"
    );
    eventually(30, "a new web dyno", || async {
        let ps = ps_json(&s, &dir);
        (ps.len() == 1 && ps[0]["id"] != before && ps[0]["state"] == "up").then_some(())
    })
    .await;
    let out = s.cli(&dir, &["ps:stop", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Couldn't find any nosuch dynos"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_mode_answers_503_with_h80() {
    let s = TestServer::start();
    let dir = new_app(&s, "maint", "web: python3 app.py\n");
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    serves(&s, "maint", "one").await;
    assert_eq!(s.ok(&dir, &["maintenance"]).trim(), "off");
    let out = s.ok(&dir, &["maintenance:on"]);
    assert!(
        out.contains("Enabling maintenance mode for maint... done"),
        "{out}"
    );
    assert_eq!(s.ok(&dir, &["maintenance"]).trim(), "on");
    let (status, body) = get(&s, "maint", "/").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("Offline for maintenance"), "{body}");
    let logs = s.logs("maint");
    assert!(
        logs.contains("heroku[router]: at=info code=H80 desc=\"Maintenance mode\""),
        "{logs}"
    );
    assert!(logs.contains("Enable Maintenance mode by"), "{logs}");
    // It survives a restart of the server.
    let mut s = s;
    s.kill_hard();
    let s = s.restart_after_kill();
    let (status, _) = get(&s, "maint", "/").await.unwrap();
    assert_eq!(status, 503);
    s.ok(&dir, &["maintenance:off"]);
    serves(&s, "maint", "one").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_dynos_show_their_next_try_and_settings_are_checked() {
    let s = TestServer::start();
    let dir = new_app(
        &s,
        "crashy",
        "web: python3 app.py\nworker: echo bye; exit 3\n",
    );
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    s.ok(&dir, &["ps:scale", "worker=1"]);
    // Crashes, restarts at once, crashes again: now it waits 20 minutes.
    eventually(60, "the worker waits out its cool-off", || async {
        let ps = s.ok(&dir, &["ps", "worker"]);
        ps.contains("worker.1: crashed").then_some(ps)
    })
    .await;
    let ps = s.ok(&dir, &["ps", "worker"]);
    assert!(
        ps.contains("restarting in ~ 19m") || ps.contains("restarting in ~ 20m"),
        "{ps}"
    );
    let logs = s.logs("crashy");
    assert_eq!(
        logs.matches("heroku[worker.1]: Process exited with status 3")
            .count(),
        2,
        "{logs}"
    );
    // ps:restart tries again at once.
    s.ok(&dir, &["ps:restart", "worker.1"]);
    eventually(30, "a third start", || async {
        (s.logs("crashy")
            .matches("heroku[worker.1]: Process exited with status 3")
            .count()
            >= 3)
            .then_some(())
    })
    .await;

    // Boot timeout and cycling settings.
    let out = s.ok(&dir, &["ps:boot-timeout"]);
    assert!(out.contains("default"), "{out}");
    let out = s.ok(&dir, &["ps:boot-timeout", "90"]);
    assert!(out.contains("done, 90 seconds"), "{out}");
    let out = s.cli(&dir, &["ps:boot-timeout", "121"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("from 1 to 120"),
        "{}",
        text(&out.stderr)
    );
    let out = s.ok(&dir, &["ps:cycling", "04:30"]);
    assert!(out.contains("daily at 04:30 UTC"), "{out}");
    let out = s.ok(&dir, &["ps:cycling", "off"]);
    assert!(out.contains("done, off"), "{out}");
    let out = s.cli(&dir, &["ps:cycling", "sometimes"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("daily, off, or a time of day"),
        "{}",
        text(&out.stderr)
    );
    let info: Value = serde_json::from_str(&s.ok(&dir, &["apps:info", "--json"])).unwrap();
    assert_eq!(info["boot_timeout"], 90);
    assert_eq!(info["dyno_cycling"], "off");
    let out = s.cli(&dir, &["features:enable", "warp-drive"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Couldn't find that feature (warp-drive)"),
        "{}",
        text(&out.stderr)
    );
}
