//! The router inside `slipway server`, driven through the CLI with real dynos: custom domains,
//! the app's own certificate by SNI, Slipway's certificate and HTTP/2 on the HTTPS listener,
//! session affinity across a scale, per-app timeouts, the owner's error page and H10.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Answers `/` with its dyno name, `/slow` after two seconds, and any path with the headers it got.
const APP: &str = r#"import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(2)
        body = json.dumps({
            "dyno": os.environ.get("DYNO"),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn deploy(s: &TestServer, name: &str, procfile: &str) -> std::path::PathBuf {
    let dir = s.home().join(name);
    s.repo(&dir, &[("Procfile", procfile), ("app.py", APP)]);
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

/// A plain HTTP/1.1 request with `host`, over any stream; (status, headers + body).
async fn raw_get<S>(mut stream: S, host: &str, path: &str, extra: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{extra}\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

async fn http_get(addr: SocketAddr, host: &str, path: &str, extra: &str) -> (u16, String) {
    raw_get(TcpStream::connect(addr).await.unwrap(), host, path, extra).await
}

async fn tls_stream(
    addr: SocketAddr,
    roots_pem: &[u8],
    sni: &str,
    alpn: &[&[u8]],
) -> Result<
    (
        impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        Option<Vec<u8>>,
    ),
    String,
> {
    let config = slipway_tls::client_config_from_pem(roots_pem).map_err(|e| e.to_string())?;
    let mut config = (*config).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    slipway_tls::TlsConnector::from(Arc::new(config))
        .connect(
            slipway_tls::ServerName::try_from(sni.to_string()).unwrap(),
            tcp,
        )
        .await
        .map(|t| {
            let alpn = t.get_ref().1.alpn_protocol().map(|p| p.to_vec());
            (t, alpn)
        })
        .map_err(|e| e.to_string())
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_domains_and_certificates_are_served() {
    let s = TestServer::start();
    let dir = deploy(&s, "shop", "web: python3 app.py\n");
    eventually(60, "shop serves", || async {
        (http_get(s.router, "shop.localhost", "/", "").await.0 == 200).then_some(())
    })
    .await;

    // A custom domain is routed once added, and no longer once removed.
    assert_eq!(http_get(s.router, "www.shop.example", "/", "").await.0, 404);
    s.ok(&dir, &["domains:add", "www.shop.example"]);
    let (status, body) = http_get(s.router, "www.shop.example", "/", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"host\": \"www.shop.example\""), "{body}");

    // HTTPS with Slipway's certificate for <app>.<base-domain>, trusted through its CA file.
    let ca = std::fs::read(s.data_dir().join("tls/ca.pem")).unwrap();
    let (tls, _) = tls_stream(s.router_tls, &ca, "shop.localhost", &[b"http/1.1"])
        .await
        .unwrap();
    let (status, body) = raw_get(tls, "shop.localhost", "/", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"x-forwarded-proto\": \"https\""), "{body}");
    // HTTP/2 is offered.
    let (_, alpn) = tls_stream(s.router_tls, &ca, "shop.localhost", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    // The custom domain has no certificate of its own yet: Slipway's does not cover it.
    assert!(tls_stream(s.router_tls, &ca, "www.shop.example", &[])
        .await
        .is_err());
    let cert = rcgen::generate_simple_self_signed(vec!["www.shop.example".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    std::fs::write(dir.join("server.crt"), &cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &key_pem).unwrap();
    s.ok(&dir, &["certs:add", "server.crt", "server.key"]);
    let (tls, _) = tls_stream(s.router_tls, cert_pem.as_bytes(), "www.shop.example", &[])
        .await
        .expect("the app's certificate is served for its domain");
    let (status, body) = raw_get(tls, "www.shop.example", "/", "").await;
    assert_eq!(status, 200, "{body}");
    // And Slipway's still for the app's own name.
    assert!(tls_stream(s.router_tls, &ca, "shop.localhost", &[])
        .await
        .is_ok());

    s.ok(&dir, &["domains:remove", "www.shop.example"]);
    assert_eq!(http_get(s.router, "www.shop.example", "/", "").await.0, 404);
    let logs = s.logs("shop");
    assert!(logs.contains("host=www.shop.example"), "{logs}");
    assert!(logs.contains("protocol=https"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn affinity_timeouts_error_pages_and_crashes() {
    let s = TestServer::start();
    let dir = deploy(&s, "sticky", "web: python3 app.py\n");
    s.ok(&dir, &["ps:scale", "web=2"]);
    eventually(60, "two web dynos serve", || async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let (status, body) = http_get(s.router, "sticky.localhost", "/", "").await;
            if status == 200 {
                seen.insert(body.contains("\"dyno\": \"web.1\""));
            }
        }
        (seen.len() == 2).then_some(())
    })
    .await;

    // Affinity: the cookie pins a client to one dyno.
    s.ok(&dir, &["features:enable", "http-session-affinity"]);
    let (_, first) = http_get(s.router, "sticky.localhost", "/", "").await;
    let cookie = header(&first, "set-cookie")
        .expect("affinity cookie")
        .to_string();
    assert!(cookie.starts_with("heroku-session-affinity="), "{cookie}");
    let value = cookie.split(';').next().unwrap().to_string();
    let dyno = |body: &str| {
        if body.contains("\"dyno\": \"web.1\"") {
            "web.1"
        } else {
            "web.2"
        }
    };
    let pinned = dyno(&first);
    for _ in 0..10 {
        let (status, body) = http_get(
            s.router,
            "sticky.localhost",
            "/",
            &format!("cookie: {value}\r\n"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(dyno(&body), pinned);
    }

    // Per-app and per-path timeouts: / answers within 1 s, /slow takes 2 s.
    s.ok(&dir, &["router:timeouts:set", "--response", "1"]);
    let (status, body) = http_get(s.router, "sticky.localhost", "/slow", "").await;
    assert_eq!(status, 503, "{body}");
    s.ok(
        &dir,
        &["router:timeouts:set", "--path", "/slow", "--response", "5"],
    );
    let (status, _) = http_get(s.router, "sticky.localhost", "/slow", "").await;
    assert_eq!(status, 200);
    eventually(10, "the H12 line in the log", || async {
        s.logs("sticky")
            .contains("code=H12 desc=\"Request timeout\" method=GET path=\"/slow\"")
            .then_some(())
    })
    .await;

    // The owner's error page.
    s.ok(
        &dir,
        &[
            "config:set",
            "ERROR_PAGE_URL=https://pages.example/oops.html",
        ],
    );
    s.ok(&dir, &["router:timeouts:unset", "--path", "/slow"]);
    let (status, body) = http_get(s.router, "sticky.localhost", "/slow", "").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("<iframe src=\"https://pages.example/oops.html\">"),
        "{body}"
    );

    // A web process that cannot start: H10.
    let crash = s.home().join("crashy");
    s.repo(&crash, &[("Procfile", "web: exit 3\n"), ("app.py", APP)]);
    s.ok(&crash, &["apps:create", "crashy"]);
    let out = s.git(&crash, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually(60, "H10 for a crashed app", || async {
        let (status, _) = http_get(s.router, "crashy.localhost", "/", "").await;
        (status == 503 && s.logs("crashy").contains("code=H10 desc=\"App crashed\"")).then_some(())
    })
    .await;
}
