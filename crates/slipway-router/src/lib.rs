//! The HTTP router: `Host: <app>.<base-domain>` → one of the app's up web dynos.
//!
//! [`RouteTable`] is the in-memory map from app name to up web dynos; the dyno manager feeds it
//! through the [`RouteSink`] trait, so no request ever touches the store. [`serve`] accepts
//! connections, picks a dyno at random, adds Heroku's request headers, proxies over a keep-alive
//! pool, and writes one `heroku[router]` line per request to the app's log. Errors become
//! Heroku's H-codes in exactly one place, [`RouterError::code`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rand::seq::SliceRandom;
use slipway_logs::{LogRouter, Source};
use slipway_types::{Backend, RouteSink};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::debug;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = BoxBody<Bytes, BoxError>;

/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Hop-by-hop headers: they describe one connection and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Time allowed to the first response byte (Heroku's H12 after 30 s).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct AppRoutes {
    app_id: String,
    backends: Arc<Vec<Backend>>,
    /// `maintenance:on`: every request gets the maintenance page (H80).
    maintenance: bool,
}

/// App name → up web dynos; cheap to clone, shared by the manager and the router.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    apps: Arc<RwLock<HashMap<String, AppRoutes>>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, app_name: &str) -> Option<AppRoutes> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_name)
            .cloned()
    }

    /// The up web dynos of an app, if the app is known.
    pub fn backends(&self, app_name: &str) -> Option<Vec<Backend>> {
        self.get(app_name).map(|r| r.backends.to_vec())
    }

    /// Turns maintenance mode on or off for an app.
    pub fn set_maintenance(&self, app_id: &str, app_name: &str, on: bool) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let entry = apps
            .entry(app_name.to_string())
            .or_insert_with(|| AppRoutes {
                app_id: app_id.to_string(),
                backends: Arc::new(Vec::new()),
                maintenance: false,
            });
        entry.app_id = app_id.to_string();
        entry.maintenance = on;
    }
}

impl RouteSink for RouteTable {
    fn set_backends(&self, app_id: &str, app_name: &str, backends: Vec<Backend>) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let maintenance = apps.get(app_name).is_some_and(|r| r.maintenance);
        apps.insert(
            app_name.to_string(),
            AppRoutes {
                app_id: app_id.to_string(),
                backends: Arc::new(backends),
                maintenance,
            },
        );
    }

    fn remove_app(&self, app_name: &str) {
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_name);
    }
}

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Apps are served at `<app>.<base_domain>`.
    pub base_domain: String,
}

/// Why a request could not be served by a dyno.
#[derive(Debug)]
enum RouterError {
    /// No web dyno is up (the platform's answer; a retry later may work).
    NoWebDynos,
    /// The dyno refused or dropped the connection before answering.
    DynoClosed,
    /// The dyno did not start answering within [`RESPONSE_TIMEOUT`].
    Timeout,
    /// The app is in maintenance mode.
    Maintenance,
}

