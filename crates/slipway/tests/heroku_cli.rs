//! Heroku's own clients drive Slipway: the official `heroku` CLI (npm, pinned), `heroku3`
//! (PyPI) and `heroku-client` (npm), installed at test time into the target dir, run against a
//! real `slipway server` with `HOME` in a temporary dir. Outputs and exit codes are checked, not
//! just that the commands ran.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::BIN;
use common::*;

const HEROKU_CLI: &str = "heroku@11.10.0";
const HEROKU_CLIENT: &str = "heroku-client@3.1.4";
const PY_PACKAGES: &[&str] = &["heroku3==5.2.1", "six==1.16.0", "jsonschema==4.23.0"];

/// The pinned clients, installed once per target dir (under a lock: tests run in parallel).
pub struct Clients {
    pub node_bin: PathBuf,
    pub node_modules: PathBuf,
    pub python: PathBuf,
}

pub fn clients() -> Clients {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("heroku-clients");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the clients' dir");
    let node = dir.join("node");
    let bin = node.join("node_modules/.bin");
    if !bin.join("heroku").exists() || !node.join("node_modules/heroku-client").exists() {
        std::fs::create_dir_all(&node).unwrap();
        let out = retried(|| {
            Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&node)
                .args([HEROKU_CLI, HEROKU_CLIENT])
                .output()
                .expect("npm")
        });
        assert!(out.status.success(), "npm install: {}", text(&out.stderr));
    }
    let venv = dir.join("py");
    let python = venv.join("bin/python");
    if !venv.join(".installed").exists() {
        let out = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .output()
            .expect("python3 -m venv");
        assert!(out.status.success(), "venv: {}", text(&out.stderr));
        let out = retried(|| {
            Command::new(&python)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(PY_PACKAGES)
                .output()
                .expect("pip")
        });
        assert!(out.status.success(), "pip install: {}", text(&out.stderr));
        std::fs::write(venv.join(".installed"), "").unwrap();
    }
    Clients {
        node_bin: bin,
        node_modules: node.join("node_modules"),
        python,
    }
}

/// Runs an install up to three times: a registry may drop a connection now and then.
fn retried(mut run: impl FnMut() -> Output) -> Output {
    let mut out = run();
    for wait in [5, 15] {
        if out.status.success() {
            break;
        }
        eprintln!(
            "install failed, trying again in {wait} s: {}",
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_secs(wait));
        out = run();
    }
    out
}

/// Heroku's CLI pointed at a Slipway server, as the README tells users to.
struct Heroku<'a> {
    s: &'a TestServer,
    c: &'a Clients,
    home: PathBuf,
    key: String,
}

impl Heroku<'_> {
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.c.node_bin.join("heroku"));
        cmd.args(args).current_dir(cwd);
        self.env(&mut cmd);
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        let api = format!("http://{}", self.s.api);
        let ca = self.s.data_dir().join("tls/ca.pem");
        cmd.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.c.node_bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", &self.home)
            .env("HEROKU_HOST", &api)
            .env("HEROKU_PARTICLEBOARD_URL", &api)
            .env(
                "HEROKU_GIT_HOST",
                format!("127.0.0.1:{}", self.s.api_tls.port()),
            )
            .env("NODE_EXTRA_CA_CERTS", &ca)
            .env("GIT_SSL_CAINFO", &ca)
            .env("DISABLE_TELEMETRY", "true")
            .env("HEROKU_SKIP_ANALYTICS", "1")
            .env("NO_COLOR", "1")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_TERMINAL_PROMPT", "0");
        if !self.key.is_empty() {
            cmd.env("HEROKU_API_KEY", &self.key);
        }
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args)
            .stdin(Stdio::null())
            .output()
            .expect("run heroku")
    }

    fn run_input(&self, cwd: &Path, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(cwd, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run heroku");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `heroku ARGS` on a terminal (through `script`), answering each prompt as it shows;
    /// returns the exit code and what the terminal showed.
    fn on_terminal(
        &self,
        cwd: &Path,
        args: &str,
        answers: &[(&str, &str)],
    ) -> (Option<i32>, String) {
        use std::io::{Read, Write};
        let mut cmd = Command::new("script");
        cmd.arg("-qec")
            .arg(format!(
                "{} {args}",
                self.c.node_bin.join("heroku").display()
            ))
            .arg("/dev/null")
            .current_dir(cwd);
        self.env(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script");
        let mut stdout = child.stdout.take().unwrap();
        let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shown2 = shown.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut stdin = child.stdin.take().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut from = 0;
        for (prompt, answer) in answers {
            loop {
                let seen = text(&shown.lock().unwrap());
                if let Some(at) = seen[from.min(seen.len())..].find(prompt) {
                    from += at + prompt.len();
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {prompt:?} prompt: {seen}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            stdin.write_all(format!("{answer}\r").as_bytes()).unwrap();
            stdin.flush().unwrap();
        }
        let status = child.wait().unwrap();
        drop(stdin);
        let _ = reader.join();
        let seen = text(&shown.lock().unwrap());
        (status.code(), seen)
    }

    /// Runs it, insists on exit 0, and returns stdout and stderr together.
    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args);
        let both = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "heroku {args:?} failed:\n{both}");
        both
    }

    /// Runs it, insists on a failure with exit `code`, and returns stdout and stderr.
    fn fails(&self, cwd: &Path, args: &[&str], code: i32) -> String {
        let out = self.run(cwd, args);
        let both = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "heroku {args:?}:\n{both}");
        both
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(cwd);
        self.env(&mut cmd);
        cmd.output().expect("git")
    }
}

