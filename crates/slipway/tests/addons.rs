//! Add-ons through `slipway server`, with real `redis-server` processes: provisioning sets
//! config vars and makes a release, a pushed app writes and reads through `REDIS_URL` over the
//! dyno bridge, another app shares the add-on after `addons:attach`, destroy is refused while
//! attached elsewhere and removes the data, the server outlives crashes and `slipway server`
//! restarts (adopted, not started twice), and its memory cap holds against a Lua script.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// `/set?k=K&v=V` and `/get?k=K` through `REDIS_URL`, with a RESP client in the standard library.
const APP: &str = r#"import os, socket
from urllib.parse import urlparse, parse_qs
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def redis(*args):
    u = urlparse(os.environ["REDIS_URL"])
    s = socket.create_connection((u.hostname, u.port), timeout=5)
    f = s.makefile("rb")
    def call(*a):
        s.sendall(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in (v.encode() for v in a)))
        line = f.readline()
        if line[:1] == b"$":
            n = int(line[1:])
            return None if n < 0 else f.read(n + 2)[:-2].decode()
        if line[:1] == b"-":
            raise Exception(line[1:].strip().decode())
        return line[1:].strip().decode()
    call("AUTH", u.password)
    try:
        return call(*args)
    finally:
        s.close()

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        try:
            if self.path.startswith("/set"):
                body = redis("SET", q["k"], q["v"])
            else:
                body = redis("GET", q["k"]) or "(nil)"
            code = 200
        except Exception as e:
            body, code = "error: %s" % e, 500
        body = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn deploy(s: &TestServer, name: &str) -> PathBuf {
    let dir = s.home().join(name);
    s.repo(&dir, &[("Procfile", "web: python3 app.py\n"), ("app.py", APP)]);
    s.ok(&dir, &["apps:create", name]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    dir
}

/// GET through the router until the app answers 200 (dynos restart after each release).
async fn get_ok(s: &TestServer, app: &str, path: &str) -> String {
    let client = s.router_client(app);
    let url = s.app_url(app, path);
    eventually(60, &format!("{app}{path} answers 200"), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(&url).send().await.ok()?;
            if r.status() != 200 {
                return None;
            }
            r.text().await.ok()
        }
    })
    .await
}

fn config(s: &TestServer, dir: &Path, app: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(dir, &["config", "--json", "-a", app])).expect("config json")
}

/// The add-on's id, from the API.
async fn addon_id(s: &TestServer, name: &str) -> String {
    let v: serde_json::Value = s.api_get(&format!("/addons/{name}")).await.json().await.unwrap();
    v["id"].as_str().expect("id").to_string()
}

