//! The HTTP router: `Host: <app>.<base-domain>` or a custom domain → one of the app's up web
//! dynos, Heroku's way.
//!
//! [`RouteTable`] maps host names to apps and apps to up web dynos; the dyno manager feeds it
//! through [`RouteSink`], the API through [`RouteTable::configure`], so no request touches the
//! store. [`serve`] (HTTP/1.1) and [`serve_tls`] (HTTPS with SNI, HTTP/2 by ALPN) accept
//! connections; [`proxy`] picks a dyno (random, least outstanding of two, or pinned by the
//! affinity cookie), adds Heroku's request headers, forwards over a keep-alive pool (HTTP/1.1, or
//! HTTP/2 for apps that ask), retries another dyno only when nothing was sent, enforces the
//! timeouts and writes one `heroku[router]` line per request. Heroku's H-codes live in
//! [`logline::Code`].

mod body;
mod fast;
mod h1;
mod logline;
mod page;
mod pool;
mod proxy;
mod settings;
mod table;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use slipway_logs::{LogRouter, Source};
use tokio::net::TcpListener;
use tracing::debug;

pub use body::{ReqBody, RespBody};
pub use logline::Code;
pub use settings::{AppSettings, Balance, CertPair, PathTimeouts, Timeouts};
pub use slipway_types::{Backend, RouteSink, WebStatus};
pub use table::RouteTable;
pub use tls::{certified, Issuer};

/// Time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time to finish a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request line, and longest header line (Heroku's 8 KB; 400 beyond).
pub const MAX_LINE: usize = 8192;
/// How long a request waits for a web dyno that is starting (Heroku's boot queue; H20 after).
pub const BOOT_WAIT: Duration = Duration::from_secs(75);

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Apps are served at `<app>.<base_domain>`.
    pub base_domain: String,
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub table: RouteTable,
    pub logs: LogRouter,
    pub config: RouterConfig,
    /// `router`, the source name of every line the router logs.
    pub name: Arc<str>,
}

impl Shared {
    pub(crate) fn log(&self, app_id: &str, line: &str) {
        self.logs
            .emit_shared(app_id, Source::Heroku, &self.name, line);
    }
}

/// The connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The peer's address as `X-Forwarded-For` gives it, formatted once per connection.
    pub ip: Box<str>,
    /// The port the client connected to, as `X-Forwarded-Port` gives it.
    pub port_str: Arc<str>,
    pub https: bool,
}

impl RouteTable {
    /// The certificate HTTPS presents when no app certificate covers the name asked for.
    pub fn set_default_certificate(&self, key: Arc<rustls::sign::CertifiedKey>) {
        self.certs.set_default(key);
    }

    /// Makes certificates for `<app>.<base-domain>` on demand (an app without its own).
    pub fn set_certificate_issuer(&self, issuer: tls::Issuer) {
        self.certs.set_issuer(issuer);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_conn: impl FnMut(tokio::net::TcpStream, SocketAddr),
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    debug!(%error, "Accept failed.");
                    // Out of file descriptors: give the others a moment to finish.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        on_conn(stream, peer);
    }
}

fn shared(table: RouteTable, logs: LogRouter, config: RouterConfig) -> Arc<Shared> {
    Arc::new(Shared {
        table,
        logs,
        config,
        name: Arc::from("router"),
    })
}

async fn serve_h1<I>(io: I, shared: Arc<Shared>, info: ConnInfo)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fast::serve(io, shared, info).await
}

/// Serves an HTTP/1.1 connection with hyper's server, for what the hot path ([`fast`]) leaves.
async fn serve_hyper<I>(io: I, shared: Arc<Shared>, info: ConnInfo)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let svc = service_fn(move |req| {
        let (shared, info) = (shared.clone(), info.clone());
        // Boxed: the handler's state is large, and hyper moves the future it is given.
        Box::pin(async move { Ok::<_, Infallible>(proxy::handle(shared, req, &info).await) })
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(error) = conn.await {
        debug!(%error, "Router connection ended with an error.");
    }
}

/// Serves plain HTTP/1.1 on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    table: RouteTable,
    logs: LogRouter,
    config: RouterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let port: Arc<str> = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(0)
        .to_string()
        .into();
    let shared = shared(table, logs, config);
    accept_loop(listener, shutdown, |stream, peer| {
        let info = ConnInfo {
            ip: peer.ip().to_string().into(),
            port_str: port.clone(),
            https: false,
        };
        tokio::spawn(serve_h1(stream, shared.clone(), info));
    })
    .await;
}

/// Serves HTTPS on `listener` until `shutdown` completes: certificates by SNI (the app's own, else
/// the default set with [`RouteTable::set_default_certificate`]), HTTP/2 or HTTP/1.1 by ALPN.
pub async fn serve_tls(
    listener: TcpListener,
    table: RouteTable,
    logs: LogRouter,
    config: RouterConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), rustls::Error> {
    let port: Arc<str> = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(0)
        .to_string()
        .into();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(tls::Resolver {
        table: table.clone(),
        base_domain: config.base_domain.clone(),
    })?);
    let shared = shared(table, logs, config);
    accept_loop(listener, shutdown, |stream, peer| {
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let port = port.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        debug!(%error, "TLS handshake failed.");
                        return;
                    }
                    Err(_) => return,
                };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let info = ConnInfo {
                ip: peer.ip().to_string().into(),
                port_str: port,
                https: true,
            };
            if h2 {
                let info = Arc::new(info);
                let svc = service_fn(move |req| {
                    let (shared, info) = (shared.clone(), info.clone());
                    // Boxed: the handler's state is large, and hyper moves the future it is given.
                    Box::pin(
                        async move { Ok::<_, Infallible>(proxy::handle(shared, req, &info).await) },
                    )
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_header_list_size(64 * 1024)
                    .serve_connection(TokioIo::new(tls), svc);
                if let Err(error) = conn.await {
                    debug!(%error, "Router HTTP/2 connection ended with an error.");
                }
            } else {
                serve_h1(tls, shared, info).await;
            }
        });
    })
    .await;
    Ok(())
}

/// `X-Request-ID` from the client is kept if it is 20–200 characters of `[A-Za-z0-9+/=-]`.
pub fn valid_request_id(id: &str) -> bool {
    (20..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-".contains(&b))
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
}