fn lines_like_herokus(logs: &str) -> bool {
    logs.lines().filter(|l| !l.trim().is_empty()).all(|l| {
        let b = l.as_bytes();
        l.len() > 33
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && l[20..26].bytes().all(|c| c.is_ascii_digit())
            && &l[26..33] == "+00:00 "
            && (l[33..].starts_with("app[") || l[33..].starts_with("heroku["))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_cli_drives_slipway() {
    let c = clients();
    let s = TestServer::start();
    let home = s.home().join("heroku-home");
    std::fs::create_dir_all(&home).unwrap();
    let h = Heroku {
        s: &s,
        c: &c,
        home: home.clone(),
        key: s.key.clone(),
    };

    // Who am I; a bad key is refused with the server's message.
    assert!(h
        .ok(&home, &["auth:whoami"])
        .contains("owner@slipway.local"));
    let bad = Heroku {
        s: &s,
        c: &c,
        home: home.clone(),
        key: "not-a-key".into(),
    };
    let out = bad.fails(&home, &["auth:whoami"], 2);
    assert!(
        out.contains("Invalid credentials") && out.contains("unauthorized"),
        "{out}"
    );

    // login -i: email and a key as the password; the token lands in ~/.netrc.
    let fresh = Heroku {
        s: &s,
        c: &c,
        home: s.home().join("login-home"),
        key: String::new(),
    };
    std::fs::create_dir_all(&fresh.home).unwrap();
    let out = fresh.on_terminal(
        &fresh.home,
        "login -i",
        &[("Email", "owner@slipway.local"), ("Password", &s.key)],
    );
    assert_eq!(out.0, Some(0), "{}", out.1);
    let netrc = std::fs::read_to_string(fresh.home.join(".netrc")).unwrap_or_default();
    assert!(
        netrc.contains(&format!("127.0.0.1:{}", s.api.port())),
        "{netrc}"
    );
    assert!(fresh
        .ok(&fresh.home, &["auth:whoami"])
        .contains("owner@slipway.local"));
    let token = fresh.ok(&fresh.home, &["auth:token"]);
    assert!(!token.contains(&s.key), "login made its own key");

    // apps:create in a git repo adds the heroku remote; a taken name is refused.
    let dir = home.join("conf-app");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    let out = h.ok(&dir, &["apps:create", "conf-app"]);
    let git_url = format!("https://127.0.0.1:{}/conf-app.git", s.api_tls.port());
    assert!(out.contains("Creating conf-app... done"), "{out}");
    assert!(out.contains(&git_url), "{out}");
    let remote = h.git(&dir, &["remote", "get-url", "heroku"]);
    assert_eq!(text(&remote.stdout).trim(), git_url);
    let out = h.fails(&dir, &["apps:create", "conf-app"], 2);
    assert!(out.contains("already taken"), "{out}");
    assert!(h.ok(&dir, &["apps"]).contains("conf-app"));
    let info = h.ok(&dir, &["apps:info", "-a", "conf-app"]);
    assert!(
        info.contains("=== conf-app") && info.contains("Web URL:") && info.contains("Stack:"),
        "{info}"
    );

    // Config vars and releases.
    let out = h.ok(&dir, &["config:set", "A=1", "B=two", "-a", "conf-app"]);
    assert!(
        out.contains("Setting A, B and restarting conf-app... done, v2"),
        "{out}"
    );
    let config: serde_json::Value = serde_json::from_str(&text(
        &h.run(&dir, &["config", "--json", "-a", "conf-app"]).stdout,
    ))
    .unwrap();
    assert_eq!(config, serde_json::json!({"A": "1", "B": "two"}));
    assert_eq!(
        text(&h.run(&dir, &["config:get", "A", "-a", "conf-app"]).stdout).trim(),
        "1"
    );
    assert!(h
        .ok(&dir, &["config:unset", "B", "-a", "conf-app"])
        .contains("done, v3"));
    let releases = h.ok(&dir, &["releases", "-a", "conf-app"]);
    assert!(releases.contains("Current: v3"), "{releases}");
    let (v3, v2, v1) = (
        releases.find("v3 ").unwrap(),
        releases.find("v2 ").unwrap(),
        releases.find("v1 ").unwrap(),
    );
    assert!(v3 < v2 && v2 < v1, "newest first: {releases}");
    let info = h.ok(&dir, &["releases:info", "v2", "-a", "conf-app"]);
    assert!(
        info.contains("=== Release v2") && info.contains("B: two"),
        "{info}"
    );
    let out = h.ok(&dir, &["rollback", "v2", "-a", "conf-app"]);
    assert!(
        out.contains("Rolling back conf-app to v2... done, v4"),
        "{out}"
    );
    assert_eq!(
        text(&h.run(&dir, &["config:get", "B", "-a", "conf-app"]).stdout).trim(),
        "two"
    );

    // git push over https, with the CLI's credential helper, streams the build.
    let out = h.git(&dir, &["push", "heroku", "main"]);
    let pushed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{pushed}");
    assert!(pushed.contains("remote: -----> Launching"), "{pushed}");
    let latest = h.ok(&dir, &["releases", "-n", "1", "-a", "conf-app"]);
    assert!(
        latest.contains("v5") && latest.contains("Deploy"),
        "{latest}"
    );

    // Formation: absolute, relative, with a size; ps; ps:type; restarts.
    let out = h.ok(&dir, &["ps:scale", "web=2", "-a", "conf-app"]);
    assert!(out.contains("now running web at 2:"), "{out}");
    let out = h.ok(&dir, &["ps:scale", "web+1", "-a", "conf-app"]);
    assert!(out.contains("now running web at 3:"), "{out}");
    assert!(h
        .ok(&dir, &["ps:scale", "-a", "conf-app"])
        .contains("web=3:"));
    let ps = eventually(60, "three web dynos up", || async {
        let ps = text(&h.run(&dir, &["ps", "-a", "conf-app"]).stdout);
        (ps.contains("(3)") && ps.matches(": up ").count() == 3).then_some(ps)
    })
    .await;
    assert!(ps.contains("=== web (") && ps.contains("web.3: up"), "{ps}");
    let out = h.ok(&dir, &["ps:type", "web=standard-2x", "-a", "conf-app"]);
    assert!(out.contains("standard-2x"), "{out}");
    let out = h.ok(&dir, &["ps:scale", "web=1:standard-1x", "-a", "conf-app"]);
    assert!(out.contains("now running web at 1:standard-1x"), "{out}");
    assert!(h
        .ok(&dir, &["ps:restart", "-a", "conf-app"])
        .contains("Restarting all dynos on conf-app... done"));
    assert!(h
        .ok(
            &dir,
            &["ps:restart", "--process-type", "web", "-a", "conf-app"]
        )
        .contains("done"));
    assert!(h
        .ok(&dir, &["ps:restart", "web", "-a", "conf-app"])
        .contains("done"));
    eventually(60, "web.1 up", || async {
        text(&h.run(&dir, &["ps", "-a", "conf-app"]).stdout)
            .contains("web.1: up")
            .then_some(())
    })
    .await;
    assert!(h
        .ok(
            &dir,
            &["ps:restart", "--dyno-name", "web.1", "-a", "conf-app"]
        )
        .contains("done"));

    // Logs: history in Heroku's format with the router's line; a tail over SSE.
    let client = s.router_client("conf-app");
    eventually(60, "the app answers", || async {
        let r = client
            .get(s.app_url("conf-app", "/hello"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let logs = eventually(30, "the router's line in the logs", || async {
        let logs = text(&h.run(&dir, &["logs", "-n", "50", "-a", "conf-app"]).stdout);
        logs.contains("heroku[router]: at=info method=GET path=\"/hello\"")
            .then_some(logs)
    })
    .await;
    assert!(lines_like_herokus(&logs), "{logs}");
    assert!(logs.contains("status=200"), "{logs}");
    let mut tail = h
        .command(&dir, &["logs", "--tail", "-a", "conf-app"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tail_out = tail.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(tail_out)
            .lines()
            .map_while(Result::ok)
        {
            seen2.lock().unwrap().push_str(&line);
            seen2.lock().unwrap().push('\n');
        }
    });
    eventually(30, "the tail sees a new request", || async {
        let _ = client.get(s.app_url("conf-app", "/tailed")).send().await;
        seen.lock()
            .unwrap()
            .contains("path=\"/tailed\"")
            .then_some(())
    })
    .await;
    assert_eq!(tail.try_wait().unwrap(), None, "--tail keeps running");
    let _ = tail.kill();
    let _ = tail.wait();

    // run: piped input with -x, exit codes, a terminal, and detached.
    let out = h.run_input(
        &dir,
        &["run", "--no-tty", "-x", "-a", "conf-app", "--", "bash"],
        "echo \"A is $A\"\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("A is 1"),
        "{}",
        text(&out.stdout)
    );
    let out = h.run(&dir, &["run", "-x", "-a", "conf-app", "--", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Process exited with code 3"));
    let mut script = Command::new("script");
    script
        .args(["-qec"])
        .arg(format!(
            "{} run -a conf-app -- 'tty; exit 5'",
            c.node_bin.join("heroku").display()
        ))
        .arg("/dev/null")
        .current_dir(&dir)
        .stdin(Stdio::null());
    h.env(&mut script);
    let out = script.output().unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains("/dev/pts/"),
        "a terminal in the dyno: {shown}"
    );
    assert_eq!(out.status.code(), Some(5), "{shown}");
    let out = h.ok(&dir, &["run:detached", "-a", "conf-app", "sleep", "5"]);
    assert!(out.contains("done, run."), "{out}");
    assert!(out.contains("--dyno run."), "{out}");

    // Domains, access, maintenance, features, buildpacks, stack.
    let out = h.ok(&dir, &["domains:add", "www.example.test", "-a", "conf-app"]);
    assert!(out.contains("DNS Target"), "{out}");
    let out = h.ok(&dir, &["domains", "-a", "conf-app"]);
    assert!(
        out.contains("conf-app.localhost") && out.contains("www.example.test"),
        "{out}"
    );
    s.ok(&dir, &["accounts:add", "bob@example.test"]);
    let out = h.ok(&dir, &["access:add", "bob@example.test", "-a", "conf-app"]);
    assert!(
        out.contains("Adding bob@example.test access to the app conf-app... done"),
        "{out}"
    );
    let out = h.ok(&dir, &["access", "-a", "conf-app"]);
    assert!(
        out.lines()
            .any(|l| l.contains("bob@example.test") && l.contains("collaborator")),
        "{out}"
    );
    assert!(h
        .ok(&dir, &["maintenance:on", "-a", "conf-app"])
        .contains("done"));
    assert_eq!(
        text(&h.run(&dir, &["maintenance", "-a", "conf-app"]).stdout).trim(),
        "on"
    );
    h.ok(&dir, &["maintenance:off", "-a", "conf-app"]);
    assert!(h
        .ok(&dir, &["features", "-a", "conf-app"])
        .contains("http-session-affinity"));
    let out = h.ok(&dir, &["buildpacks", "-a", "conf-app"]);
    assert!(out.contains("conf-app"), "{out}");
    let out = h.ok(&dir, &["stack", "-a", "conf-app"]);
    assert!(out.contains("* "), "{out}");

    // Add-ons: create, list, attach to another app, destroy.
    let out = h.ok(
        &dir,
        &["addons:create", "heroku-redis:mini", "-a", "conf-app"],
    );
    assert!(out.contains("as REDIS_URL"), "{out}");
    let name = out
        .split_whitespace()
        .skip_while(|w| *w != "Created")
        .nth(1)
        .unwrap()
        .to_string();
    assert!(h.ok(&dir, &["addons", "-a", "conf-app"]).contains(&name));
    h.ok(&dir, &["apps:create", "conf-prod", "--no-remote"]);
    let out = h.ok(&dir, &["addons:attach", &name, "-a", "conf-prod"]);
    assert!(out.contains("done"), "{out}");
    assert!(text(&h.run(&dir, &["config", "-a", "conf-prod"]).stdout).contains("REDIS_URL"));
    let out = h.ok(
        &dir,
        &[
            "addons:destroy",
            &name,
            "-a",
            "conf-app",
            "--confirm",
            "conf-app",
            "--force",
        ],
    );
    assert!(out.contains("done"), "{out}");

    // Gone: apps:info fails as Heroku's would.
    let out = h.ok(
        &dir,
        &["apps:destroy", "-a", "conf-prod", "--confirm", "conf-prod"],
    );
    assert!(out.contains("Destroying conf-prod"), "{out}");
    let out = h.fails(&dir, &["apps:info", "-a", "conf-prod"], 2);
    assert!(
        out.contains("Couldn't find that app.") && out.contains("not_found"),
        "{out}"
    );
}

/// heroku3 (PyPI): apps, config, releases, formation and log sessions.
const HEROKU3_SCRIPT: &str = r#"import json, sys
import heroku3
heroku3.api.HEROKU_URL = sys.argv[1]
h = heroku3.from_key(sys.argv[2])
name = sys.argv[3]
out = {"authenticated": h.is_authenticated}
app = h.app(name)
h.update_appconfig(name, {"X": "1"})
out["apps"] = [a.name for a in h.apps()]
out["config"] = app.config().to_dict()
out["releases"] = [r.version for r in app.releases()]
app.process_formation()["web"].scale(2)
out["formation"] = {f.type: f.quantity for f in app.process_formation()}
out["log"] = h.get_app_log(name, lines=5, timeout=10)
out["created"] = h.create_app(name="made-by-heroku3").name
print(json.dumps(out, default=str))
"#;

/// heroku-client (npm): generic calls, an error, and a delete.
const HEROKU_CLIENT_SCRIPT: &str = r#"const Heroku = require('heroku-client')
const [host, token] = process.argv.slice(2)
const h = new Heroku({ token, host })
;(async () => {
  const out = {}
  out.account = (await h.get('/account')).email
  const made = await h.post('/apps', { body: { name: 'made-by-client' } })
  out.created = made.name
  out.apps = (await h.get('/apps')).map(a => a.name)
  out.config = await h.patch(`/apps/${made.id}/config-vars`, { body: { Y: '2' } })
  out.releases = (await h.get('/apps/made-by-client/releases')).map(r => r.version)
  try { await h.get('/apps/no-such-app') } catch (e) { out.missing = [e.statusCode, e.body.id, e.body.message] }
  out.deleted = (await h.delete('/apps/made-by-client')).name
  console.log(JSON.stringify(out))
})().catch(e => { console.error(String(e)); process.exit(1) })
"#;

#[tokio::test(flavor = "multi_thread")]
async fn heroku3_and_heroku_client_drive_slipway() {
    let c = clients();
    let s = TestServer::start();
    let dir = s.home().join("py-app");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    s.ok(&dir, &["apps:create", "py-app"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let script = s.home().join("h3.py");
    std::fs::write(&script, HEROKU3_SCRIPT).unwrap();
    let out = Command::new(&c.python)
        .arg(&script)
        .args([s.api_url().as_str(), s.key.as_str(), "py-app"])
        .env("HOME", s.home())
        .output()
        .unwrap();
    assert!(out.status.success(), "heroku3: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["authenticated"], true, "{v}");
    assert!(
        v["apps"].as_array().unwrap().contains(&"py-app".into()),
        "{v}"
    );
    assert_eq!(v["config"]["X"], "1", "{v}");
    let releases: Vec<i64> = serde_json::from_value(v["releases"].clone()).unwrap();
    assert_eq!(releases.first(), Some(&1), "{v}");
    assert_eq!(releases.last(), Some(&(releases.len() as i64)), "{v}");
    assert_eq!(v["formation"]["web"], 2, "{v}");
    let log = v["log"].as_str().unwrap();
    assert!(
        lines_like_herokus(log) && log.contains("Set X config vars"),
        "{log}"
    );
    assert_eq!(v["created"], "made-by-heroku3");
    let formation = s.ok(&dir, &["ps:scale", "-a", "py-app"]);
    assert!(formation.contains("web=2"), "{formation}");

    let script = s.home().join("client.js");
    std::fs::write(&script, HEROKU_CLIENT_SCRIPT).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .args([s.api_url().as_str(), s.key.as_str()])
        .env("NODE_PATH", &c.node_modules)
        .env("HOME", s.home())
        .output()
        .unwrap();
    assert!(out.status.success(), "heroku-client: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["account"], "owner@slipway.local");
    assert_eq!(v["created"], "made-by-client");
    assert!(
        v["apps"]
            .as_array()
            .unwrap()
            .contains(&"made-by-client".into()),
        "{v}"
    );
    assert_eq!(v["config"], serde_json::json!({"Y": "2"}));
    // heroku-client asks for `Range: id ..`: ordered by id, not by version.
    let mut versions: Vec<i64> = serde_json::from_value(v["releases"].clone()).unwrap();
    versions.sort();
    assert_eq!(versions, [1, 2]);
    assert_eq!(
        v["missing"],
        serde_json::json!([404, "not_found", "Couldn't find that app."])
    );
    assert_eq!(v["deleted"], "made-by-client");
    let apps = s.ok(&dir, &["apps"]);
    assert!(!apps.contains("made-by-client"), "{apps}");
}

/// Heroku's published Platform API schema (heroku/platform-api, MIT licence).
const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/platform-api-schema.json"
);
const WALKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/schema_walk.py");

async fn api_json(s: &TestServer, path: &str) -> serde_json::Value {
    let r = s.api_get(path).await;
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_match_the_platform_api_schema() {
    let c = clients();
    let s = TestServer::start();
    let dir = s.home().join("walk");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    s.ok(&dir, &["apps:create", "walk"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.ok(&dir, &["addons:create", "heroku-redis:mini", "-a", "walk"]);
    s.ok(
        &dir,
        &["domains:add", "www.walk.example.test", "-a", "walk"],
    );
    s.ok(
        &dir,
        &["drains:add", "syslog://127.0.0.1:1/walk", "-a", "walk"],
    );
    s.ok(&dir, &["accounts:add", "bob@example.test"]);
    s.ok(&dir, &["accounts:add", "carol@example.test"]);
    let r = s
        .http()
        .post(format!("{}/apps/walk/collaborators", s.api_url()))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"user": "bob@example.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let releases = api_json(&s, "/apps/walk/releases").await;
    let latest = releases.as_array().unwrap().last().unwrap().clone();
    let addon = api_json(&s, "/apps/walk/addons").await[0].clone();
    let attachment = api_json(&s, "/apps/walk/addon-attachments").await[0].clone();
    let drain = api_json(&s, "/apps/walk/log-drains").await[0].clone();
    let stack = api_json(&s, "/stacks").await[0]["name"].clone();
    let ids = serde_json::json!({
        "app": "walk",
        "release": latest["version"],
        "release.id": latest["id"],
        "dyno": "web.1",
        "dyno.formation_type": "web",
        "formation": "web",
        "domain": "www.walk.example.test",
        "collaborator": "bob@example.test",
        "collaborator.email": "carol@example.test",
        "add-on": addon["id"],
        "add-on.name": addon["name"],
        "add-on-attachment": attachment["id"],
        "add-on-attachment.scopedIdentity": attachment["name"],
        "add-on-service": "heroku-redis",
        "plan": addon["plan"]["id"],
        "app-feature": "preboot",
        "stack": stack,
        "account": "~",
        "log-drain": drain["token"],
    });
    eventually(60, "web.1 up", || async {
        let d = api_json(&s, "/apps/walk/dynos/web.1").await;
        (d["state"] == "up").then_some(())
    })
    .await;
    let out = Command::new(&c.python)
        .args([WALKER, SCHEMA, &s.api_url(), &s.key, &ids.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "walker: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = report["failures"].as_array().unwrap();
    assert!(
        failures.is_empty(),
        "{} answers do not match the schema:\n{}",
        failures.len(),
        serde_json::to_string_pretty(failures).unwrap()
    );
    let checked = report["checked"].as_array().unwrap();
    eprintln!(
        "{} links checked, {} not implemented: {}",
        checked.len(),
        report["skipped"].as_array().unwrap().len(),
        report["skipped"]
    );
    assert!(
        checked.len() >= 60,
        "only {} links checked: {report}",
        checked.len()
    );
}

/// Stops the child when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_cli_reaches_a_remote_server_through_slipway_proxy() {
    let c = clients();
    let s = TestServer::start();
    let ca = s.data_dir().join("tls/ca.pem");
    let remote = format!("https://localhost:{}", s.api_tls.port());

    // Bad input first: a plain URL, a non-loopback address, no CA.
    let out = Command::new(BIN)
        .args(["proxy", "http://localhost:1"])
        .env("SLIPWAY_CA_FILE", &ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not an https:// URL"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["proxy", &remote, "--listen", "0.0.0.0:0"])
        .env("SLIPWAY_CA_FILE", &ca)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a loopback address"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["proxy", &remote])
        .env_remove("SLIPWAY_CA_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--ca-file"),
        "{}",
        text(&out.stderr)
    );

    let mut child = Command::new(BIN)
        .args(["proxy", &remote, "--listen", "127.0.0.1:0", "--ca-file"])
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proxy = Reaped(child);
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(stdout);
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let local: std::net::SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .parse()
        .unwrap();

    // Heroku's CLI, pointed at the proxy as at a remote server.
    let home = s.home().join("remote-home");
    std::fs::create_dir_all(&home).unwrap();
    let h = Heroku {
        s: &s,
        c: &c,
        home: home.clone(),
        key: s.key.clone(),
    };
    let via = |cmd: &mut Command| {
        cmd.env("HEROKU_HOST", format!("http://{local}"))
            .env("HEROKU_PARTICLEBOARD_URL", format!("http://{local}"))
            .env("HEROKU_GIT_HOST", format!("localhost:{}", s.api_tls.port()));
    };
    let run = |args: &[&str], dir: &Path| {
        let mut cmd = h.command(dir, args);
        via(&mut cmd);
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    let dir = home.join("far");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    let (code, out) = run(&["apps:create", "far"], &dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("https://localhost:{}/far.git", s.api_tls.port())),
        "{out}"
    );
    let (code, out) = run(&["config:set", "FAR=away", "-a", "far"], &dir);
    assert_eq!(code, Some(0), "{out}");
    // git goes straight to the server's TLS endpoint, with the CLI's credential helper.
    let mut cmd = Command::new("git");
    cmd.args(["push", "heroku", "main"]).current_dir(&dir);
    h.env(&mut cmd);
    via(&mut cmd);
    let push = cmd.output().unwrap();
    assert!(push.status.success(), "{}", text(&push.stderr));
    let (code, out) = run(&["logs", "-n", "20", "-a", "far"], &dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Set FAR config vars"), "{out}");
    let (code, out) = run(&["run", "-x", "-a", "far", "--", "echo $FAR; exit 4"], &dir);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("away"), "{out}");
    drop(proxy);

    // With the proxy gone, the CLI says the server cannot be reached.
    let (code, _) = run(&["apps"], &dir);
    assert_ne!(code, Some(0));
}
