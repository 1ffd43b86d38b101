//! A harness that runs the real `slipway` binary as a server on free ports with its own data
//! dir, and drives it with the real CLI, real git and real HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_slipway");

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub api: SocketAddr,
    pub router: SocketAddr,
    /// The HTTPS router.
    pub router_tls: SocketAddr,
    /// The TLS rendezvous endpoint of attached one-off dynos.
    pub rendezvous: SocketAddr,
    /// The API (and git) over TLS.
    pub api_tls: SocketAddr,
    pub key: String,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub net: NetLease,
}

/// A node name and dyno subnet no other test server on this host is using: a lock on a file
/// under /tmp/slipway-test-nets holds the lease until it is dropped.
pub struct NetLease {
    pub node_name: String,
    pub subnet: String,
    #[allow(dead_code)] // held, not read: closing it gives the lease back
    lock: Option<std::fs::File>,
}

impl NetLease {
    pub fn take() -> NetLease {
        let dir = std::env::temp_dir().join("slipway-test-nets");
        std::fs::create_dir_all(&dir).expect("lease dir");
        let start = std::process::id() as usize;
        for i in 0..250 {
            let n = (start + i * 7) % 250;
            let file = dir.join(n.to_string());
            if let Some(lock) = take_lease(&file) {
                return NetLease {
                    node_name: format!("t{n}"),
                    subnet: format!("10.215.{n}.0/24"),
                    lock: Some(lock),
                };
            }
        }
        panic!("no free test network in {}", dir.display());
    }
}

