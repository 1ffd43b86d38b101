//! The router against real backends over real sockets: headers, H-codes, balancing, affinity,
//! retries, WebSockets, HTTP/2 both ways, SNI, malformed requests and table updates under load.
//! The backends are small servers in the test (each behaving the way the case needs); the
//! whole server with container dynos is tested in `crates/slipway/tests`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use slipway_logs::{Filter, LogRouter};
use slipway_router::{
    certified, AppSettings, Backend, Balance, CertPair, PathTimeouts, RouteSink, RouteTable,
    RouterConfig, Timeouts, WebStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BASE: &str = "apps.test";

struct Router {
    http: SocketAddr,
    https: SocketAddr,
    table: RouteTable,
    logs: LogRouter,
    /// The default certificate (for `*.apps.test`).
    default_cert: CertificateDer<'static>,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn self_signed(names: &[&str]) -> (String, String, CertificateDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("cert");
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().clone(),
    )
}

async fn router() -> Router {
    let table = RouteTable::new();
    let ck = rcgen::generate_simple_self_signed(vec![format!("*.{BASE}")]).expect("cert");
    let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    table.set_default_certificate(certified(vec![ck.cert.der().clone()], &key).expect("certified"));
    let logs = LogRouter::new();
    let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http, https) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let config = RouterConfig {
        base_domain: BASE.into(),
    };
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    tokio::spawn(slipway_router::serve(
        l1,
        table.clone(),
        logs.clone(),
        config.clone(),
        stop(rx.clone()),
    ));
    tokio::spawn(slipway_router::serve_tls(
        l2,
        table.clone(),
        logs.clone(),
        config,
        stop(rx),
    ));
    Router {
        http,
        https,
        table,
        logs,
        default_cert: ck.cert.der().clone(),
        _stop: tx,
    }
}

impl Router {
    fn app(&self, name: &str, dynos: &[SocketAddr]) {
        self.table.set_backends(
            &format!("id-{name}"),
            name,
            dynos
                .iter()
                .enumerate()
                .map(|(i, a)| Backend {
                    dyno: format!("web.{}", i + 1),
                    addr: *a,
                })
                .collect(),
        );
    }

    fn configure(&self, name: &str, settings: AppSettings) {
        self.table.configure(&format!("id-{name}"), name, settings);
    }

    /// Sets an app's response timeout and idle window, in milliseconds.
    fn time_out(&self, name: &str, response_ms: u64, idle_ms: u64) {
        self.configure(
            name,
            AppSettings {
                timeouts: timeouts(response_ms, idle_ms),
                ..Default::default()
            },
        );
    }

    fn router_lines(&self, app: &str) -> Vec<String> {
        self.logs
            .snapshot(&format!("id-{app}"), &Filter::default(), 1500)
            .0
            .into_iter()
            .filter(|l| &*l.dyno == "router")
            .map(|l| l.message.to_string())
            .collect()
    }