/// The pid its record names.
fn server_pid(s: &TestServer, id: &str) -> i32 {
    let text = std::fs::read_to_string(s.addons_dir().join(id).join("server.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Redis servers working in the add-on's data dir (Redis rewrites its command line).
fn redis_processes(dir: &Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
            comm.starts_with("redis") && cwd.starts_with(dir)
        })
        .count()
}

/// A RESP call from the test to the add-on, with the app's password.
async fn redis_call(url: &str, args: &[&str]) -> std::io::Result<String> {
    let rest = url.strip_prefix("redis://:").expect("redis url");
    let (password, addr) = rest.split_once('@').unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let mut io = BufReader::new(stream);
    let mut out = Vec::new();
    for call in [&["AUTH", password][..], args] {
        let mut req = format!("*{}\r\n", call.len());
        for a in call {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        io.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(n) = line.strip_prefix('$') {
            let n: i64 = n.trim().parse().unwrap();
            if n >= 0 {
                let mut buf = vec![0; n as usize + 2];
                io.read_exact(&mut buf).await?;
                line = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
            }
        }
        out.push(line.trim().to_string());
    }
    Ok(out.pop().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_through_git_push_shared_by_attach_then_destroyed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let shop = deploy(&s, "shop");

    let out = s.ok(&shop, &["addons:create", "heroku-redis", "-a", "shop"]);
    assert!(out.contains("Creating heroku-redis:mini on ⬢ shop... free"), "{out}");
    assert!(out.contains("as REDIS_URL"), "{out}");
    let name = out
        .split_whitespace()
        .find(|w| w.starts_with("redis-"))
        .expect("add-on name")
        .to_string();
    let url = config(&s, &shop, "shop")["REDIS_URL"].as_str().unwrap().to_string();
    let gateway = s.net.subnet.replace(".0/24", ".1");
    assert!(url.starts_with("redis://:") && url.contains(&format!("@{gateway}:")), "{url}");
    let releases = s.ok(&shop, &["releases", "-a", "shop"]);
    assert!(releases.contains(&format!("Attach REDIS (@ref:{name})")), "{releases}");

    // The app's dyno writes and reads over the bridge.
    assert_eq!(get_ok(&s, "shop", "/set?k=greeting&v=hello").await, "OK");
    assert_eq!(get_ok(&s, "shop", "/get?k=greeting").await, "hello");

    // The app's user cannot reconfigure Redis; a wrong password gets nothing.
    let denied = redis_call(&url, &["CONFIG", "SET", "dir", "/tmp"]).await.unwrap();
    assert!(denied.starts_with("-NOPERM"), "{denied}");
    let wrong = url.replacen("redis://:", "redis://:x", 1);
    let refused = redis_call(&wrong, &["GET", "greeting"]).await.unwrap();
    assert!(refused.starts_with("-NOAUTH") || refused.starts_with("-WRONGPASS"), "{refused}");

    // Shared with a second app, which reads the same data.
    let admin = deploy(&s, "shop-admin");
    let out = s.ok(&admin, &["addons:attach", &name, "-a", "shop-admin"]);
    assert!(out.contains("done, v"), "{out}");
    assert_eq!(config(&s, &admin, "shop-admin")["REDIS_URL"], url);
    assert_eq!(get_ok(&s, "shop-admin", "/get?k=greeting").await, "hello");
    let listed = s.ok(&shop, &["addons", "-a", "shop"]);
    assert!(listed.contains(&name) && listed.contains("shop-admin"), "{listed}");

    // Its config var belongs to the add-on.
    let out = s.cli(&shop, &["config:set", "REDIS_URL=redis://elsewhere", "-a", "shop"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Cannot overwrite attachment values REDIS_URL"), "{}", text(&out.stderr));

    // Destroy is refused while another app uses it.
    let out = s.cli(&shop, &["addons:destroy", &name, "-a", "shop", "--confirm", "shop"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("attached to other apps (shop-admin)"), "{}", text(&out.stderr));
    let out = s.ok(&admin, &["addons:detach", "REDIS", "-a", "shop-admin"]);
    assert!(out.contains("done, v"), "{out}");
    assert!(config(&s, &admin, "shop-admin").get("REDIS_URL").is_none());

    let id = addon_id(&s, &name).await;
    let data = s.addons_dir().join(&id);
    assert!(data.join("data").is_dir());
    let out = s.ok(&shop, &["addons:destroy", &name, "-a", "shop", "--confirm", "shop"]);
    assert!(out.contains("done"), "{out}");
    assert!(!data.exists(), "the add-on's data is removed");
    assert!(config(&s, &shop, "shop").get("REDIS_URL").is_none());
    assert!(redis_call(&url, &["PING"]).await.is_err(), "nothing listens any more");
    assert_eq!(redis_processes(&data), 0);
    assert_eq!(s.api_get(&format!("/addons/{name}")).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_survives_crashes_and_server_restarts_and_its_memory_cap_holds() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("cache");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "cache"]);
    let out = s.ok(&dir, &["addons:create", "redis", "--name", "cache-store", "-a", "cache"]);
    assert!(out.contains("cache-store"), "{out}");
    let url = config(&s, &dir, "cache")["REDIS_URL"].as_str().unwrap().to_string();
    let id = addon_id(&s, "cache-store").await;
    let data = s.addons_dir().join(&id);
    assert_eq!(redis_call(&url, &["SET", "kept", "yes"]).await.unwrap(), "+OK");
    // Written to the append-only file (fsync every second) before the crash.
    eventually(10, "the key reaches the AOF", || {
        let data = data.clone();
        async move {
            let dir = std::fs::read_dir(data.join("data/appendonlydir")).ok()?;
            dir.filter_map(|e| e.ok())
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("kept")))
                .then_some(())
        }
    })
    .await;

    // A crash: the supervisor starts it again with its data.
    let first = server_pid(&s, &id);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();
    let second = eventually(30, "Redis restarted", || {
        let (s, id, url) = (&s, id.clone(), url.clone());
        async move {
            let pid = server_pid(s, &id);
            (pid != first && alive(pid) && redis_call(&url, &["PING"]).await.ok()? == "+PONG").then_some(pid)
        }
    })
    .await;
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");
    let logs = s.logs("cache");
    assert!(logs.contains("heroku[redis]: REDIS (cache-store) exited"), "{logs}");

    // The policy is set now and kept across restarts of Redis.
    let out = s.ok(&dir, &["redis:maxmemory", "--policy", "allkeys-lru", "-a", "cache"]);
    assert!(out.contains("allkeys-lru"), "{out}");
    let info = s.ok(&dir, &["redis:info", "-a", "cache"]);
    assert!(info.contains("allkeys-lru") && info.contains("25 MB"), "{info}");
    let bad = s.cli(&dir, &["redis:maxmemory", "--policy", "sometimes", "-a", "cache"]);
    assert!(!bad.status.success());

    // `slipway server` crashes and comes back: the same Redis is adopted, not started twice.
    let mut s = s;
    s.kill_hard();
    let s = s.restart_after_kill();
    assert_eq!(server_pid(&s, &id), second);
    assert!(alive(second));
    assert_eq!(redis_processes(&data), 1);
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");
    assert_eq!(redis_call(&url, &["CONFIG", "GET", "x"]).await.unwrap_or_default().starts_with("-NOPERM"), true);

    // A Lua script that grows past the cap outside Redis is killed with Redis, which comes back
    // with its data; the app's log says why.
    let script = "local t = {} for i = 1, 4000000 do t[i] = string.rep('x', 64) .. i end return #t";
    let _ = tokio::time::timeout(Duration::from_secs(60), redis_call(&url, &["EVAL", script, "0"])).await;
    let third = eventually(60, "Redis restarted after the cap", || {
        let (s, id, url) = (&s, id.clone(), url.clone());
        async move {
            let pid = server_pid(s, &id);
            (pid != second && alive(pid) && redis_call(&url, &["PING"]).await.ok()? == "+PONG").then_some(pid)
        }
    })
    .await;
    assert!(third > 0);
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");
    assert_eq!(redis_call(&url, &["CONFIG", "GET", "maxmemory-policy"]).await.unwrap_or_default().starts_with("-NOPERM"), true);
    let logs = s.logs("cache");
    assert!(logs.contains("was killed at its memory cap of 82 MB"), "{logs}");
    let info = s.ok(&dir, &["redis:info", "-a", "cache"]);
    assert!(info.contains("allkeys-lru"), "the policy survives a restart: {info}");

    // Stopping the server with --on-exit stop stops Redis too, and leaves no cgroup behind.
    let base = format!("{}-addons", s.net.node_name);
    drop(s);
    assert!(!alive(third));
    let left: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .flat_map(|p| [p.join(&base), p.clone()])
        .filter(|p| p.ends_with(&base) && p.exists())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