/// Holds the lease `file` names: an exclusive lock on it, which the kernel lets go of when the
/// holder exits, however it exits (a killed test process cannot leave a stale lease behind).
/// The files are never removed, so two processes always lock the same file.
pub fn take_lease(file: &Path) -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(file)
        .ok()?;
    f.try_lock().ok()?;
    Some(f)
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// Starts `slipway server` and waits (with a deadline) for its ready line.
    pub fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> TestServer {
        Self::start_in_env(dir, extra, &[])
    }

    pub fn start_in_env(
        dir: tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        Self::start_leased(dir, extra, env, NetLease::take())
    }

    /// Starts a server again on the same data dir and network names, after `kill_hard`: its
    /// start-up sweeps what the killed one left (namespaces, bridge, nftables, cgroups).
    pub fn restart_after_kill(mut self) -> TestServer {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let net = std::mem::replace(
            &mut self.net,
            NetLease {
                node_name: String::new(),
                subnet: String::new(),
                lock: None,
            },
        );
        drop(self);
        Self::start_leased(dir, &[], &[], net)
    }

    fn start_leased(
        dir: tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
        net: NetLease,
    ) -> TestServer {
        let data = dir.path().join("data");
        // Add-on servers run as their services' users, who must pass through the test's dir.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711));
        }
        let lease_no: u16 = net.node_name.trim_start_matches('t').parse().unwrap_or(0);
        let ports = format!("{}-{}", 20000 + lease_no * 20, 20000 + lease_no * 20 + 19);
        let mut child = Command::new(BIN)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
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
                "--stop-timeout",
                "3s",
            ])
            .args(["--node-name", &net.node_name, "--dyno-subnet", &net.subnet])
            .arg("--addons-dir")
            .arg(dir.path().join("addons"))
            .args(["--addon-ports", &ports])
            .args(extra)
            .env("SLIPWAY_LOG", "info")
            // Tests stop their dynos with the server; a test may pass `--on-exit keep`.
            .env("SLIPWAY_ON_EXIT", "stop")
            .env("NO_COLOR", "1")
            .env("HOME", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slipway server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Slipway ready") {
                    let _ = tx.send(line.clone());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not get ready: {:?}", log.lock().unwrap());
            }
        };
        let field = |name: &str| -> SocketAddr {
            let start = ready
                .find(&format!("{name}=http://"))
                .expect("addr in ready line")
                + name.len()
                + 8;
            let rest = &ready[start..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            rest[..end].parse().expect("addr")
        };
        // As root (as in CI) every test runs real container dynos; say so if the host cannot.
        if nix::unistd::geteuid().is_root() && !extra.contains(&"host") {
            let log = log.lock().unwrap().join("\n");
            assert!(
                log.contains("Dynos run as containers") && log.contains("with NAT"),
                "this host should run container dynos on a bridge:\n{log}"
            );
        }
        let api = field("api");
        let router = field("router");
        let router_tls: SocketAddr = {
            let start = ready
                .find("router_tls=https://")
                .expect("router_tls in ready line")
                + 19;
            let rest = &ready[start..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            rest[..end].parse().expect("router_tls addr")
        };
        let rendezvous: SocketAddr = {
            let start = ready
                .find("rendezvous=rendezvous://")
                .expect("rendezvous in ready line")
                + 24;
            let rest = &ready[start..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            rest[..end].parse().expect("rendezvous addr")
        };
        let api_tls: SocketAddr = {
            let start = ready
                .find("api_tls=https://")
                .expect("api_tls in ready line")
                + 16;
            let rest = &ready[start..];
            let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            rest[..end].parse().expect("api_tls addr")
        };
        let key = std::fs::read_to_string(data.join("owner.api-key"))
            .expect("owner key")
            .trim()
            .to_string();
        TestServer {
            dir,
            api,
            router,
            router_tls,
            rendezvous,
            api_tls,
            key,
            child,
            log,
            net,
        }
    }

    /// Stops the server with SIGTERM, as an operator would, and waits for it to exit.
    pub fn stop_gracefully(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server (through `Drop`) and hands back its directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where add-on servers keep their data (`<dir>/<add-on id>`).
    pub fn addons_dir(&self) -> PathBuf {
        self.dir.path().join("addons")
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Runs the CLI in `cwd` with this server's URL and key.
    pub fn cli(&self, cwd: &Path, args: &[&str]) -> Output {
        self.cli_env(cwd, args, &[])
    }

    pub fn cli_env(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("SLIPWAY_API_URL", self.api_url())
            .env("SLIPWAY_API_KEY", &self.key)
            .env("SLIPWAY_DATA_DIR", self.data_dir())
            .envs(env.iter().copied())
            .output()
            .expect("run slipway cli")
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.cli(cwd, args);
        assert!(
            out.status.success(),
            "slipway {args:?} failed: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn git(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("HOME", self.home())
            .env("SLIPWAY_API_KEY", &self.key)
            .env("SLIPWAY_API_URL", self.api_url())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .output()
            .expect("run git")
    }

    /// Makes a git repo at `dir` holding `files`, committed on `main`.
    pub fn repo(&self, dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, body) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &["commit", "-qm", "init"],
        ] {
            let o = self.git(dir, args);
            assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
        }
    }

    pub fn commit_all(&self, dir: &Path, msg: &str) {
        for args in [&["add", "-A"][..], &["commit", "-qm", msg]] {
            let o = self.git(dir, args);
            assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
        }
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// A client that reaches `<app>.localhost` at the router.
    pub fn router_client(&self, app: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .resolve(&format!("{app}.localhost"), self.router)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    pub fn app_url(&self, app: &str, path: &str) -> String {
        format!("http://{app}.localhost:{}{path}", self.router.port())
    }

    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.http()
            .get(format!("{}{path}", self.api_url()))
            .bearer_auth(&self.key)
            .header("Accept", "application/vnd.heroku+json; version=3")
            .send()
            .await
            .unwrap()
    }

    /// The app's recent log, as `slipway logs -n 1500` prints it.
    pub fn logs(&self, app: &str) -> String {
        self.ok(self.dir.path(), &["logs", "-n", "1500", "-a", app])
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A web app in Python's standard library: answers with its dyno, a config var and the
/// headers it got, as JSON.
pub const ECHO_APP: &str = r#"import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "dyno": os.environ.get("DYNO"),
            "greeting": os.environ.get("GREETING"),
            "path": self.path,
            "version": open("VERSION").read().strip() if os.path.exists("VERSION") else None,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("request " + self.path, flush=True)

print("listening on " + os.environ["PORT"], flush=True)
HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;
