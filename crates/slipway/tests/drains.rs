//! Log drains against real receivers: Debian's rsyslog over TCP and over TLS (gnutls), and an
//! HTTPS receiver here that checks Logplex's batch headers, basic auth and octet framing. Plus
//! the API's and the CLI's validation and the 5-drain limit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

const ACCEPT: &str = "application/vnd.heroku+json; version=3";

fn ok(s: &TestServer, args: &[&str]) -> String {
    s.ok(&s.home(), args)
}

/// A CA, and a certificate it issued for `localhost` and 127.0.0.1, written as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Drain Test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        chain: vec![leaf.der().clone()],
        key_der: leaf_key.serialize_der(),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, leaf.pem()).unwrap();
    std::fs::write(&pki.key, leaf_key.serialize_pem()).unwrap();
    pki
}

/// A port that was free just now, for rsyslog, which cannot be handed a listening socket. It
/// is taken below the kernel's ephemeral range (32768 and up), so the outgoing connections
/// of the tests running meanwhile cannot take it before rsyslog binds it, and above the
/// add-on ports the test servers are given (20000-24999).
fn free_port(attempt: u32) -> u16 {
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(attempt.wrapping_mul(40_503))
        .wrapping_add(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        );
    (0..6_000u32)
        .map(|i| 26_000 + ((seed.wrapping_add(i.wrapping_mul(7_919))) % 6_000) as u16)
        .find(|&p| {
            std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        })
        .expect("a free port in 26000-31999")
}

/// `rsyslogd -n` with its own config, writing every message it receives over TCP (TLS when
/// `pki` is given) as the raw frame to `out`.
struct Rsyslog {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    /// Starts rsyslogd and waits until it listens. A port taken between choosing it and
    /// rsyslog's bind makes rsyslog carry on without its listener (it says so on stderr), so
    /// that start is stopped and the next one gets another port.
    async fn start(pki: Option<&Pki>) -> Rsyslog {
        let mut last_err = String::new();
        for attempt in 0..5 {
            match Self::try_start(pki, attempt).await {
                Ok(r) => return r,
                Err(e) => last_err = e,
            }
        }
        panic!("rsyslogd did not start listening in 5 attempts; the last said: {last_err}");
    }

