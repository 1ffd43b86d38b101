//! Attached one-off dynos: `slipway run` in a real terminal (a pty the test holds) and with
//! pipes, and the rendezvous protocol as Heroku's CLI speaks it, over real TLS.
#![allow(unsafe_code)]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MARKER: &str = "\u{FFFF} heroku-command-exit-status:";

/// An app with a web process, deployed.
fn deployed(s: &TestServer, name: &str) -> std::path::PathBuf {
    let dir = s.home().join(name);
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    s.ok(&dir, &["apps:create", name]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

fn set_size(fd: &OwnedFd, cols: u16, rows: u16) {
    nix::ioctl_write_ptr_bad!(set_winsize, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    unsafe { set_winsize(fd.as_raw_fd(), &ws) }.expect("TIOCSWINSZ");
}

/// Everything the terminal has shown so far.
fn screen(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    text(&buf.lock().unwrap())
}

async fn wait_screen(buf: &Arc<Mutex<Vec<u8>>>, what: &str) {
    eventually(60, &format!("{what:?} on the terminal"), || async {
        screen(buf).contains(what).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_gives_a_terminal_inside_the_dyno() {
    let s = TestServer::start();
    let dir = deployed(&s, "term");
    // The test is the user's terminal: the CLI gets the slave as its controlling terminal.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    set_size(&pty.master, 100, 30);
    let slave = pty.slave.as_raw_fd();
    let script = "m=ready; t=int; trap 'echo \"trapped-$t\"' INT; \
                  echo \"tty $(tty)\"; echo \"size $(stty size) term $TERM\"; echo \"<$m>\"; \
                  while true; do read -r line || continue; echo \"line=$line\"; \
                  [ \"$line\" = size ] && echo \"now $(stty size)\"; \
                  [ \"$line\" = quit ] && exit 7; done";
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args(["run", "--", script])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.home())
        .env("TERM", "xterm-256color")
        .env("SLIPWAY_API_URL", s.api_url())
        .env("SLIPWAY_DATA_DIR", s.data_dir())
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::ioctl_write_int_bad!(set_ctty, nix::libc::TIOCSCTTY);
            set_ctty(slave, 0).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn slipway run");
    drop(pty.slave);
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut reader = std::fs::File::from(pty.master.try_clone().unwrap());
    let sink = shown.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut keys = std::fs::File::from(pty.master.try_clone().unwrap());

    wait_screen(&shown, "<ready>").await;
    let now = screen(&shown);
    assert!(now.contains("up, run."), "{now}");
    // The terminal is the dyno's own (its devpts starts at 0), sized as ours, with our TERM.
    assert!(now.contains("tty /dev/pts/0"), "{now}");
    assert!(now.contains("size 30 100 term xterm-256color"), "{now}");

    // Ctrl-C reaches the process as SIGINT, and the session goes on.
    keys.write_all(b"\x03").unwrap();
    wait_screen(&shown, "trapped-int").await;

    // Resizing our terminal resizes the dyno's. (The keys may overtake the resize, so ask
    // until the new size shows.)
    set_size(&pty.master, 120, 40);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !screen(&shown).contains("now 40 120") {
        assert!(std::time::Instant::now() < deadline, "{}", screen(&shown));
        keys.write_all(b"size\r").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Typed lines arrive (and are echoed by the dyno's terminal).
    keys.write_all(b"hello there\r").unwrap();
    wait_screen(&shown, "line=hello there").await;
    keys.write_all(b"quit\r").unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slipway run did not exit: {}",
            screen(&shown)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(7), "{}", screen(&shown));
    assert!(!screen(&shown).contains(MARKER), "{}", screen(&shown));
    // The exit status reaches `run` and the log separately: the log line may come a moment later.
    eventually(
        10,
        "the one-off dyno's start and exit in the log",
        || async {
            let logs = s.logs("term");
            (logs.contains("Starting process with command")
                && logs.contains("Process exited with status 7"))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_a_terminal_pipes_input_and_passes_the_exit_status() {
    let s = TestServer::start();
    let dir = deployed(&s, "pipes");
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
            "run",
            "--no-tty",
            "--",
            "read first; echo \"first=$first\"; cat; echo \"tty? $(tty)\" >&2; exit 3",
        ])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.home())
        .env("SLIPWAY_API_URL", s.api_url())
        .env("SLIPWAY_DATA_DIR", s.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\nthree\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("up, run."), "{stderr}");
    // stderr comes through too, in no set order with stdout (as from any two pipes), so
    // its line is taken out before the stdout lines are checked in order.
    assert!(stdout.contains("tty? not a tty\n"), "{stdout:?}");
    let stdout_only = stdout.replacen("tty? not a tty\n", "", 1);
    assert!(
        stdout_only.contains("first=one\ntwo\nthree\n"),
        "{stdout:?}"
    );
    assert!(!stdout.contains(MARKER), "{stdout:?}");

    // A command that succeeds exits 0, even with stdin at its end already.
    let out = s.cli(&dir, &["run", "--no-tty", "--", "echo fine"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "fine\n");
}

/// Connects to the rendezvous endpoint as Heroku's CLI does: TLS checked against Slipway's CA.
async fn rendezvous(
    s: &TestServer,
    attach_url: &str,
) -> impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {
    let rest = attach_url.strip_prefix("rendezvous://").expect(attach_url);
    let (authority, _) = rest.split_once('/').unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    assert_eq!(
        host, "127.0.0.1",
        "the attach URL names the host the client used"
    );
    assert_eq!(port.parse::<u16>().unwrap(), s.rendezvous.port());
    let config = slipway_tls::client_config(&s.data_dir().join("tls/ca.pem")).unwrap();
    let tcp = tokio::net::TcpStream::connect(s.rendezvous).await.unwrap();
    slipway_tls::TlsConnector::from(config)
        .connect(slipway_tls::ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS with Slipway's certificate")
}

async fn create(s: &TestServer, app: &str, body: Value) -> Value {
    let resp = s
        .http()
        .post(format!("{}/apps/{app}/dynos", s.api_url()))
        .bearer_auth(&s.key)
        .header("Accept", "application/vnd.heroku+json; version=3")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn read_until(tls: &mut (impl tokio::io::AsyncRead + Unpin), got: &mut Vec<u8>, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while !text(got).contains(what) {
        let n = tokio::time::timeout_at(deadline, tls.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {what:?} in {:?}", text(got)))
            .unwrap();
        assert!(n > 0, "closed before {what:?}: {:?}", text(got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendezvous_protocol_works_as_herokus_cli_expects() {
    let s = TestServer::start();
    deployed(&s, "proto");

    // Pipes: the secret with CRLF, input ended by 0x04, the exit marker at the end.
    let dyno = create(
        &s,
        "proto",
        json!({"attach": true, "command": "cat; exit 5", "force_no_tty": true, "env": {"TERM": "xterm"}}),
    )
    .await;
    assert_eq!(dyno["state"], "starting");
    assert!(dyno["name"].as_str().unwrap().starts_with("run."));
    let url = dyno["attach_url"].as_str().unwrap();
    let mut tls = rendezvous(&s, url).await;
    let secret = url.rsplit('/').next().unwrap();
    tls.write_all(format!("{secret}\r\n").as_bytes())
        .await
        .unwrap();
    // The first chunk is the rendezvous line alone: Heroku's CLI throws it away.
    let mut first = [0u8; 64];
    let n = tls.read(&mut first).await.unwrap();
    assert_eq!(&first[..n], b"rendezvous\r\n");
    tls.write_all(b"typed input\n\x04").await.unwrap();
    let mut got = Vec::new();
    read_until(&mut tls, &mut got, &format!("{MARKER} 5\n")).await;
    assert_eq!(text(&got), format!("typed input\n{MARKER} 5\n"));

    // A terminal sized from COLUMNS and LINES; Ruby's client ends the secret with a bare LF.
    let dyno = create(
        &s,
        "proto",
        json!({"attach": true, "command": "stty size; tty", "env": {"COLUMNS": "91", "LINES": "33", "TERM": "xterm"}}),
    )
    .await;
    let url = dyno["attach_url"].as_str().unwrap();
    let mut tls = rendezvous(&s, url).await;
    tls.write_all(format!("{}\n", url.rsplit('/').next().unwrap()).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut tls, &mut got, &format!("{MARKER} 0\n")).await;
    let shown = text(&got);
    assert!(
        shown.starts_with("rendezvous\r\n33 91\r\n/dev/pts/0\r\n"),
        "{shown:?}"
    );
    // The session ends when the command does.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the server closed the session");

    // An unknown or used secret is refused.
    let mut tls = rendezvous(&s, url).await;
    tls.write_all(format!("{}\r\n", url.rsplit('/').next().unwrap()).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut got)).await;
    assert!(
        text(&got).contains("unknown or has expired"),
        "{:?}",
        text(&got)
    );

    // A client that leaves stops its dyno.
    let dyno = create(
        &s,
        "proto",
        json!({"attach": true, "command": "sleep 300", "force_no_tty": true}),
    )
    .await;
    let name = dyno["name"].as_str().unwrap().to_string();
    let url = dyno["attach_url"].as_str().unwrap();
    let mut tls = rendezvous(&s, url).await;
    tls.write_all(format!("{}\r\n", url.rsplit('/').next().unwrap()).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut tls, &mut got, "rendezvous\r\n").await;
    let dir = s.home();
    eventually(30, "the attached dyno is up", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["ps", "-a", "proto", "--json"])).ok()?;
        v.as_array()?
            .iter()
            .any(|d| d["name"] == name.as_str() && d["state"] == "up")
            .then_some(())
    })
    .await;
    drop(tls);
    eventually(30, "the abandoned dyno is stopped", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["ps", "-a", "proto", "--json"])).ok()?;
        (!v.as_array()?.iter().any(|d| d["name"] == name.as_str())).then_some(())
    })
    .await;
}
