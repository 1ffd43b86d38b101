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
    deploy_source(s, name, APP)
}

/// Pushes `app.py` as the app's one web process.
fn deploy_source(s: &TestServer, name: &str, source: &str) -> PathBuf {
    let dir = s.home().join(name);
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", source)],
    );
    s.ok(&dir, &["apps:create", name]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
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
    let v: serde_json::Value = s
        .api_get(&format!("/addons/{name}"))
        .await
        .json()
        .await
        .unwrap();
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
    assert!(
        out.contains("Creating heroku-redis:mini on ⬢ shop... free"),
        "{out}"
    );
    assert!(out.contains("as REDIS_URL"), "{out}");
    let name = out
        .split_whitespace()
        .find(|w| w.starts_with("redis-"))
        .expect("add-on name")
        .to_string();
    let url = config(&s, &shop, "shop")["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let gateway = s.net.subnet.replace(".0/24", ".1");
    assert!(
        url.starts_with("redis://:") && url.contains(&format!("@{gateway}:")),
        "{url}"
    );
    let releases = s.ok(&shop, &["releases", "-a", "shop"]);
    assert!(
        releases.contains(&format!("Attach REDIS (@ref:{name})")),
        "{releases}"
    );

    // The app's dyno writes and reads over the bridge.
    assert_eq!(get_ok(&s, "shop", "/set?k=greeting&v=hello").await, "OK");
    assert_eq!(get_ok(&s, "shop", "/get?k=greeting").await, "hello");

    // The app's user cannot reconfigure Redis; a wrong password gets nothing.
    let denied = redis_call(&url, &["CONFIG", "SET", "dir", "/tmp"])
        .await
        .unwrap();
    assert!(denied.starts_with("-NOPERM"), "{denied}");
    let wrong = url.replacen("redis://:", "redis://:x", 1);
    let refused = redis_call(&wrong, &["GET", "greeting"]).await.unwrap();
    assert!(
        refused.starts_with("-NOAUTH") || refused.starts_with("-WRONGPASS"),
        "{refused}"
    );

    // Shared with a second app, which reads the same data.
    let admin = deploy(&s, "shop-admin");
    let out = s.ok(&admin, &["addons:attach", &name, "-a", "shop-admin"]);
    assert!(out.contains("done, v"), "{out}");
    assert_eq!(config(&s, &admin, "shop-admin")["REDIS_URL"], url);
    assert_eq!(get_ok(&s, "shop-admin", "/get?k=greeting").await, "hello");
    let listed = s.ok(&shop, &["addons", "-a", "shop"]);
    assert!(
        listed.contains(&name) && listed.contains("shop-admin"),
        "{listed}"
    );

    // Its config var belongs to the add-on.
    let out = s.cli(
        &shop,
        &["config:set", "REDIS_URL=redis://elsewhere", "-a", "shop"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Cannot overwrite attachment values REDIS_URL"),
        "{}",
        text(&out.stderr)
    );

    // Destroy is refused while another app uses it.
    let out = s.cli(
        &shop,
        &["addons:destroy", &name, "-a", "shop", "--confirm", "shop"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("attached to other apps (shop-admin)"),
        "{}",
        text(&out.stderr)
    );
    let out = s.ok(&admin, &["addons:detach", "REDIS", "-a", "shop-admin"]);
    assert!(out.contains("done, v"), "{out}");
    assert!(config(&s, &admin, "shop-admin").get("REDIS_URL").is_none());

    let id = addon_id(&s, &name).await;
    let data = s.addons_dir().join(&id);
    assert!(data.join("data").is_dir());
    let out = s.ok(
        &shop,
        &["addons:destroy", &name, "-a", "shop", "--confirm", "shop"],
    );
    assert!(out.contains("done"), "{out}");
    assert!(!data.exists(), "the add-on's data is removed");
    assert!(config(&s, &shop, "shop").get("REDIS_URL").is_none());
    assert!(
        redis_call(&url, &["PING"]).await.is_err(),
        "nothing listens any more"
    );
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
    let out = s.ok(
        &dir,
        &[
            "addons:create",
            "redis",
            "--name",
            "cache-store",
            "-a",
            "cache",
        ],
    );
    assert!(out.contains("cache-store"), "{out}");
    let url = config(&s, &dir, "cache")["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let id = addon_id(&s, "cache-store").await;
    let data = s.addons_dir().join(&id);
    assert_eq!(
        redis_call(&url, &["SET", "kept", "yes"]).await.unwrap(),
        "+OK"
    );
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
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = eventually(30, "Redis restarted", || {
        let (s, id, url) = (&s, id.clone(), url.clone());
        async move {
            let pid = server_pid(s, &id);
            (pid != first && alive(pid) && redis_call(&url, &["PING"]).await.ok()? == "+PONG")
                .then_some(pid)
        }
    })
    .await;
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");
    let logs = s.logs("cache");
    assert!(
        logs.contains("heroku[redis]: REDIS (cache-store) exited"),
        "{logs}"
    );

    // The policy is set now and kept across restarts of Redis.
    let out = s.ok(
        &dir,
        &["redis:maxmemory", "--policy", "allkeys-lru", "-a", "cache"],
    );
    assert!(out.contains("allkeys-lru"), "{out}");
    let info = s.ok(&dir, &["redis:info", "-a", "cache"]);
    assert!(
        info.contains("allkeys-lru") && info.contains("25 MB"),
        "{info}"
    );
    let bad = s.cli(
        &dir,
        &["redis:maxmemory", "--policy", "sometimes", "-a", "cache"],
    );
    assert!(!bad.status.success());

    // `slipway server` crashes and comes back: the same Redis is adopted, not started twice.
    let mut s = s;
    s.kill_hard();
    let s = s.restart_after_kill();
    assert_eq!(server_pid(&s, &id), second);
    assert!(alive(second));
    assert_eq!(redis_processes(&data), 1);
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");
    assert!(redis_call(&url, &["CONFIG", "GET", "x"])
        .await
        .unwrap_or_default()
        .starts_with("-NOPERM"));

    // A Lua script that grows past the cap outside Redis is killed with Redis, which comes back
    // with its data; the app's log says why.
    let script = "local t = {} for i = 1, 4000000 do t[i] = string.rep('x', 64) .. i end return #t";
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        redis_call(&url, &["EVAL", script, "0"]),
    )
    .await;
    let third = eventually(60, "Redis restarted after the cap", || {
        let (s, id, url) = (&s, id.clone(), url.clone());
        async move {
            let pid = server_pid(s, &id);
            (pid != second && alive(pid) && redis_call(&url, &["PING"]).await.ok()? == "+PONG")
                .then_some(pid)
        }
    })
    .await;
    assert!(third > 0);
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");
    assert!(redis_call(&url, &["CONFIG", "GET", "maxmemory-policy"])
        .await
        .unwrap_or_default()
        .starts_with("-NOPERM"));
    let logs = s.logs("cache");
    assert!(
        logs.contains("was killed at its memory cap of 82 MB"),
        "{logs}"
    );
    let info = s.ok(&dir, &["redis:info", "-a", "cache"]);
    assert!(
        info.contains("allkeys-lru"),
        "the policy survives a restart: {info}"
    );

    // redis:cli is the real redis-cli with the add-on's password.
    let mut cli = std::process::Command::new(BIN)
        .args(["redis:cli", "-a", "cache"])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.home())
        .env("SLIPWAY_API_URL", s.api_url())
        .env("SLIPWAY_API_KEY", &s.key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = cli.stdin.take().unwrap();
        stdin.write_all(b"GET kept\n").unwrap();
    }
    let out = cli.wait_with_output().unwrap();
    assert!(
        text(&out.stdout).contains("yes"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // A larger plan: more memory, at once, with the data.
    let out = s.ok(
        &dir,
        &["addons:upgrade", "cache-store", "premium-0", "-a", "cache"],
    );
    assert!(out.contains("from mini to premium-0"), "{out}");
    let info = s.ok(&dir, &["redis:info", "-a", "cache"]);
    assert!(info.contains("50 MB"), "{info}");
    assert_eq!(redis_call(&url, &["GET", "kept"]).await.unwrap(), "yes");

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

/// `/pg/put?k=&v=`, `/pg/get?k=`, `/pg/insert?n=`, `/pg/update`, `/pg/delete?keep=`, `/pg/bad`
/// through `DATABASE_URL`, with the real `psql`.
const PG_APP: &str = r#"import os, subprocess
from urllib.parse import urlparse, parse_qs
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PSQL = "/usr/lib/postgresql/15/bin/psql"

def sql(q):
    p = subprocess.run([PSQL, os.environ["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tAc", q],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise Exception(p.stderr.strip())
    return p.stdout.strip()

SETUP = "CREATE TABLE IF NOT EXISTS kv (k text primary key, v text); CREATE TABLE IF NOT EXISTS items (id serial primary key, note text);"

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        try:
            if u.path == "/pg/put":
                sql(SETUP)
                body = sql("INSERT INTO kv VALUES ('%s', '%s') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v; SELECT 'OK'" % (q["k"], q["v"]))
            elif u.path == "/pg/get":
                body = sql("SELECT v FROM kv WHERE k = '%s'" % q["k"]) or "(nil)"
            elif u.path == "/pg/insert":
                sql(SETUP)
                body = sql("INSERT INTO items (note) SELECT 'n' FROM generate_series(1, %d); SELECT count(*) FROM items" % int(q["n"]))
            elif u.path == "/pg/update":
                body = sql("UPDATE items SET note = 'u' WHERE id = (SELECT min(id) FROM items); SELECT 'OK'")
            elif u.path == "/pg/delete":
                body = sql("DELETE FROM items WHERE id NOT IN (SELECT id FROM items ORDER BY id LIMIT %d); SELECT count(*) FROM items" % int(q["keep"]))
            else:
                body = sql("SELECT * FROM nope")
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

fn deploy_pg(s: &TestServer, name: &str) -> PathBuf {
    deploy_source(s, name, PG_APP)
}

/// GET through the router until it answers `want` (the release with the add-on's config vars
/// replaces the app's dynos).
async fn get_until(s: &TestServer, app: &str, path: &str, want: (u16, &str)) {
    let mut last = (0, String::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        last = get(s, app, path).await;
        if last.0 == want.0 && last.1 == want.1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{app}{path}: wanted {want:?}, last got {last:?}");
}

/// GET through the router: (status, body), once the app answers at all.
async fn get(s: &TestServer, app: &str, path: &str) -> (u16, String) {
    let client = s.router_client(app);
    let url = s.app_url(app, path);
    eventually(60, &format!("{app}{path} answers"), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(&url).send().await.ok()?;
            let status = r.status().as_u16();
            // 503: the router while the app's dynos restart after a release.
            (status != 503).then_some(())?;
            Some((status, r.text().await.ok()?))
        }
    })
    .await
}

async fn logs_contain(s: &TestServer, app: &str, what: &str) {
    eventually(60, &format!("{app}'s log says {what:?}"), || async {
        s.logs(app).contains(what).then_some(())
    })
    .await;
}

fn host_psql(url: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([url, "-X", "-tAc", sql])
        .output()
        .expect("psql")
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_through_git_push_row_limit_rotation_and_destroy() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start_with(&["--addon-check-interval", "1s", "--row-limit-grace", "0s"]);
    let ledger = deploy_pg(&s, "ledger");
    let out = s.ok(
        &ledger,
        &["addons:create", "heroku-postgresql", "-a", "ledger"],
    );
    assert!(
        out.contains("Creating heroku-postgresql:essential-0 on ⬢ ledger... free"),
        "{out}"
    );
    assert!(out.contains("as DATABASE_URL, HEROKU_POSTGRESQL_"), "{out}");
    let name = out
        .split_whitespace()
        .find(|w| w.starts_with("postgresql-"))
        .expect("add-on name")
        .to_string();
    let vars = config(&s, &ledger, "ledger");
    let url = vars["DATABASE_URL"].as_str().unwrap().to_string();
    let colored = vars
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.starts_with("HEROKU_POSTGRESQL_") && k.ends_with("_URL"))
        .expect("colored var")
        .clone();
    assert_eq!(vars[&colored], url);

    // Written and read back through the app's dyno, over the bridge.
    get_until(&s, "ledger", "/pg/put?k=a&v=1", (200, "OK")).await;
    assert_eq!(get(&s, "ledger", "/pg/get?k=a").await, (200, "1".into()));

    // The superuser is not reachable over TCP; the app's role reaches only its database.
    let out = host_psql(
        &url.replacen(url.split('@').next().unwrap(), "postgres://postgres", 1),
        "SELECT 1",
    );
    assert!(!out.status.success(), "superuser over TCP must be refused");
    let other_db = format!("{}/postgres", url.rsplit_once('/').unwrap().0);
    assert!(!host_psql(&other_db, "SELECT 1").status.success());
    let stats = host_psql(
        &url,
        "SELECT count(*) FROM slipway_admin.pg_stat_statements",
    );
    assert!(
        !stats.status.success(),
        "the app cannot read the cluster's statement statistics"
    );

    // A second app shares the database.
    let report = deploy_pg(&s, "ledger-report");
    s.ok(
        &report,
        &[
            "addons:attach",
            &name,
            "--as",
            "DATABASE",
            "-a",
            "ledger-report",
        ],
    );
    get_until(&s, "ledger-report", "/pg/get?k=a", (200, "1")).await;

    // Postgres's own log lines reach the app's log.
    let (status, _) = get(&s, "ledger", "/pg/bad").await;
    assert_eq!(status, 500);
    logs_contain(&s, "ledger", "sql_error_code = 42P01").await;
    assert!(s.logs("ledger").contains("app[postgres."));

    // The row limit (10,000 on essential-0): a warning, then INSERT revoked, then given back.
    assert_eq!(get(&s, "ledger", "/pg/insert?n=7500").await.0, 200);
    logs_contain(&s, "ledger", "At 10,000 rows INSERT privileges are revoked").await;
    assert_eq!(get(&s, "ledger", "/pg/insert?n=2600").await.0, 200);
    logs_contain(&s, "ledger", "INSERT privileges revoked").await;
    let info = s.ok(&ledger, &["pg:info", "-a", "ledger"]);
    assert!(info.contains("Write access revoked"), "{info}");
    let (status, body) = get(&s, "ledger", "/pg/insert?n=1").await;
    assert_eq!(status, 500);
    assert!(body.contains("permission denied"), "{body}");
    assert_eq!(get(&s, "ledger", "/pg/update").await, (200, "OK".into()));
    assert_eq!(get(&s, "ledger", "/pg/get?k=a").await, (200, "1".into()));
    assert_eq!(
        get(&s, "ledger", "/pg/delete?keep=5000").await,
        (200, "5000".into())
    );
    logs_contain(&s, "ledger", "INSERT privileges restored").await;
    assert_eq!(
        get(&s, "ledger", "/pg/insert?n=1").await,
        (200, "5001".into())
    );

    // pg:outliers shows the app's own statements; pg:psql is the real psql with its credentials.
    let outliers = s.ok(&ledger, &["pg:outliers", "-a", "ledger"]);
    assert!(outliers.contains("items"), "{outliers}");
    let out = s.ok(
        &ledger,
        &[
            "pg:psql",
            "-c",
            "SELECT count(*) AS n FROM items",
            "-a",
            "ledger",
        ],
    );
    assert!(out.contains("5001"), "{out}");
    let ps = s.ok(&ledger, &["pg:ps", "--verbose", "-a", "ledger"]);
    assert!(ps.contains("pid") && ps.contains("row"), "{ps}");
    let creds = s.ok(&ledger, &["pg:credentials", "-a", "ledger"]);
    assert!(
        creds.contains("default") && creds.contains("active"),
        "{creds}"
    );

    // Rotating the credentials: the old password stops working at once; both apps get the new one.
    s.ok(
        &ledger,
        &[
            "pg:credentials:rotate",
            "--confirm",
            "ledger",
            "-a",
            "ledger",
        ],
    );
    let out = host_psql(&url, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("password authentication failed"),
        "{}",
        text(&out.stderr)
    );
    let new_url = config(&s, &ledger, "ledger")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_url, url);
    assert_eq!(
        config(&s, &report, "ledger-report")["DATABASE_URL"],
        new_url.as_str()
    );
    assert!(host_psql(&new_url, "SELECT 1").status.success());
    let releases = s.ok(&ledger, &["releases", "-a", "ledger"]);
    assert!(
        releases.contains("Update DATABASE, HEROKU_POSTGRESQL_"),
        "{releases}"
    );
    eventually(60, "the app uses the new password", || async {
        (get(&s, "ledger", "/pg/get?k=a").await == (200, "1".to_string())).then_some(())
    })
    .await;

    // Destroy removes the data; the port stops answering.
    let id = addon_id(&s, &name).await;
    let data = s.addons_dir().join(&id);
    assert!(data.join("pgdata").is_dir());
    s.ok(
        &ledger,
        &[
            "addons:destroy",
            &name,
            "-a",
            "ledger",
            "--confirm",
            "ledger",
            "--force",
        ],
    );
    assert!(!data.exists());
    assert!(!host_psql(&new_url, "SELECT 1").status.success());
    assert!(config(&s, &report, "ledger-report")
        .get("DATABASE_URL")
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_survives_crashes_and_server_restarts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("vault");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "vault"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "postgresql",
            "--name",
            "vault-db",
            "-a",
            "vault",
        ],
    );
    let url = config(&s, &dir, "vault")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let out = host_psql(&url, "CREATE TABLE t (v int); INSERT INTO t VALUES (42);");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = addon_id(&s, "vault-db").await;

    // The postmaster is killed: its backends go too, and it comes back with the data.
    let first = server_pid(&s, &id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = eventually(60, "Postgres restarted", || {
        let (s, id, url) = (&s, id.clone(), url.clone());
        async move {
            let pid = server_pid(s, &id);
            (pid != first && alive(pid) && host_psql(&url, "SELECT v FROM t").status.success())
                .then_some(pid)
        }
    })
    .await;
    assert_eq!(
        text(&host_psql(&url, "SELECT v FROM t").stdout).trim(),
        "42"
    );

    // The server crashes and restarts: the running cluster is adopted, not started again.
    let mut s = s;
    s.kill_hard();
    // Had the crash fallen between the add-on's creation and the release carrying its URL
    // (made so here by taking the var out of the newest release), the start releases it.
    let py = format!(
        "import sqlite3, json\n\
         c = sqlite3.connect({db:?})\n\
         r = c.execute(\"SELECT id, config FROM releases WHERE app_id = \
           (SELECT id FROM apps WHERE name = 'vault') ORDER BY version DESC LIMIT 1\").fetchone()\n\
         cfg = json.loads(r[1])\n\
         del cfg['DATABASE_URL']\n\
         c.execute('UPDATE releases SET config = ? WHERE id = ?', (json.dumps(cfg), r[0]))\n\
         c.commit()\n",
        db = s.data_dir().join("state.db").display().to_string()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &py])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = s.restart_after_kill();
    eventually(30, "DATABASE_URL is released again", || async {
        (config(&s, &dir, "vault")["DATABASE_URL"].as_str() == Some(url.as_str())).then_some(())
    })
    .await;
    assert!(
        s.ok(&dir, &["releases", "-a", "vault"])
            .contains("after an interrupted change"),
        "the repair is a release of its own"
    );
    assert_eq!(server_pid(&s, &id), second);
    assert_eq!(
        text(&host_psql(&url, "SELECT v FROM t").stdout).trim(),
        "42"
    );
    let info = s.ok(&dir, &["pg:info", "-a", "vault"]);
    assert!(
        info.contains("Rows:") && info.contains("vault-db"),
        "{info}"
    );

    // A plan change keeps the data.
    let out = s.ok(
        &dir,
        &["addons:upgrade", "vault-db", "essential-1", "-a", "vault"],
    );
    assert!(out.contains("from essential-0 to essential-1"), "{out}");
    assert_eq!(
        text(&host_psql(&url, "SELECT v FROM t").stdout).trim(),
        "42"
    );
    assert_eq!(
        text(&host_psql(&url, "SHOW max_connections").stdout).trim(),
        "25"
    );
    let now = server_pid(&s, &id);
    drop(s);
    assert!(!alive(now), "--on-exit stop stops the cluster");
}

/// A request the test partner got.
#[derive(Debug, Clone)]
struct PartnerCall {
    method: String,
    path: String,
    authorization: String,
    body: serde_json::Value,
}

/// A partner's provider over Heroku's add-on partner API: provisions `res-N` with a
/// `FAKEADDON_URL`, refuses the `sold-out` plan, accepts plan changes and deletes.
async fn fake_partner() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<PartnerCall>>>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls: std::sync::Arc<std::sync::Mutex<Vec<PartnerCall>>> = Default::default();
    let got = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let got = got.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let authorization = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let bytes = req.into_body().collect().await?.to_bytes();
                            let body: serde_json::Value =
                                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                            let n = {
                                let mut calls = got.lock().unwrap();
                                calls.push(PartnerCall {
                                    method: method.clone(),
                                    path,
                                    authorization,
                                    body: body.clone(),
                                });
                                calls.len()
                            };
                            let (status, answer) = match method.as_str() {
                                "POST" if body["plan"] == "sold-out" => (
                                    422,
                                    serde_json::json!({"message": "That plan is sold out."}),
                                ),
                                "POST" => (
                                    200,
                                    serde_json::json!({
                                        "id": format!("res-{n}"),
                                        "config": {"FAKEADDON_URL": format!("http://fake.example/res-{n}")},
                                        "message": "Your fake add-on is ready."
                                    }),
                                ),
                                "PUT" => (200, serde_json::json!({"message": "Plan changed."})),
                                _ => (204, serde_json::Value::Null),
                            };
                            let body = if answer.is_null() {
                                String::new()
                            } else {
                                answer.to_string()
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (port, calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn partner_add_ons_over_the_partner_api() {
    let (port, calls) = fake_partner().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("data/addon-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("fakeaddon.json"),
        format!(
            r#"{{"id": "fakeaddon", "name": "Fake Add-on",
                "api": {{"config_vars_prefix": "FAKEADDON", "config_vars": ["FAKEADDON_URL"],
                        "password": "s3cret",
                        "production": {{"base_url": "http://127.0.0.1:{port}/heroku/resources"}}}},
                "plans": [{{"name": "test", "default": true}}, {{"name": "premium"}}, {{"name": "sold-out"}}]}}"#
        ),
    )
    .unwrap();
    let s = TestServer::start_in(dir, &[]);
    let app = s.home().join("shop");
    std::fs::create_dir_all(&app).unwrap();
    s.ok(&app, &["apps:create", "shop"]);
    let services = s.ok(&app, &["addons:services"]);
    assert!(services.contains("fakeaddon"), "{services}");

    let out = s.ok(
        &app,
        &[
            "addons:create",
            "fakeaddon",
            "-a",
            "shop",
            "--",
            "--region",
            "eu",
        ],
    );
    assert!(out.contains("as FAKEADDON_URL"), "{out}");
    let name = out
        .split_whitespace()
        .find(|w| w.starts_with("fakeaddon-"))
        .expect("add-on name")
        .to_string();
    assert_eq!(
        config(&s, &app, "shop")["FAKEADDON_URL"],
        "http://fake.example/res-1"
    );
    let provision = calls.lock().unwrap()[0].clone();
    assert_eq!(
        (provision.method.as_str(), provision.path.as_str()),
        ("POST", "/heroku/resources")
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("fakeaddon:s3cret")
    );
    assert_eq!(provision.authorization, basic);
    assert_eq!(provision.body["plan"], "test");
    assert_eq!(provision.body["name"], name.as_str());
    assert_eq!(provision.body["options"]["region"], "eu");
    assert!(provision.body["uuid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(provision.body["callback_url"]
        .as_str()
        .unwrap()
        .starts_with("http://"));

    // A partner's refusal reaches the user with its words; nothing is left behind.
    let out = s.cli(
        &app,
        &[
            "addons:create",
            "fakeaddon:sold-out",
            "--name",
            "nope",
            "-a",
            "shop",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("That plan is sold out."),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(s.api_get("/addons/nope").await.status(), 404);

    let out = s.ok(&app, &["addons:upgrade", &name, "premium", "-a", "shop"]);
    assert!(out.contains("to premium"), "{out}");
    let change = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (change.method.as_str(), change.path.as_str()),
        ("PUT", "/heroku/resources/res-1")
    );
    assert_eq!(change.body["plan"], "premium");
    assert_eq!(change.authorization, basic);

    s.ok(
        &app,
        &["addons:destroy", &name, "-a", "shop", "--confirm", "shop"],
    );
    let gone = calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (gone.method.as_str(), gone.path.as_str()),
        ("DELETE", "/heroku/resources/res-1")
    );
    assert!(config(&s, &app, "shop").get("FAKEADDON_URL").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_sessions_show_lock_and_end_with_ps_locks_kill_and_killall() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("desk");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "desk"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql",
            "--name",
            "desk-db",
            "-a",
            "desk",
        ],
    );
    let info = s.ok(&dir, &["addons:info", "desk-db", "-a", "desk"]);
    assert!(
        info.contains("heroku-postgresql:essential-0") && info.contains("desk::DATABASE"),
        "{info}"
    );
    let url = config(&s, &dir, "desk")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host_psql(&url, "CREATE TABLE jobs (id int)")
        .status
        .success());

    // A session holding a lock, and another busy one.
    let spawn = |sql: &str| {
        std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .args([url.as_str(), "-X", "-c", sql])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let holder = spawn("BEGIN; LOCK TABLE jobs IN EXCLUSIVE MODE; SELECT pg_sleep(120)");
    let waiter = spawn("SELECT pg_sleep(120)");
    let ps = eventually(30, "pg:ps shows both sessions", || async {
        let ps = s.ok(&dir, &["pg:ps", "-a", "desk"]);
        (ps.matches("pg_sleep").count() >= 2).then_some(ps)
    })
    .await;
    assert!(ps.contains("active"), "{ps}");
    eventually(30, "pg:locks shows the lock on jobs", || async {
        s.ok(&dir, &["pg:locks", "-a", "desk"])
            .contains("jobs")
            .then_some(())
    })
    .await;

    // pg:kill cancels the waiter's query; pg:killall ends the lock holder's session.
    let waiter_pid = ps
        .lines()
        .find(|l| l.contains("pg_sleep") && !l.contains("LOCK"))
        .and_then(|l| l.split('|').next())
        .map(|p| p.trim().to_string())
        .expect("a pid");
    let _ = ps;
    s.ok(&dir, &["pg:kill", &waiter_pid, "-a", "desk"]);
    let out = waiter.wait_with_output().unwrap();
    assert!(
        text(&out.stderr).contains("canceling statement due to user request"),
        "{}",
        text(&out.stderr)
    );
    s.ok(&dir, &["pg:killall", "-a", "desk"]);
    let out = holder.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("terminat"),
        "{}",
        text(&out.stderr)
    );

    // A pid that is not one of the app's sessions is left alone.
    let out = s.ok(&dir, &["pg:kill", "1", "-a", "desk"]);
    assert!(out.lines().any(|l| l.trim() == "f"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_backups_capture_download_restore_and_schedule() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("books");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "books"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql",
            "--name",
            "books-db",
            "-a",
            "books",
        ],
    );
    let url = config(&s, &dir, "books")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let out = host_psql(
        &url,
        "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 500);",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The app's own code runs while a restore loads its rows (here a CHECK): it must run with
    // the app role's rights. Given the superuser's, it would make the app's role one.
    let role = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap()
        .to_string();
    let out = host_psql(
        &url,
        &format!(
            "CREATE FUNCTION escalate() RETURNS boolean LANGUAGE plpgsql AS $f$ BEGIN \
               BEGIN PERFORM set_config('role', 'none', true); \
                 EXECUTE 'ALTER ROLE \"{role}\" SUPERUSER'; \
               EXCEPTION WHEN OTHERS THEN NULL; END; \
             RETURN true; END $f$; \
             CREATE TABLE trap (id int CHECK (escalate())); INSERT INTO trap VALUES (1);"
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = s.ok(&dir, &["pg:backups:capture", "-a", "books"]);
    assert!(out.contains("Backing up DATABASE to b001... done"), "{out}");
    let list = s.ok(&dir, &["pg:backups", "-a", "books"]);
    assert!(
        list.contains("b001") && list.contains("Completed"),
        "{list}"
    );

    // The link serves a pg_dump custom-format file to anyone who has it, for a while.
    let link = s
        .ok(&dir, &["pg:backups:url", "b001", "-a", "books"])
        .trim()
        .to_string();
    let body = reqwest::get(&link).await.unwrap().bytes().await.unwrap();
    assert!(body.starts_with(b"PGDMP"), "a pg_dump -Fc file");
    let wrong = format!("{}0", &link[..link.len() - 1]);
    assert_eq!(reqwest::get(&wrong).await.unwrap().status(), 404);
    let out = s.ok(
        &dir,
        &["pg:backups:download", "-o", "books.dump", "-a", "books"],
    );
    assert!(out.contains("done"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("books.dump")).unwrap(),
        body.to_vec()
    );

    // Changes after the backup are undone by a restore; the restore needs confirming.
    assert!(host_psql(
        &url,
        "DELETE FROM t WHERE id > 10; CREATE TABLE extra (x int);"
    )
    .status
    .success());
    let refused = s.cli(
        &dir,
        &["pg:backups:restore", "b001", "DATABASE", "-a", "books"],
    );
    assert!(!refused.status.success());
    s.ok(
        &dir,
        &[
            "pg:backups:restore",
            "b001",
            "DATABASE",
            "--confirm",
            "books",
            "-a",
            "books",
        ],
    );
    let counts = text(
        &host_psql(
            &url,
            "SELECT count(*) FROM t; SELECT count(*) FROM pg_tables WHERE tablename = 'extra'",
        )
        .stdout,
    );
    assert_eq!(
        counts.split_whitespace().collect::<Vec<_>>(),
        ["500", "0"],
        "{counts}"
    );
    assert_eq!(
        text(&host_psql(&url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user; SELECT count(*) FROM trap").stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["f", "1"],
        "the restore ran the app's code as the superuser"
    );
    // The app's role owns what was restored and can write to it.
    assert!(host_psql(&url, "INSERT INTO t (v) VALUES ('after')")
        .status
        .success());

    // A broken backup file leaves the database as it was.
    let id = {
        let v: serde_json::Value = s
            .api_get("/apps/books/pg-backups/b001")
            .await
            .json()
            .await
            .unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let app_id = {
        let v: serde_json::Value = s.api_get("/apps/books").await.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let file = s
        .data_dir()
        .join("pg-backups")
        .join(&app_id)
        .join(format!("{id}.dump"));
    let mut bytes = std::fs::read(&file).unwrap();
    let half = bytes.len() / 2;
    bytes.truncate(half);
    std::fs::write(&file, bytes).unwrap();
    let out = s.cli(
        &dir,
        &[
            "pg:backups:restore",
            "b001",
            "DATABASE",
            "--confirm",
            "books",
            "-a",
            "books",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&host_psql(&url, "SELECT count(*) FROM t").stdout).trim(),
        "501"
    );

    // A refused create changes nothing: its options are checked before DATABASE is replaced,
    // and a duration past what a date can hold is a clear error, not a dropped connection.
    for by in ["bogus", "1000000 years"] {
        let out = s.cli(
            &dir,
            &[
                "addons:create",
                "heroku-postgresql",
                "--as",
                "DATABASE",
                "--confirm",
                "books",
                "--rollback",
                "DATABASE",
                "--by",
                by,
                "-a",
                "books",
            ],
        );
        assert!(!out.status.success(), "--by {by}");
        assert!(text(&out.stderr).contains("--by"), "{}", text(&out.stderr));
        assert_eq!(
            config(&s, &dir, "books")["DATABASE_URL"].as_str(),
            Some(url.as_str()),
            "--by {by}"
        );
    }

    // A daily schedule.
    let out = s.ok(
        &dir,
        &["pg:backups:schedule", "--at", "02:00 UTC", "-a", "books"],
    );
    assert!(out.contains("02:00"), "{out}");
    let schedules = s.ok(&dir, &["pg:backups:schedules", "-a", "books"]);
    assert!(
        schedules.contains("DATABASE") && schedules.contains("2:00"),
        "{schedules}"
    );
    let bad = s.cli(
        &dir,
        &["pg:backups:schedule", "--at", "25:00", "-a", "books"],
    );
    assert!(!bad.status.success());
    s.ok(&dir, &["pg:backups:unschedule", "-a", "books"]);
    let schedules = s.ok(&dir, &["pg:backups:schedules", "-a", "books"]);
    assert!(!schedules.contains("2:00 UTC"), "{schedules}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_diagnose_goes_red_and_explain_rolls_back() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start_with(&["--pg-long-query", "2s", "--pg-long-transaction", "2s"]);
    let dir = s.home().join("clinic");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "clinic"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql",
            "--name",
            "clinic-db",
            "-a",
            "clinic",
        ],
    );
    let url = config(&s, &dir, "clinic")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let setup = host_psql(
        &url,
        "CREATE TABLE jobs (id int); INSERT INTO jobs SELECT generate_series(1, 100); \
         CREATE TABLE tickets (id serial PRIMARY KEY); SELECT setval('tickets_id_seq', 2040109466);",
    );
    assert!(setup.status.success(), "{}", text(&setup.stderr));

    // A healthy database first.
    let report: serde_json::Value =
        serde_json::from_str(&s.ok(&dir, &["pg:diagnose", "--json", "-a", "clinic"])).unwrap();
    let status = |r: &serde_json::Value, name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(status(&report, "Blocking Queries"), "green");
    assert_eq!(status(&report, "Long Transactions"), "green");
    assert_eq!(status(&report, "Sequences"), "red", "a sequence at 95 %");

    // A long transaction holding a lock, and a query it blocks.
    let spawn = |sql: &str| {
        std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .args([url.as_str(), "-X", "-c", sql])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut holder = spawn("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60)");
    eventually(30, "the lock is taken", || async {
        let out = host_psql(
            &url,
            "SELECT count(*) FROM pg_locks WHERE relation = 'jobs'::regclass AND mode = 'AccessExclusiveLock' AND granted",
        );
        (text(&out.stdout).trim() == "1").then_some(())
    })
    .await;
    let mut blocked = spawn("SELECT count(*) FROM jobs");
    let report = eventually(30, "diagnose goes red", || async {
        let out = s.cli(&dir, &["pg:diagnose", "--json", "-a", "clinic"]);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        ["Blocking Queries", "Long Transactions", "Long Queries"]
            .iter()
            .all(|c| status(&r, c) == "red")
            .then_some(r)
    })
    .await;
    let id = report["id"].as_str().unwrap().to_string();
    let shown = s.ok(&dir, &["pg:diagnose", &id, "-a", "clinic"]);
    assert!(shown.contains(&format!("Report {id}")), "{shown}");
    assert!(
        shown.contains("RED: Blocking Queries") && shown.contains("RED: Sequences"),
        "{shown}"
    );
    assert!(
        shown.contains("tickets_id_seq"),
        "the offending rows: {shown}"
    );
    assert!(shown.contains("GREEN: Connection Count"), "{shown}");
    s.ok(&dir, &["pg:killall", "-a", "clinic"]);
    let _ = holder.wait();
    let _ = blocked.wait();

    // EXPLAIN ANALYZE runs the statement and rolls it back.
    let plan = s.ok(&dir, &["pg:explain", "DELETE FROM jobs", "-a", "clinic"]);
    assert!(
        plan.contains("Delete on jobs") && plan.contains("actual time"),
        "{plan}"
    );
    assert_eq!(
        text(&host_psql(&url, "SELECT count(*) FROM jobs").stdout).trim(),
        "100"
    );
    let refused = s.cli(
        &dir,
        &["pg:explain", "SELECT 1; DROP TABLE jobs", "-a", "clinic"],
    );
    assert!(!refused.status.success());
    assert_eq!(
        text(&host_psql(&url, "SELECT count(*) FROM jobs").stdout).trim(),
        "100"
    );

    for cmd in ["pg:bloat", "pg:index-usage", "pg:cache-hit"] {
        let out = s.ok(&dir, &[cmd, "-a", "clinic"]);
        assert!(out.contains("row"), "{cmd}: {out}");
    }
}

fn count(url: &str, table: &str) -> i64 {
    text(&host_psql(url, &format!("SELECT count(*) FROM {table}")).stdout)
        .trim()
        .parse()
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn followers_catch_up_read_only_and_forks_diverge() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("main");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "main"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--name",
            "main-db",
            "-a",
            "main",
        ],
    );
    let leader = config(&s, &dir, "main")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host_psql(&leader, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 1000);").status.success());

    // A follower.
    let out = s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--follow",
            "DATABASE_URL",
            "--as",
            "FOLLOWER",
            "--name",
            "main-follower",
            "-a",
            "main",
        ],
    );
    assert!(out.contains("as FOLLOWER_URL"), "{out}");
    let follower = config(&s, &dir, "main")["FOLLOWER_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(follower, leader);

    // It catches up under a stream of writes.
    for _ in 0..20 {
        assert!(host_psql(
            &leader,
            "INSERT INTO t (v) SELECT 'y' FROM generate_series(1, 500)"
        )
        .status
        .success());
    }
    eventually(60, "the follower catches up", || async {
        (count(&follower, "t") == 11_000).then_some(())
    })
    .await;
    let out = host_psql(&follower, "INSERT INTO t (v) VALUES ('no')");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("read-only"),
        "{}",
        text(&out.stderr)
    );
    let info = s.ok(&dir, &["pg:info", "FOLLOWER", "-a", "main"]);
    assert!(
        info.contains("Following:") && info.contains("main-db"),
        "{info}"
    );

    // No followers of followers; no destroying a leader that has followers.
    let out = s.cli(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--follow",
            "FOLLOWER_URL",
            "-a",
            "main",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("followers of followers"),
        "{}",
        text(&out.stderr)
    );
    let out = s.cli(
        &dir,
        &[
            "addons:destroy",
            "main-db",
            "--confirm",
            "main",
            "--force",
            "-a",
            "main",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has followers (main-follower)"),
        "{}",
        text(&out.stderr)
    );

    // A fork: the data as of now, then its own life, with its own password.
    let out = s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--fork",
            "DATABASE_URL",
            "--as",
            "FORK",
            "-a",
            "main",
        ],
    );
    assert!(out.contains("as FORK_URL"), "{out}");
    let fork = config(&s, &dir, "main")["FORK_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(count(&fork, "t"), 11_000);
    assert!(host_psql(&fork, "INSERT INTO t (v) VALUES ('fork only')")
        .status
        .success());
    assert!(host_psql(&leader, "DELETE FROM t WHERE id <= 100")
        .status
        .success());
    assert_eq!(count(&fork, "t"), 11_001);
    assert_eq!(count(&leader, "t"), 10_900);
    let password = |u: &str| {
        u.split(':')
            .nth(2)
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(password(&fork), password(&leader));

    // Unfollow: the follower becomes writable and the leader keeps no slot for it.
    eventually(60, "the follower has the delete", || async {
        (count(&follower, "t") == 10_900).then_some(())
    })
    .await;
    let refused = s.cli(&dir, &["pg:unfollow", "FOLLOWER_URL", "-a", "main"]);
    assert!(!refused.status.success());
    s.ok(
        &dir,
        &[
            "pg:unfollow",
            "FOLLOWER_URL",
            "--confirm",
            "main",
            "-a",
            "main",
        ],
    );
    eventually(30, "the promoted follower takes writes", || async {
        host_psql(&follower, "INSERT INTO t (v) VALUES ('promoted')")
            .status
            .success()
            .then_some(())
    })
    .await;
    assert_eq!(
        text(&host_psql(&leader, "SELECT count(*) FROM pg_replication_slots").stdout).trim(),
        "0"
    );
    assert_eq!(count(&leader, "t"), 10_900);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_exactly_the_rows_committed_before_its_time() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("rbk");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "rbk"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--name",
            "rbk-db",
            "-a",
            "rbk",
        ],
    );
    let url = config(&s, &dir, "rbk")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host_psql(
        &url,
        "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 100);"
    )
    .status
    .success());
    // The target: the database's own clock, after the first 100 rows were committed.
    let target = text(
        &host_psql(
            &url,
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        )
        .stdout,
    )
    .trim()
    .to_string();
    assert!(
        host_psql(&url, "INSERT INTO t SELECT generate_series(101, 200)")
            .status
            .success()
    );

    let out = s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--rollback",
            "DATABASE_URL",
            "--to",
            &target,
            "--as",
            "ROLLBACK",
            "-a",
            "rbk",
        ],
    );
    assert!(out.contains("as ROLLBACK_URL"), "{out}");
    let rolled = config(&s, &dir, "rbk")["ROLLBACK_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let info = s.ok(&dir, &["pg:info", "DATABASE", "-a", "rbk"]);
    assert!(
        info.contains("Rollback:") && info.contains("earliest from"),
        "{info}"
    );
    assert_eq!(
        count(&rolled, "t"),
        100,
        "exactly the rows committed before {target}"
    );
    assert_eq!(count(&url, "t"), 200, "the source is untouched");
    // It is a database of its own: writable, with its own password.
    assert!(host_psql(&rolled, "INSERT INTO t VALUES (1000)")
        .status
        .success());
    assert_eq!(count(&url, "t"), 200);

    // Outside the window, and on a plan without rollback: refused, saying why.
    let out = s.cli(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--rollback",
            "DATABASE_URL",
            "--to",
            "2020-01-01 00:00:00",
            "-a",
            "rbk",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("rollback window"),
        "{}",
        text(&out.stderr)
    );
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:essential-0",
            "--as",
            "SMALL",
            "-a",
            "rbk",
        ],
    );
    let out = s.cli(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--rollback",
            "SMALL_URL",
            "--by",
            "1 minute",
            "-a",
            "rbk",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has no rollback"),
        "{}",
        text(&out.stderr)
    );
}