    async fn try_start(pki: Option<&Pki>, attempt: u32) -> Result<Rsyslog, String> {
        let exe = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("rsyslogd is not installed: run scripts/test as root (it installs rsyslog and rsyslog-gnutls), or apt-get install rsyslog rsyslog-gnutls");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(attempt);
        let out = dir.path().join("out.log");
        let (global, module) = match pki {
            None => (String::new(), r#"module(load="imtcp")"#.to_string()),
            Some(p) => (
                format!(
                    r#"global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}")"#,
                    p.ca.display(),
                    p.cert.display(),
                    p.key.display()
                ),
                r#"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#.to_string(),
            ),
        };
        let conf = format!(
            r#"global(workDirectory="{dir}")
{global}
{module}
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="drain") {{
  action(type="omfile" file="{out}" template="raw")
}}
input(type="imtcp" port="{port}" ruleset="drain")
"#,
            dir = dir.path().display(),
            out = out.display(),
        );
        let conf_path = dir.path().join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let stderr_path = dir.path().join("stderr");
        let child = Command::new(exe)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start rsyslogd");
        let mut r = Rsyslog {
            child,
            port,
            out,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            // A failed bind first: then whatever answers on the port is not this rsyslogd.
            let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            if said.contains("Address already in use") {
                return Err(format!("port {port}: {said}"));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(r);
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                return Err(format!("rsyslogd exited with {status}: {said}"));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("not listening on {port} after 20 s: {said}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The token of the app's drain with this URL, from `drains --json`.
fn token_of(s: &TestServer, app: &str, url: &str) -> String {
    let list: Value = serde_json::from_str(&ok(s, &["drains", "-a", app, "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|d| d["url"] == url)
        .and_then(|d| d["token"].as_str())
        .expect("drain listed")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsyslog_receives_syslog_and_syslog_tls_drains() {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path());
    let plain = Rsyslog::start(None).await;
    let tls = Rsyslog::start(Some(&pki)).await;
    let s = TestServer::start_with(&["--drain-ca-file", pki.ca.to_str().unwrap()]);
    ok(&s, &["apps:create", "logged", "--no-remote"]);
    let plain_url = format!("syslog://127.0.0.1:{}", plain.port);
    let tls_url = format!("syslog+tls://localhost:{}", tls.port);
    for url in [&plain_url, &tls_url] {
        let out = ok(&s, &["drains:add", url, "-a", "logged"]);
        assert_eq!(out.trim(), format!("Successfully added drain {url}"));
    }
    let listed = ok(&s, &["drains", "-a", "logged"]);
    let plain_token = token_of(&s, "logged", &plain_url);
    let tls_token = token_of(&s, "logged", &tls_url);
    assert!(
        listed.contains(&format!("{plain_url} ({plain_token})")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{tls_url} ({tls_token})")),
        "{listed}"
    );
    assert!(plain_token.starts_with("d.") && plain_token.len() == 38);

    ok(&s, &["config:set", "GREETING=hi", "-a", "logged"]);
    for (r, token) in [(&plain, &plain_token), (&tls, &tls_token)] {
        let got = eventually(30, "the release line at rsyslog", || async {
            let got = r.received();
            got.contains("Release v2").then_some(got)
        })
        .await;
        let line = got
            .lines()
            .find(|l| l.contains("Release v2"))
            .unwrap()
            .to_string();
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
        let fields: Vec<&str> = line.splitn(8, ' ').collect();
        assert_eq!(fields[0], "<134>1", "{line}");
        assert!(
            fields[1].ends_with("+00:00") && fields[1].len() == 32,
            "{line}"
        );
        assert_eq!(
            &fields[2..7],
            [token.as_str(), "heroku", "api", "-", "-"],
            "{line}"
        );
        assert!(fields[7].starts_with("Release v2 created by"), "{line}");
    }

    // Removing by token stops the drain.
    let out = ok(&s, &["drains:remove", &plain_token, "-a", "logged"]);
    assert_eq!(
        out.trim(),
        format!("Successfully removed drain {plain_url}")
    );
    ok(&s, &["config:set", "GREETING=again", "-a", "logged"]);
    eventually(30, "v3 at the TLS drain", || async {
        tls.received().contains("Release v3").then_some(())
    })
    .await;
    assert!(!plain.received().contains("Release v3"));

    // Drains are stored: after a restart the server sends to them again.
    let dir = s.stop();
    let s = TestServer::start_in(dir, &["--drain-ca-file", pki.ca.to_str().unwrap()]);
    ok(&s, &["config:set", "GREETING=restarted", "-a", "logged"]);
    eventually(30, "v4 at the TLS drain after a restart", || async {
        tls.received().contains("Release v4").then_some(())
    })
    .await;
    assert!(!plain.received().contains("Release v4"));
    drop(s);
}

/// What the HTTPS receiver got in one POST.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    content_type: String,
    msg_count: String,
    token: String,
    frame_id: String,
    authorization: String,
    body: Vec<u8>,
}

/// Splits an RFC 6587 octet-counted body into frames, insisting on exact framing.
fn frames(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .expect("length then space");
        let len: usize = std::str::from_utf8(&rest[..sp])
            .unwrap()
            .parse()
            .expect("length");
        let frame = &rest[sp + 1..sp + 1 + len];
        assert!(
            frame.starts_with(b"<") && frame.ends_with(b"\n"),
            "{frame:?}"
        );
        out.push(String::from_utf8(frame.to_vec()).unwrap());
        rest = &rest[sp + 1 + len..];
    }
    out
}

/// An HTTPS server on 127.0.0.1 with the test certificate that records every request.
async fn https_receiver(pki: &Pki) -> (u16, Arc<Mutex<Vec<Post>>>) {
    use http_body_util::BodyExt;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        pki.chain.clone(),
        rustls_pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
    let got = posts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let got = got.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move {
                            let h = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string()
                            };
                            let mut post = Post {
                                path: req.uri().to_string(),
                                content_type: h("content-type"),
                                msg_count: h("logplex-msg-count"),
                                token: h("logplex-drain-token"),
                                frame_id: h("logplex-frame-id"),
                                authorization: h("authorization"),
                                body: Vec::new(),
                            };
                            post.body = req.into_body().collect().await?.to_bytes().to_vec();
                            got.lock().unwrap().push(post);
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Empty::<
                                hyper::body::Bytes,
                            >::new(
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, posts)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_drains_post_logplex_batches_with_basic_auth() {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path());
    let (port, posts) = https_receiver(&pki).await;
    let s = TestServer::start_with(&["--drain-ca-file", pki.ca.to_str().unwrap()]);
    ok(&s, &["apps:create", "shipped", "--no-remote"]);
    let password = "s3cret-pa55";
    let url = format!("https://drain-user:{password}@localhost:{port}/logs?app=shipped");
    let out = ok(&s, &["drains:add", &url, "-a", "shipped"]);
    assert_eq!(out.trim(), format!("Successfully added drain {url}"));
    let token = token_of(&s, "shipped", &url);
    for i in 0..5 {
        ok(&s, &["config:set", &format!("N={i}"), "-a", "shipped"]);
    }
    let got = eventually(30, "v6 at the HTTPS receiver", || async {
        let got = posts.lock().unwrap().clone();
        got.iter()
            .any(|p| String::from_utf8_lossy(&p.body).contains("Release v6"))
            .then_some(got)
    })
    .await;
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("drain-user:{password}"))
    );
    let mut ids = std::collections::HashSet::new();
    let mut all = Vec::new();
    for p in &got {
        assert_eq!(p.path, "/logs?app=shipped");
        assert_eq!(p.content_type, "application/logplex-1");
        assert_eq!(p.token, token);
        assert_eq!(p.authorization, auth);
        assert!(
            !p.frame_id.is_empty() && ids.insert(p.frame_id.clone()),
            "{p:?}"
        );
        let f = frames(&p.body);
        assert_eq!(p.msg_count, f.len().to_string(), "{p:?}");
        for frame in &f {
            let fields: Vec<&str> = frame.splitn(8, ' ').collect();
            assert_eq!(fields[2], token, "{frame}");
        }
        all.extend(f);
    }
    for v in 2..=6 {
        assert!(
            all.iter()
                .any(|f| f.contains(&format!(" {token} heroku api - - Release v{v} created by"))),
            "v{v} in {all:?}"
        );
    }
    // The password is answered back as given, but never logged.
    let (_, value) = {
        let r = s
            .http()
            .get(format!("{}/apps/shipped/log-drains/{token}", s.api_url()))
            .bearer_auth(&s.key)
            .header("Accept", ACCEPT)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(value["url"], url.as_str());
    assert_eq!(value["addon"], Value::Null);
    assert_eq!(value["app"]["name"], "shipped");
    let app_log = s.logs("shipped");
    assert!(
        app_log.contains("Add drain https://localhost:"),
        "{app_log}"
    );
    assert!(!app_log.contains(password), "{app_log}");
    let server_log = s.log.lock().unwrap().join("\n");
    assert!(!server_log.contains(password), "{server_log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_validation_and_the_limit_of_five() {
    let s = TestServer::start();
    ok(&s, &["apps:create", "limited", "--no-remote"]);
    let api = |method: &str, path: &str, body: Option<Value>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = s
            .http()
            .request(method, format!("{}{path}", s.api_url()))
            .bearer_auth(&s.key)
            .header("Accept", ACCEPT);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for bad in [
        "ftp://logs.example.com:21",
        "syslog://logs.example.com",
        "not a url",
        // Link-local (a cloud's metadata service) is never a drain's.
        "http://169.254.169.254/latest",
    ] {
        let (status, v) = api(
            "POST",
            "/apps/limited/log-drains",
            Some(json!({"url": bad})),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {v}");
        assert_eq!(v["id"], "invalid_params");
    }
    // Nor is the dyno network, where a drain would reach dynos around the router.
    let (net, _) = s.net.subnet.split_once('/').unwrap();
    let dyno = net.strip_suffix(".0").unwrap().to_string() + ".7";
    let (status, v) = api(
        "POST",
        "/apps/limited/log-drains",
        Some(json!({"url": format!("syslog://{dyno}:5000")})),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("dyno network"),
        "{v}"
    );
    let (_, v) = api(
        "POST",
        "/apps/limited/log-drains",
        Some(json!({"url": "tcp://u:hush@x.example.com:1"})),
    )
    .await;
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("syslog://, syslog+tls://, https://"), "{msg}");
    assert!(!msg.contains("hush"));
    let (status, _) = api("POST", "/apps/limited/log-drains", Some(json!({}))).await;
    assert_eq!(status, 422);

    let out = s.cli(
        &s.home(),
        &["drains:add", "ftp://x.example.com", "-a", "limited"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("syslog+tls://"),
        "{}",
        text(&out.stderr)
    );

    // Nothing listens on these; the drains keep retrying in the background.
    for i in 1..=5 {
        let (status, v) = api(
            "POST",
            "/apps/limited/log-drains",
            Some(json!({"url": format!("syslog://127.0.0.1:{i}")})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        assert!(v["token"].as_str().unwrap().starts_with("d."));
    }
    let (status, v) = api(
        "POST",
        "/apps/limited/log-drains",
        Some(json!({"url": "syslog://127.0.0.1:6"})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(v["message"].as_str().unwrap().contains("at most 5"), "{v}");
    let out = s.cli(
        &s.home(),
        &["drains:add", "https://x.example.com/d", "-a", "limited"],
    );
    assert!(
        text(&out.stderr).contains("at most 5"),
        "{}",
        text(&out.stderr)
    );

    ok(
        &s,
        &["drains:remove", "syslog://127.0.0.1:5", "-a", "limited"],
    );
    let (status, v) = api(
        "POST",
        "/apps/limited/log-drains",
        Some(json!({"url": "syslog://127.0.0.1:1"})),
    )
    .await;
    assert_eq!(status, 422, "duplicate: {v}");
    let (status, _) = api(
        "GET",
        "/apps/limited/log-drains/d.00000000-0000-0000-0000-000000000000",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, list) = api("GET", "/apps/limited/log-drains", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 4);
    let out = s.cli(
        &s.home(),
        &["drains:remove", "syslog://127.0.0.1:9", "-a", "limited"],
    );
    assert!(!out.status.success());

    // Destroying the app takes its drains.
    ok(&s, &["apps:destroy", "limited", "--confirm", "limited"]);
    ok(&s, &["apps:create", "limited", "--no-remote"]);
    assert_eq!(
        ok(&s, &["drains", "-a", "limited"]).trim(),
        "limited has no drains"
    );
}