    /// Waits (up to 10 s) for a router line containing every one of `parts`.
    async fn line(&self, app: &str, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self
                .router_lines(app)
                .into_iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no router line with {parts:?}; lines: {:#?}",
                self.router_lines(app)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

type Handler = Arc<
    dyn Fn(
            Request<hyper::body::Incoming>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// An HTTP/1.1 backend; counts the connections it accepted.
async fn backend(name: &str, handler: Option<Handler>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let (name, c) = (name.to_string(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let name = name.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let name = name.clone();
                    let handler = handler.clone();
                    async move {
                        let mut resp = match handler {
                            Some(h) => h(req).await,
                            None => echo(req).await,
                        };
                        resp.headers_mut()
                            .insert("x-backend", name.parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, conns)
}

/// Answers with the request line and headers; `?sleep=MS` waits first.
async fn echo(req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if let Some(ms) = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("sleep="))
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut out = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (n, v) in req.headers() {
        out.push_str(&format!("{}: {}\n", n, v.to_str().unwrap_or("?")));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    out.push_str(&format!("body-bytes: {}\n", body.len()));
    Response::new(Full::new(Bytes::from(out)))
}

/// A backend that runs `f` on each raw connection.
async fn raw_backend<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = Arc::new(f);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(f(s));
        }
    });
    addr
}

/// Reads a request head from a raw connection.
async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An address nothing listens on, held by a bound socket that does not listen (connections to
/// it are refused) so that no other test can take the port while this one runs.
fn closed_port() -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    (socket.local_addr().unwrap(), socket)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A header as the backend saw it (from the echo body).
    fn seen(&self, name: &str) -> Option<String> {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
    }
}

async fn send_on<I>(io: I, req: Request<Full<Bytes>>) -> Result<Reply, hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let s = TcpStream::connect(addr).await.unwrap();
    send_on(s, req).await.expect("response")
}

fn get(host: &str, path: &str) -> http::request::Builder {
    Request::builder().uri(path).header("host", host)
}

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

async fn get_ok(r: &Router, host: &str, path: &str) -> Reply {
    send(r.http, get(host, path).body(empty()).unwrap()).await
}

fn timeouts(response_ms: u64, idle_ms: u64) -> Timeouts {
    Timeouts {
        response: Duration::from_millis(response_ms),
        idle: Duration::from_millis(idle_ms),
        paths: vec![],
    }
}

fn tls_client(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    store.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

// ---- headers and log line -----------------------------------------------------------------

#[tokio::test]
async fn heroku_headers_reach_the_dyno_and_one_line_is_logged() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let reply = send(
        r.http,
        get("demo.apps.test", "/path?q=1")
            .header("x-forwarded-for", "203.0.113.9")
            .header("connection", "x-secret, keep-alive")
            .header("x-secret", "hop")
            .header("x-request-id", "short")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body.starts_with("GET /path?q=1 HTTP/1.1"),
        "{}",
        reply.body
    );
    // An invalid client id is replaced by a generated one.
    let id = reply.seen("x-request-id").expect("request id");
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(
        reply.seen("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(reply.seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        reply.seen("x-forwarded-port"),
        Some(r.http.port().to_string())
    );
    assert_eq!(reply.seen("via").as_deref(), Some("1.1 slipway"));
    assert_eq!(reply.seen("host").as_deref(), Some("demo.apps.test"));
    assert_eq!(
        reply.seen("x-secret"),
        None,
        "headers named by Connection are dropped"
    );
    let start: u128 = reply.seen("x-request-start").unwrap().parse().unwrap();
    assert!(
        start >= before && start < before + 5_000,
        "{start} vs {before}"
    );

    let line = r.line("demo", &[&id]).await;
    assert!(
        line.starts_with("at=info method=GET path=\"/path?q=1\" host=demo.apps.test request_id="),
        "{line}"
    );
    for part in [
        "fwd=\"203.0.113.9, 127.0.0.1\"",
        "dyno=web.1",
        "connect=",
        "service=",
        "status=200",
        &format!("bytes={}", reply.body.len()),
        "protocol=http",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }

    // A valid client id is kept.
    let good = "abcdefghij0123456789+/=-";
    let reply = send(
        r.http,
        get("demo.apps.test", "/")
            .header("x-request-id", good)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.seen("x-request-id").as_deref(), Some(good));
}

#[tokio::test]
async fn unknown_hosts_and_custom_domains() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    r.configure(
        "demo",
        AppSettings {
            domains: vec!["www.example.org".into(), "*.wild.example".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        get_ok(&r, "nope.apps.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_ok(&r, "example.org", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_ok(&r, "www.example.org", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_ok(&r, "WWW.Example.org:8080", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_ok(&r, "a.wild.example", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_ok(&r, "a.b.wild.example", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_ok(&r, "demo.apps.test", "/").await.status,
        StatusCode::OK
    );
    // Removing a domain stops it being served.
    r.configure("demo", AppSettings::default());
    assert_eq!(
        get_ok(&r, "www.example.org", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

// ---- H-codes ------------------------------------------------------------------------------

#[tokio::test]
async fn h14_no_web_dynos_and_h10_crashed() {
    let r = router().await;
    r.app("demo", &[]);
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("Application error"), "{}", reply.body);
    let line = r.line("demo", &["code=H14"]).await;
    assert!(
        line.starts_with("at=error code=H14 desc=\"No web processes running\" method=GET"),
        "{line}"
    );
    assert!(line.contains("status=503"), "{line}");

    r.table
        .set_web_status("id-demo", "demo", WebStatus::Crashed);
    let reply = get_ok(&r, "demo.apps.test", "/crash").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let line = r.line("demo", &["code=H10"]).await;
    assert!(line.contains("desc=\"App crashed\""), "{line}");

    // The owner's error page, framed.
    r.configure(
        "demo",
        AppSettings {
            error_page_url: Some("https://pages.example/error.html".into()),
            ..Default::default()
        },
    );
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert!(
        reply
            .body
            .contains("<iframe src=\"https://pages.example/error.html\">"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn requests_wait_for_a_booting_dyno() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[]);
    r.table
        .set_web_status("id-demo", "demo", WebStatus::Starting);
    let req = tokio::spawn({
        let addr = r.http;
        async move { send(addr, get("demo.apps.test", "/").body(empty()).unwrap()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!req.is_finished(), "the request should wait for the dyno");
    r.app("demo", &[b]);
    let reply = tokio::time::timeout(Duration::from_secs(5), req)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn h80_maintenance() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    r.table.set_maintenance("id-demo", "demo", true);
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("Offline for maintenance"));
    assert_eq!(reply.header("retry-after"), "60");
    let line = r.line("demo", &["code=H80"]).await;
    assert!(
        line.starts_with("at=info code=H80 desc=\"Maintenance mode\""),
        "{line}"
    );
    r.configure(
        "demo",
        AppSettings {
            maintenance: true,
            maintenance_page_url: Some("https://pages.example/m.html?a=1&b=\"2\"".into()),
            ..Default::default()
        },
    );
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert!(
        reply
            .body
            .contains("<iframe src=\"https://pages.example/m.html?a=1&amp;b=&quot;2&quot;\">"),
        "{}",
        reply.body
    );
    r.configure("demo", AppSettings::default());
    assert_eq!(
        get_ok(&r, "demo.apps.test", "/").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn h12_response_timeout_per_app_and_per_path() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    r.configure(
        "demo",
        AppSettings {
            timeouts: Timeouts {
                response: Duration::from_millis(400),
                idle: Duration::from_secs(55),
                paths: vec![PathTimeouts {
                    prefix: "/reports".into(),
                    response: Duration::from_secs(5),
                    idle: Duration::from_secs(55),
                }],
            },
            ..Default::default()
        },
    );
    let started = Instant::now();
    let reply = get_ok(&r, "demo.apps.test", "/?sleep=4000").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_millis(3500));
    let line = r.line("demo", &["code=H12"]).await;
    assert!(line.contains("service=400ms status=503"), "{line}");
    // A longer window under /reports.
    let reply = get_ok(&r, "demo.apps.test", "/reports/x?sleep=800").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn h13_dyno_closes_without_response() {
    let r = router().await;
    let b = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        drop(s);
    })
    .await;
    r.app("demo", &[b]);
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let line = r.line("demo", &["code=H13"]).await;
    assert!(
        line.contains("desc=\"Connection closed without response\""),
        "{line}"
    );
}

#[tokio::test]
async fn h15_dyno_idle_and_h18_dyno_interrupted() {
    let r = router().await;
    // Sends part of the body, then nothing.
    let idle = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
            .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    // Sends part of the body, then closes.
    let cut = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
            .await;
    })
    .await;
    r.app("idle", &[idle]);
    r.app("cut", &[cut]);
    r.time_out("idle", 30_000, 500);
    for (app, code) in [("idle", "code=H15"), ("cut", "code=H18")] {
        let s = TcpStream::connect(r.http).await.unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            send_on(
                s,
                get(&format!("{app}.apps.test"), "/").body(empty()).unwrap(),
            ),
        )
        .await
        .expect("the router ends the response");
        assert!(result.is_err(), "{app}: the client sees an incomplete body");
        let line = r.line(app, &[code]).await;
        assert!(line.contains("status=200"), "{line}");
        if app == "cut" {
            assert!(line.contains("sock=backend"), "{line}");
        }
    }
}

#[tokio::test]
async fn h27_client_gone_and_h28_client_idle() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    r.time_out("demo", 30_000, 500);
    // H27: the client leaves while the dyno works.
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"GET /?sleep=1000 HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let line = r.line("demo", &["code=H27"]).await;
    assert!(line.contains("status=499"), "{line}");
    assert!(
        line.contains("desc=\"Client Request Interrupted\""),
        "{line}"
    );

    // H28: the client stops sending its body.
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: demo.apps.test\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let line = r.line("demo", &["code=H28"]).await;
    assert!(line.contains("path=\"/upload\""), "{line}");
}

#[tokio::test]
async fn h99_platform_error_when_the_dyno_network_is_unreachable() {
    let r = router().await;
    r.app("demo", &["255.255.255.255:80".parse().unwrap()]);
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let line = r.line("demo", &["code=H99"]).await;
    assert!(line.contains("desc=\"Platform error\""), "{line}");
}

// ---- balancing, pools and retries ------------------------------------------------------------

#[tokio::test]
async fn refused_dynos_are_skipped_and_all_refused_is_h21() {
    let r = router().await;
    let (good, _) = backend("good", None).await;
    let (dead, _held) = closed_port();
    r.app("demo", &[dead, good]);
    for _ in 0..20 {
        let reply = get_ok(&r, "demo.apps.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-backend"), "good");
    }
    assert!(r
        .router_lines("demo")
        .iter()
        .all(|l| l.starts_with("at=info")));

    let ((down1, _held1), (down2, _held2)) = (closed_port(), closed_port());
    r.app("down", &[down1, down2]);
    let reply = get_ok(&r, "down.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    r.line("down", &["code=H21", "desc=\"Backend connection refused\""])
        .await;
}

#[tokio::test]
async fn connections_to_dynos_are_kept_alive_and_reused() {
    let r = router().await;
    let (b, conns) = backend("b1", None).await;
    r.app("demo", &[b]);
    for _ in 0..30 {
        assert_eq!(
            get_ok(&r, "demo.apps.test", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one pooled connection for serial requests"
    );
}

#[tokio::test]
async fn a_dyno_closing_idle_connections_costs_no_request() {
    let r = router().await;
    // Answers keep-alive, then closes the connection shortly after each response.
    let b = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    })
    .await;
    r.app("demo", &[b]);
    for _ in 0..15 {
        assert_eq!(
            get_ok(&r, "demo.apps.test", "/").await.status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(r
        .router_lines("demo")
        .iter()
        .all(|l| l.starts_with("at=info")));
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_dyno() {
    let r = router().await;
    let slow_count = Arc::new(AtomicUsize::new(0));
    let fast_count = Arc::new(AtomicUsize::new(0));
    let sc = slow_count.clone();
    let slow: Handler = Arc::new(move |_req| {
        let sc = sc.clone();
        Box::pin(async move {
            sc.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Response::new(Full::new(Bytes::from_static(b"slow")))
        })
    });
    let fc = fast_count.clone();
    let fast: Handler = Arc::new(move |_req| {
        let fc = fc.clone();
        Box::pin(async move {
            fc.fetch_add(1, Ordering::SeqCst);
            Response::new(Full::new(Bytes::from_static(b"fast")))
        })
    });
    let (s, _) = backend("slow", Some(slow)).await;
    let (f, _) = backend("fast", Some(fast)).await;
    r.app("demo", &[s, f]);
    r.configure(
        "demo",
        AppSettings {
            balance: Balance::LeastOutstanding,
            ..Default::default()
        },
    );
    // The slow dyno gets one request first; while it is busy, the rest go to the fast one.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = r.http;
        tasks.push(tokio::spawn(async move {
            send(addr, get("demo.apps.test", "/").body(empty()).unwrap()).await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    assert!(
        slow_count.load(Ordering::SeqCst) <= 2,
        "slow dyno got {} of 20",
        slow_count.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn session_affinity_pins_and_is_repointed_when_the_formation_changes() {
    let r = router().await;
    let mut addrs = Vec::new();
    for n in ["b1", "b2", "b3", "b4"] {
        addrs.push(backend(n, None).await.0);
    }
    r.app("demo", &addrs[..3]);
    // Off: no cookie.
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    assert_eq!(reply.header("set-cookie"), "");
    r.configure(
        "demo",
        AppSettings {
            session_affinity: true,
            ..Default::default()
        },
    );
    let reply = get_ok(&r, "demo.apps.test", "/").await;
    let cookie = reply.header("set-cookie").to_string();
    assert!(
        cookie.starts_with("heroku-session-affinity=")
            && cookie.contains("Max-Age=86400; Path=/; HttpOnly"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().to_string();
    let pinned = reply.header("x-backend").to_string();
    for _ in 0..15 {
        let reply = send(
            r.http,
            get("demo.apps.test", "/")
                .header("cookie", &value)
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.header("x-backend"), pinned);
        assert_eq!(
            reply.header("set-cookie"),
            "",
            "no new cookie while nothing changes"
        );
    }
    // Clients without the cookie spread over the dynos.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        seen.insert(
            get_ok(&r, "demo.apps.test", "/")
                .await
                .header("x-backend")
                .to_string(),
        );
    }
    assert!(seen.len() >= 2, "{seen:?}");

    // A fourth dyno: the client gets an updated cookie and stays pinned under it.
    r.app("demo", &addrs);
    let reply = send(
        r.http,
        get("demo.apps.test", "/")
            .header("cookie", &value)
            .body(empty())
            .unwrap(),
    )
    .await;
    let updated = reply.header("set-cookie").to_string();
    assert!(updated.starts_with("heroku-session-affinity="), "{updated}");
    let updated = updated.split(';').next().unwrap().to_string();
    assert_ne!(updated, value);
    let now_pinned = reply.header("x-backend").to_string();
    for _ in 0..10 {
        let reply = send(
            r.http,
            get("demo.apps.test", "/")
                .header("cookie", &updated)
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.header("x-backend"), now_pinned);
        assert_eq!(reply.header("set-cookie"), "");
    }
    // Its dyno gone, the client moves to another and is told so.
    r.table.set_backends(
        "id-demo",
        "demo",
        ["b1", "b2", "b3", "b4"]
            .iter()
            .zip(&addrs)
            .filter(|(n, _)| **n != now_pinned)
            .map(|(n, a)| Backend {
                dyno: format!("web.{}", &n[1..]),
                addr: *a,
            })
            .collect(),
    );
    let reply = send(
        r.http,
        get("demo.apps.test", "/")
            .header("cookie", &updated)
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_ne!(reply.header("x-backend"), now_pinned);
    assert!(reply
        .header("set-cookie")
        .starts_with("heroku-session-affinity="));
}

#[tokio::test]
async fn table_updates_never_drop_requests_in_flight() {
    let r = router().await;
    // Dyno a counts the requests that reach it, then answers as the others do.
    let arrived = Arc::new(AtomicUsize::new(0));
    let counting: Handler = {
        let arrived = arrived.clone();
        Arc::new(move |req| {
            arrived.fetch_add(1, Ordering::SeqCst);
            Box::pin(echo(req))
        })
    };
    let (a, _) = backend("a", Some(counting)).await;
    let (b, _) = backend("b", None).await;
    r.app("demo", &[a]);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = r.http;
        tasks.push(tokio::spawn(async move {
            send(
                addr,
                get("demo.apps.test", "/?sleep=500").body(empty()).unwrap(),
            )
            .await
        }));
    }
    // Every request has reached dyno a.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while arrived.load(Ordering::SeqCst) < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of 20 requests reached dyno a",
            arrived.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Dyno a leaves the table while its requests are in flight; b takes new ones.
    r.table.set_backends(
        "id-demo",
        "demo",
        vec![Backend {
            dyno: "web.2".into(),
            addr: b,
        }],
    );
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-backend"), "a");
    }
    assert_eq!(
        get_ok(&r, "demo.apps.test", "/").await.header("x-backend"),
        "b"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_follows_each_table_change() {
    let r = router().await;
    let (a, _) = backend("a", None).await;
    let (b, _) = backend("b", None).await;
    let (c, _) = backend("c", None).await;
    r.app("demo", &[a]);
    r.app("other", &[c]);
    let domain = |names: &[&str]| AppSettings {
        domains: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    r.configure("demo", domain(&["www.demo.test"]));
    let mut s = TcpStream::connect(r.http).await.unwrap();
    let mut buf = Vec::new();
    let mut ask = async |host: &str| {
        let req = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut s, &mut buf, false).await;
        let backend = head
            .lines()
            .find_map(|l| l.strip_prefix("x-backend: "))
            .unwrap_or("")
            .to_string();
        (head.lines().next().unwrap_or("").to_string(), backend)
    };
    let ok = "HTTP/1.1 200 OK".to_string();
    assert_eq!(ask("www.demo.test").await, (ok.clone(), "a".into()));
    // Each change is seen by the very next request on the same connection.
    r.app("demo", &[b]);
    assert_eq!(ask("WWW.demo.test:80").await, (ok.clone(), "b".into()));
    assert_eq!(ask("www.demo.test").await, (ok.clone(), "b".into()));
    r.configure("demo", AppSettings::default());
    r.configure("other", domain(&["www.demo.test"]));
    assert_eq!(ask("www.demo.test").await, (ok.clone(), "c".into()));
    assert_eq!(ask("demo.apps.test").await, (ok.clone(), "b".into()));
    r.configure("other", AppSettings::default());
    let (status, _) = ask("www.demo.test").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

// ---- malformed requests ----------------------------------------------------------------------

async fn raw_status(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_400() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    let long_path = format!(
        "GET /{} HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n",
        "a".repeat(8200)
    );
    assert_eq!(
        raw_status(r.http, long_path.as_bytes()).await,
        "HTTP/1.1 400 Bad Request"
    );
    let long_header = format!(
        "GET / HTTP/1.1\r\nhost: demo.apps.test\r\nx-big: {}\r\n\r\n",
        "v".repeat(8200)
    );
    assert_eq!(
        raw_status(r.http, long_header.as_bytes()).await,
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        raw_status(r.http, b"NOT A REQUEST\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    // Two Host headers: the dyno might read the other one than the router routed by.
    assert_eq!(
        raw_status(
            r.http,
            b"GET / HTTP/1.1\r\nhost: demo.apps.test\r\nhost: other.apps.test\r\n\r\n"
        )
        .await,
        "HTTP/1.1 400 Bad Request"
    );
    // Just under the limits is fine.
    let fine = format!(
        "GET /{} HTTP/1.1\r\nhost: demo.apps.test\r\nx-big: {}\r\n\r\n",
        "a".repeat(8000),
        "v".repeat(8000)
    );
    assert_eq!(raw_status(r.http, fine.as_bytes()).await, "HTTP/1.1 200 OK");
}

/// Reads one response from a raw connection: its head, and its body by `content-length`
/// (none for `HEAD`). Bytes after it stay in `buf`.
async fn read_response(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> (String, String) {
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let length = if head_request { 0 } else { length };
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                buf.drain(..end + 4 + length);
                return (head, body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&b[..n]);
    }
}

#[tokio::test]
async fn one_connection_pipelines_heads_bodies_and_close() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    let mut s = TcpStream::connect(r.http).await.unwrap();
    // Two requests in one write are answered in order.
    s.write_all(
        b"GET /a HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n\
          GET /b HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (head, body) = read_response(&mut s, &mut buf, false).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\ndate: "), "{head}");
    assert!(body.starts_with("GET /a "), "{body}");
    let (_, body) = read_response(&mut s, &mut buf, false).await;
    assert!(body.starts_with("GET /b "), "{body}");
    // HEAD: the length of what GET would send, and no body (else the next answer breaks).
    s.write_all(b"HEAD /h HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut s, &mut buf, true).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: "),
        "{head}"
    );
    assert_eq!(body, "");
    // A request with a body on the same connection, then one that closes it.
    s.write_all(
        b"POST /c HTTP/1.1\r\nhost: demo.apps.test\r\ncontent-length: 5\r\n\r\nhello\
          GET /d HTTP/1.1\r\nhost: demo.apps.test\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (_, body) = read_response(&mut s, &mut buf, false).await;
    assert!(body.starts_with("POST /c "), "{body}");
    assert!(body.contains("body-bytes: 5"), "{body}");
    let (head, body) = read_response(&mut s, &mut buf, false).await;
    assert!(body.starts_with("GET /d "), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the router closes the connection")
        .unwrap();
    assert!(rest.is_empty() && buf.is_empty());
    for path in ["/a", "/b", "/h", "/c", "/d"] {
        r.line("demo", &[&format!("path=\"{path}\""), "status=200"])
            .await;
    }
    // Two requests, then the end of the client's input: both are answered, then it closes.
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(
        b"GET /f HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n\
          GET /g?sleep=100 HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n",
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let (_, body) = read_response(&mut s, &mut buf, false).await;
    assert!(body.starts_with("GET /f "), "{body}");
    let (_, body) = read_response(&mut s, &mut buf, false).await;
    assert!(body.starts_with("GET /g?sleep=100 "), "{body}");
    // A fresh connection whose first request asks to close it.
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"GET /e HTTP/1.1\r\nhost: demo.apps.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("closed after the answer")
        .unwrap();
    let all = String::from_utf8_lossy(&all);
    assert!(all.contains("GET /e "), "{all}");
}

#[tokio::test]
async fn random_mixes_of_requests_stay_in_step() {
    use rand::{Rng, SeedableRng};
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for conn in 0..24 {
        // A few requests of every kind; the last asks to close the connection.
        let n = rng.gen_range(1..=8);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for k in 0..n {
            let path = format!("/c{conn}-r{k}");
            let close = if k == n - 1 {
                "connection: close\r\n"
            } else {
                ""
            };
            let (method, body) = match rng.gen_range(0..4) {
                0 => ("HEAD", String::new()),
                1 => ("POST", "b".repeat(rng.gen_range(0..3000))),
                2 => ("DELETE", String::new()),
                _ => ("GET", String::new()),
            };
            let length = if method == "POST" {
                format!("content-length: {}\r\n", body.len())
            } else {
                String::new()
            };
            wire.extend_from_slice(
                format!(
                    "{method} {path} HTTP/1.1\r\nhost: demo.apps.test\r\n{length}{close}\r\n{body}"
                )
                .as_bytes(),
            );
            expected.push((method, path, body.len()));
        }
        let mut s = TcpStream::connect(r.http).await.unwrap();
        // Sent in random pieces, so heads and bodies split anywhere.
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let cut = rng.gen_range(1..=rest.len().min(700));
            s.write_all(&rest[..cut]).await.unwrap();
            rest = &rest[cut..];
            if rng.gen_bool(0.3) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let mut buf = Vec::new();
        for (method, path, body_len) in &expected {
            let (head, body) = read_response(&mut s, &mut buf, *method == "HEAD").await;
            assert!(
                head.starts_with("HTTP/1.1 200 OK"),
                "{method} {path}: {head}"
            );
            if *method == "HEAD" {
                assert!(body.is_empty());
                continue;
            }
            assert!(
                body.starts_with(&format!("{method} {path} ")),
                "{method} {path} answered with {body}"
            );
            assert!(
                body.contains(&format!("body-bytes: {body_len}\n")),
                "{body}"
            );
        }
        let mut tail = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut tail))
            .await
            .expect("closed after the last answer")
            .unwrap();
        assert!(
            tail.is_empty() && buf.is_empty(),
            "bytes after the last answer"
        );
    }
}

#[tokio::test]
async fn dyno_answers_are_relayed_whatever_their_framing() {
    let r = router().await;
    // One answer per connection, chosen by the path; hop-by-hop headers to be dropped.
    let b = raw_backend(|mut s| async move {
        let head = read_head(&mut s).await;
        let answer: &[u8] = if head.starts_with("GET /chunked") {
            b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nconnection: x-secret\r\n\
              x-secret: 1\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        } else if head.starts_with("GET /close") {
            b"HTTP/1.1 200 OK\r\nx-kept: yes\r\n\r\nuntil the dyno closes"
        } else if head.starts_with("GET /named-length") {
            // The dyno names its own length as hop-by-hop: the client still gets a length.
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: content-length\r\nx-kept: yes\r\n\r\nhello"
        } else if head.starts_with("GET /two-lengths") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 50\r\n\r\nx"
        } else if head.starts_with("GET /plus-length") {
            b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello"
        } else if head.starts_with("GET /x-chunked") {
            // A coding that only ends like `chunked`: the body runs to the close.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\nx-kept: yes\r\n\r\nuntil the dyno closes"
        } else if head.starts_with("GET /both") {
            // Chunks and a length: the chunks win.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\nx-kept: yes\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        } else if head.starts_with("POST /switch") {
            b"HTTP/1.1 101 Switching Protocols\r\ncontent-length: 0\r\n\r\n"
        } else if head.starts_with("GET /empty") {
            b"HTTP/1.1 204 No Content\r\nx-kept: yes\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-kept: yes\r\n\r\nhello world"
        };
        let _ = s.write_all(answer).await;
    })
    .await;
    r.app("demo", &[b]);
    for (path, status, body, bytes) in [
        ("/chunked", 201, "hello world", 11),
        ("/close", 200, "until the dyno closes", 21),
        ("/empty", 204, "", 0),
        ("/length", 200, "hello world", 11),
        ("/named-length", 200, "hello", 5),
        ("/x-chunked", 200, "until the dyno closes", 21),
        ("/both", 200, "hello", 5),
    ] {
        let reply =
            tokio::time::timeout(Duration::from_secs(5), get_ok(&r, "demo.apps.test", path))
                .await
                .expect("the body ends where the dyno said");
        assert_eq!(reply.status.as_u16(), status, "{path}");
        assert_eq!(reply.body, body, "{path}");
        assert_eq!(reply.header("x-kept"), "yes", "{path}");
        for hop in ["x-secret", "keep-alive"] {
            assert!(!reply.headers.contains_key(hop), "{path}: {hop} forwarded");
        }
        r.line(
            "demo",
            &[
                &format!("path=\"{path}\""),
                &format!("status={status}"),
                &format!("bytes={bytes} "),
            ],
        )
        .await;
    }
    // Lengths a client could read differently from the router: H17.
    for path in ["/two-lengths", "/plus-length"] {
        let reply = get_ok(&r, "demo.apps.test", path).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        r.line("demo", &[&format!("path=\"{path}\""), "code=H17"])
            .await;
    }
    // A 101 nobody asked for (to a request with a body, which takes the general path): H17,
    // and the connection is not kept for the next request.
    let reply = send(
        r.http,
        Request::post("/switch")
            .header("host", "demo.apps.test")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    r.line("demo", &["path=\"/switch\"", "code=H17"]).await;
}

#[tokio::test]
async fn header_lines_reach_the_client_whole_and_in_order() {
    let r = router().await;
    // Lines written every which way, hop-by-hop ones among them.
    let b = raw_backend(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\nX-One: 1\r\nX-Two:2\r\nconnection: x-gone\r\nx-gone: no\r\n\
                  X-Three: 3  \r\nX-Four: 4\r\nX-Five: five\nX-Six: 6\r\nX-Empty: \r\n\
                  keep-alive: timeout=5\r\nX-Seven: 7\r\nContent-Length: 2\r\nX-Eight: 8\r\n\
                  X-Nine: 9\r\nX-Ten: 10\r\n\r\nok",
            )
            .await;
    })
    .await;
    r.app("demo", &[b]);
    let mut s = TcpStream::connect(r.http).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_response(&mut s, &mut buf, false).await;
        assert_eq!(body, "ok");
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                assert!(!l.contains('\n') && !l.contains('\r'), "{head:?}");
                let (n, v) = l.split_once(':').expect("name: value");
                (n.to_string(), v.trim().to_string())
            })
            .filter(|(n, _)| n != "date")
            .collect();
        let want = [
            ("content-length", "2"),
            ("X-One", "1"),
            ("X-Two", "2"),
            ("X-Three", "3"),
            ("X-Four", "4"),
            ("X-Five", "five"),
            ("X-Six", "6"),
            ("X-Empty", ""),
            ("X-Seven", "7"),
            ("X-Eight", "8"),
            ("X-Nine", "9"),
            ("X-Ten", "10"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(headers, want, "{head:?}");
    }
}

#[tokio::test]
async fn the_clients_header_lines_reach_the_dyno_whole_and_in_order() {
    let r = router().await;
    // The dyno answers with the head it got.
    let b = raw_backend(|mut s| async move {
        let head = read_head(&mut s).await;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{head}",
            head.len()
        );
        let _ = s.write_all(answer.as_bytes()).await;
    })
    .await;
    r.app("demo", &[b]);
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(
        b"GET /mixed HTTP/1.1\r\nHost: demo.apps.test\r\nA-One: 1\r\nA-Two:2\r\n\
          Connection: x-secret\r\nx-secret: no\r\nA-Three: 3  \r\nA-Four: 4\r\nA-Empty: \r\n\
          A-Five: 5\r\nVia: 1.0 other\r\nA-Six: 6\r\nA-Seven: 7\r\n\
          X-Forwarded-For: 203.0.113.9\r\nA-Eight: 8\r\nA-Nine: 9\r\nKeep-Alive: timeout=5\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (_, got) = read_response(&mut s, &mut buf, false).await;
    let mut lines = got.split("\r\n");
    assert_eq!(lines.next(), Some("GET /mixed HTTP/1.1"), "{got:?}");
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            assert!(!l.contains('\n') && !l.contains('\r'), "{got:?}");
            let (n, v) = l.split_once(':').expect("name: value");
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let clients: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| n.starts_with("a-") || n == "host")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        clients,
        [
            ("host", "demo.apps.test"),
            ("a-one", "1"),
            ("a-two", "2"),
            ("a-three", "3"),
            ("a-four", "4"),
            ("a-empty", ""),
            ("a-five", "5"),
            ("a-six", "6"),
            ("a-seven", "7"),
            ("a-eight", "8"),
            ("a-nine", "9"),
        ],
        "{got:?}"
    );
    let one = |name: &str| {
        let all: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(all.len(), 1, "{name} in {got:?}");
        all[0].to_string()
    };
    assert_eq!(one("x-forwarded-for"), "203.0.113.9, 127.0.0.1");
    assert_eq!(one("via"), "1.0 other, 1.1 slipway");
    for hop in ["connection", "x-secret", "keep-alive"] {
        assert!(!headers.iter().any(|(n, _)| n == hop), "{hop} in {got:?}");
    }
}

#[tokio::test]
async fn slow_readers_get_whole_bodies_and_stalled_ones_are_cut_off() {
    let r = router().await;
    const SIZE: usize = 8 << 20;
    let b = raw_backend(|mut s| async move {
        while !read_head(&mut s).await.is_empty() {
            let mut answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n").into_bytes();
            answer.resize(answer.len() + SIZE, b'x');
            if s.write_all(&answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    r.app("demo", &[b]);
    r.time_out("demo", 30_000, 3_000);
    // A small receive window, so that the body cannot all wait in the sockets' buffers.
    let connect = |addr: SocketAddr| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.connect(addr).await.unwrap()
    };
    // Over TLS, a client that waits before reading still gets every byte.
    let tcp = connect(r.https).await;
    let mut tls = tls_client(&r.default_cert, &[b"http/1.1"])
        .connect(ServerName::try_from("demo.apps.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /big HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = Vec::new();
    let mut b = vec![0u8; 64 * 1024];
    let whole = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut b))
            .await
            .expect("the rest of the body comes")
            .unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&b[..n]);
        // Slowly, so that the router's writes keep waiting for room to the end.
        tokio::time::sleep(Duration::from_micros(500)).await;
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + SIZE {
                break got.len() - end - 4;
            }
        }
    };
    assert_eq!(whole, SIZE);
    r.line(
        "demo",
        &["path=\"/big\"", "status=200", &format!("bytes={SIZE} ")],
    )
    .await;
    // A client that stops reading is cut off once the idle window passes.
    let mut s = connect(r.http).await;
    s.write_all(b"GET /stalled HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n")
        .await
        .unwrap();
    let line = r.line("demo", &["path=\"/stalled\"", "code=H18"]).await;
    assert!(line.contains("sock=client"), "{line}");
    drop(s);
}

#[tokio::test]
async fn a_client_that_leaves_while_the_dyno_does_not_accept_is_h27() {
    let r = router().await;
    let (hole, _held, _listener) = blackhole().await;
    r.app("demo", &[hole]);
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"GET /left HTTP/1.1\r\nhost: demo.apps.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = Instant::now();
    drop(s);
    let line = r.line("demo", &["path=\"/left\"", "code=H27"]).await;
    assert!(line.contains("status=499"), "{line}");
    assert!(
        left.elapsed() < Duration::from_secs(3),
        "logged {:?} after the client left, not at once",
        left.elapsed()
    );
}

// ---- WebSockets -------------------------------------------------------------------------------

#[tokio::test]
async fn websockets_are_proxied_then_closed_after_the_idle_window() {
    let r = router().await;
    // Accepts the upgrade, then echoes whatever comes.
    let b = raw_backend(|mut s| async move {
        let head = read_head(&mut s).await;
        assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: x\r\n\r\n")
            .await;
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    r.app("demo", &[b]);
    r.time_out("demo", 30_000, 2_000);
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: demo.apps.test\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in ["hello", "again"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, msg.as_bytes());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Silence past the idle window ends the session.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed by the router")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let line = r.line("demo", &["status=101"]).await;
    assert!(
        line.contains("path=\"/ws\"") && line.contains("code=H"),
        "{line}"
    );
}

// ---- TLS, SNI and HTTP/2 ----------------------------------------------------------------------

async fn tls_get(
    r: &Router,
    root: &CertificateDer<'static>,
    sni: &str,
    path: &str,
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(r.https).await.unwrap();
    let tls = tls_client(root, &[b"http/1.1"])
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    send_on(tls, get(sni, path).body(empty()).unwrap())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn https_serves_each_apps_certificate_by_sni() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("one", &[b]);
    r.app("two", &[b]);
    let (pem1, key1, der1) = self_signed(&["www.one.example"]);
    let (pem2, key2, der2) = self_signed(&["*.two.example"]);
    r.configure(
        "one",
        AppSettings {
            domains: vec!["www.one.example".into()],
            certs: vec![CertPair {
                chain_pem: pem1,
                key_pem: key1,
            }],
            ..Default::default()
        },
    );
    r.configure(
        "two",
        AppSettings {
            domains: vec!["*.two.example".into()],
            certs: vec![CertPair {
                chain_pem: pem2,
                key_pem: key2,
            }],
            ..Default::default()
        },
    );
    // Each name gets its own certificate: trusting only that one is enough.
    let reply = tls_get(&r, &der1, "www.one.example", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        reply.seen("x-forwarded-port"),
        Some(r.https.port().to_string())
    );
    let reply = tls_get(&r, &der2, "api.two.example", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // And not the other's.
    assert!(tls_get(&r, &der1, "api.two.example", "/").await.is_err());
    assert!(tls_get(&r, &der2, "www.one.example", "/").await.is_err());
    // Other names get the default certificate.
    let reply = tls_get(&r, &r.default_cert, "one.apps.test", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let line = r.line("one", &["protocol=https"]).await;
    assert!(line.starts_with("at=info"), "{line}");
    // A removed certificate is no longer served.
    r.configure(
        "one",
        AppSettings {
            domains: vec!["www.one.example".into()],
            ..Default::default()
        },
    );
    assert!(tls_get(&r, &der1, "www.one.example", "/").await.is_err());
}

#[tokio::test]
async fn https_redirect() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    r.configure(
        "demo",
        AppSettings {
            https_redirect: true,
            ..Default::default()
        },
    );
    let reply = get_ok(&r, "demo.apps.test", "/a?b=c").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), "https://demo.apps.test/a?b=c");
    let reply = send(
        r.http,
        Request::post("/form")
            .header("host", "demo.apps.test")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let reply = tls_get(&r, &r.default_cert, "demo.apps.test", "/")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn http2_from_clients_reaches_http1_dynos() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    let tcp = TcpStream::connect(r.https).await.unwrap();
    let tls = tls_client(&r.default_cert, &[b"h2"])
        .connect(ServerName::try_from("demo.apps.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Several streams on the one connection.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let req = Request::get(format!("https://demo.apps.test/h2/{i}"))
            .body(empty())
            .unwrap();
        tasks.push(sender.send_request(req));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let resp = t.await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.starts_with(&format!("GET /h2/{i} HTTP/1.1")), "{body}");
        assert!(body.contains("via: 2.0 slipway"), "{body}");
        assert!(body.contains("host: demo.apps.test"), "{body}");
        assert!(body.contains("x-forwarded-proto: https"), "{body}");
    }
}

#[tokio::test]
async fn http2_to_dyno_when_the_app_asks() {
    let r = router().await;
    // An HTTP/2-only (prior knowledge) dyno, as a gRPC server would be.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let v = format!("{:?} {}", req.version(), req.uri().path());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(v))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    r.app("grpc", &[addr]);
    r.configure(
        "grpc",
        AppSettings {
            http2_to_dyno: true,
            ..Default::default()
        },
    );
    let mut tasks = Vec::new();
    for i in 0..10 {
        let addr = r.http;
        tasks.push(tokio::spawn(async move {
            send(
                addr,
                get("grpc.apps.test", &format!("/svc/{i}"))
                    .body(empty())
                    .unwrap(),
            )
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("HTTP/2.0 /svc/{i}"));
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one multiplexed connection"
    );
    let line = r.line("grpc", &["path=\"/svc/0\""]).await;
    assert!(
        line.starts_with("at=info") && line.contains("status=200"),
        "{line}"
    );
}

#[tokio::test]
async fn backends_listed_are_the_up_dynos() {
    let r = router().await;
    let (a, _) = backend("a", None).await;
    r.app("demo", &[a]);
    let got = r.table.backends("demo").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].addr, a);
}

/// A response body: some data, then trailers (as gRPC answers).
struct WithTrailers(u8);

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0 += 1;
        std::task::Poll::Ready(match self.0 {
            1 => Some(Ok(http_body::Frame::data(Bytes::from_static(b"reply")))),
            2 => {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                Some(Ok(http_body::Frame::trailers(t)))
            }
            _ => None,
        })
    }
}

#[tokio::test]
async fn http2_end_to_end_keeps_trailers_for_grpc() {
    let r = router().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    assert_eq!(req.version(), http::Version::HTTP_2);
                    assert_eq!(
                        req.headers().get("te").map(|v| v.as_bytes()),
                        Some(&b"trailers"[..]),
                        "gRPC servers want te: trailers"
                    );
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(&body[..], b"ping");
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/grpc")
                            .body(WithTrailers(0))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    r.app("grpc", &[addr]);
    r.configure(
        "grpc",
        AppSettings {
            http2_to_dyno: true,
            ..Default::default()
        },
    );
    let tcp = TcpStream::connect(r.https).await.unwrap();
    let tls = tls_client(&r.default_cert, &[b"h2"])
        .connect(ServerName::try_from("grpc.apps.test").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post("https://grpc.apps.test/pkg.Service/Method")
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"ping")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers reach the client");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(&collected.to_bytes()[..], b"reply");
}

#[tokio::test]
async fn request_bodies_reach_the_dyno_whatever_their_framing() {
    let r = router().await;
    let (b, _) = backend("b1", None).await;
    r.app("demo", &[b]);
    // Content-Length.
    let reply = send(
        r.http,
        Request::post("/upload")
            .header("host", "demo.apps.test")
            .body(Full::new(Bytes::from(vec![b'x'; 100_000])))
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.seen("body-bytes").as_deref(),
        Some("100000"),
        "{}",
        reply.body
    );
    // Chunked, from a raw client.
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"POST /c HTTP/1.1\r\nhost: demo.apps.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("body-bytes: 11"), "{out}");
    // A `Connection` header naming the framing (or the Host) does not take it away: the dyno
    // still gets the length, so the body is not read as the next request on a kept-alive
    // connection to it.
    let mut s = TcpStream::connect(r.http).await.unwrap();
    s.write_all(b"POST /n HTTP/1.1\r\nhost: demo.apps.test\r\nconnection: content-length, host, close\r\ncontent-length: 11\r\n\r\nhello world")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("body-bytes: 11"), "{out}");
    // HTTP/2 without a length: the dyno gets it chunked.
    let tcp = TcpStream::connect(r.https).await.unwrap();
    let tls = tls_client(&r.default_cert, &[b"h2"])
        .connect(ServerName::try_from("demo.apps.test").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::post("https://demo.apps.test/h2")
                .body(Full::new(Bytes::from(vec![b'y'; 70_000])))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(body.contains("body-bytes: 70000"), "{body}");
}

/// A listening socket whose backlog is full: connections to it are never accepted.
async fn blackhole() -> (
    SocketAddr,
    Vec<std::net::TcpStream>,
    tokio::net::TcpListener,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue; further handshakes are not completed.
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            held.push(s);
        }
    }
    (addr, held, listener)
}

#[tokio::test]
async fn a_dyno_that_does_not_accept_within_5s_is_put_aside() {
    let r = router().await;
    let (good, _) = backend("good", None).await;
    let (hole, _held, _listener) = blackhole().await;
    r.app("demo", &[hole, good]);
    // Whichever dyno the first requests try, they are all answered by the good one, and once the
    // silent one has cost 5 s it is skipped.
    let started = Instant::now();
    let mut slow = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let reply = get_ok(&r, "demo.apps.test", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-backend"), "good");
        if t.elapsed() > Duration::from_secs(4) {
            slow += 1;
        }
    }
    assert!(slow <= 1, "{slow} requests waited for the silent dyno");
    assert!(started.elapsed() < Duration::from_secs(9));
    // With only the silent dyno: H19.
    let (hole2, _held2, _listener2) = blackhole().await;
    r.app("silent", &[hole2]);
    let reply = get_ok(&r, "silent.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    r.line(
        "silent",
        &["code=H19", "desc=\"Backend connection timeout\""],
    )
    .await;
}