impl RouterError {
    /// Heroku's code, description and status for this error.
    fn code(&self) -> (&'static str, &'static str, StatusCode) {
        match self {
            RouterError::NoWebDynos => (
                "H14",
                "No web processes running",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            RouterError::DynoClosed => (
                "H13",
                "Connection closed without response",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            RouterError::Timeout => ("H12", "Request timeout", StatusCode::SERVICE_UNAVAILABLE),
            RouterError::Maintenance => {
                ("H80", "Maintenance mode", StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

struct Router {
    table: RouteTable,
    logs: LogRouter,
    config: RouterConfig,
    client: Client<HttpConnector, Incoming>,
    port: u16,
}

/// Serves HTTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    table: RouteTable,
    logs: LogRouter,
    config: RouterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let router = Arc::new(Router {
        table,
        logs,
        config,
        client,
        port,
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    debug!(%error, "Accept failed.");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.handle(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(error) = conn.await {
                debug!(%error, "Router connection ended with an error.");
            }
        });
    }
}

/// `X-Request-ID` from the client is kept if it is 20–200 characters of `[A-Za-z0-9+/=-]`.
pub fn valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-".contains(&b))
}

fn text(status: StatusCode, body: &'static str) -> Response<RespBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    resp
}

const NO_SUCH_APP: &str = "<!DOCTYPE html><html><head><title>No such app</title></head><body>\
<h1>There is no app here</h1><p>No Slipway app is configured for this host name. Check the name, or \
create the app with <code>slipway apps:create</code>.</p></body></html>\n";
const MAINTENANCE: &str =
    "<!DOCTYPE html><html><head><title>Offline for Maintenance</title></head><body>\
<h1>Offline for maintenance</h1><p>This app is undergoing maintenance right now. Please check back \
later.</p></body></html>\n";
const APP_ERROR: &str = "<!DOCTYPE html><html><head><title>Application Error</title></head><body>\
<h1>Application error</h1><p>An error occurred in the application and your page could not be served. \
If you are the application owner, check your logs for details: <code>slipway logs --tail</code>.</p></body></html>\n";

impl Router {
    fn app_name<'a>(&self, host: &'a str) -> Option<&'a str> {
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let name = host
            .strip_suffix(self.config.base_domain.as_str())?
            .strip_suffix('.')?;
        (!name.is_empty() && !name.contains('.')).then_some(name)
    }

    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<RespBody> {
        let received = Instant::now();
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(routes) = self.app_name(&host).and_then(|name| self.table.get(name)) else {
            return text(StatusCode::NOT_FOUND, NO_SUCH_APP);
        };
        let request_id = match req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) if valid_request_id(id) => id.to_string(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let fwd = match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {}", peer.ip()),
            _ => peer.ip().to_string(),
        };
        let mut line = LogFields {
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            host: host.clone(),
            request_id: request_id.clone(),
            fwd: fwd.clone(),
            dyno: String::new(),
            connect_ms: None,
            service_ms: None,
            status: 0,
            bytes: None,
        };
        if routes.maintenance {
            return self.fail(&routes.app_id, line, RouterError::Maintenance);
        }
        let backend = routes.backends.choose(&mut rand::thread_rng()).cloned();
        let Some(backend) = backend else {
            return self.fail(&routes.app_id, line, RouterError::NoWebDynos);
        };
        line.dyno = backend.dyno.clone();

        let uri = format!("http://{}{}", backend.addr, line.path);
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return text(StatusCode::BAD_REQUEST, "Bad request\n");
        };
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        for h in HOP_BY_HOP {
            headers.remove(*h);
        }
        let set = |h: &mut http::HeaderMap, name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set(headers, "x-request-id", request_id);
        set(headers, "x-forwarded-for", fwd);
        set(headers, "x-forwarded-proto", "http".into());
        set(headers, "x-forwarded-port", self.port.to_string());
        set(headers, "x-request-start", start_ms.to_string());
        set(headers, "via", "1.1 slipway".into());

        let sent = Instant::now();
        line.connect_ms = Some(sent.duration_since(received).as_millis());
        let result = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(req)).await;
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(_)) => return self.fail(&routes.app_id, line, RouterError::DynoClosed),
            Err(_) => {
                line.service_ms = Some(RESPONSE_TIMEOUT.as_millis());
                return self.fail(&routes.app_id, line, RouterError::Timeout);
            }
        };
        line.service_ms = Some(sent.elapsed().as_millis());
        line.status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let logs = self.logs.clone();
        let app_id = routes.app_id.clone();
        let body = CountingBody {
            inner: body,
            bytes: 0,
            on_done: Some(Box::new(move |bytes| {
                line.bytes = Some(bytes);
                logs.emit(&app_id, Source::Heroku, "router", &line.info());
            })),
        };
        Response::from_parts(parts, body.map_err(BoxError::from).boxed())
    }

    fn fail(&self, app_id: &str, mut line: LogFields, err: RouterError) -> Response<RespBody> {
        let (code, desc, status) = err.code();
        line.status = status.as_u16();
        // Maintenance is the owner's choice, not a failure: Heroku logs it at=info.
        let (entry, page) = match err {
            RouterError::Maintenance => (line.coded("info", code, desc), MAINTENANCE),
            _ => (line.coded("error", code, desc), APP_ERROR),
        };
        self.logs.emit(app_id, Source::Heroku, "router", &entry);
        let mut resp = text(status, page);
        if matches!(err, RouterError::Maintenance) {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        resp
    }
}

/// The fields of a router log line.
struct LogFields {
    method: String,
    path: String,
    host: String,
    request_id: String,
    fwd: String,
    dyno: String,
    connect_ms: Option<u128>,
    service_ms: Option<u128>,
    status: u16,
    bytes: Option<u64>,
}

impl LogFields {
    fn rest(&self) -> String {
        let ms = |v: Option<u128>| v.map(|v| format!("{v}ms")).unwrap_or_default();
        format!(
            "method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} connect={} service={} status={} bytes={} protocol=http",
            self.method,
            self.path.replace('"', "%22"),
            self.host,
            self.request_id,
            self.fwd.replace(['"', '\\'], ""),
            self.dyno,
            ms(self.connect_ms),
            ms(self.service_ms),
            self.status,
            self.bytes.map(|b| b.to_string()).unwrap_or_default(),
        )
    }

    fn info(&self) -> String {
        format!("at=info {}", self.rest())
    }

    fn coded(&self, level: &str, code: &str, desc: &str) -> String {
        format!("at={level} code={code} desc=\"{desc}\" {}", self.rest())
    }
}

/// Passes a response body through, counting its bytes, and reports the count when the body ends
/// or is dropped (client gone).
struct CountingBody {
    inner: Incoming,
    bytes: u64,
    on_done: Option<Box<dyn FnOnce(u64) + Send + Sync>>,
}

impl CountingBody {
    fn finish(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(self.bytes);
        }
    }
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_rule() {
        assert!(valid_request_id("abcdefghijklmnopqrst"));
        assert!(valid_request_id(&"a+/=-".repeat(40)));
        assert!(!valid_request_id("short"));
        assert!(!valid_request_id(&"a".repeat(201)));
        assert!(!valid_request_id("abcdefghijklmnopqrs t"));
    }

    #[test]
    fn host_to_app() {
        let r = Router {
            table: RouteTable::new(),
            logs: LogRouter::new(),
            config: RouterConfig {
                base_domain: "localhost".into(),
            },
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            port: 8080,
        };
        assert_eq!(r.app_name("demo.localhost:8080"), Some("demo"));
        assert_eq!(r.app_name("demo.localhost"), Some("demo"));
        assert_eq!(r.app_name("a.b.localhost"), None);
        assert_eq!(r.app_name("localhost"), None);
        assert_eq!(r.app_name("demo.otherlocalhost"), None);
    }
}
