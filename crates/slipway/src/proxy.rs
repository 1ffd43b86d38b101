//! `slipway proxy https://HOST:PORT`: a loopback endpoint for a remote Slipway's API.
//!
//! Heroku's CLI only talks to API hosts it trusts, and for anything but Heroku's own that means
//! `localhost` or `127.0.0.1` (`HEROKU_HOST=http://127.0.0.1:PORT`). The proxy listens there and
//! forwards each request, over TLS checked against Slipway's CA, to the remote server's
//! `--api-tls-listen` address. It keeps the `Host` the client used, so URLs in answers (log
//! streams, download links) come back through it, and tells the server the client's own scheme
//! and the remote host, so a `run`'s rendezvous URL names the server itself.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

#[derive(Parser, Debug)]
#[command(
    name = "slipway proxy",
    about = "Serve a remote Slipway's API on a loopback address, for Heroku's CLI"
)]
struct Args {
    /// The remote server's API over TLS, e.g. https://slipway.example.com:5443.
    url: String,
    /// Where to listen: a loopback address.
    #[arg(long, default_value = "127.0.0.1:5099")]
    listen: SocketAddr,
    /// The CA certificate the server's certificate is checked against (Slipway's
    /// `<data-dir>/tls/ca.pem`, copied from the server).
    #[arg(long, env = "SLIPWAY_CA_FILE")]
    ca_file: Option<PathBuf>,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match Args::try_parse_from(
        std::iter::once(OsString::from("slipway proxy")).chain(args.into_iter().skip(2)),
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(" ▸    Cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(" ▸    {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `https://host[:port]` → (host, port).
fn remote(url: &str) -> anyhow::Result<(String, u16)> {
    let Some(rest) = url.trim().strip_prefix("https://") else {
        bail!("{url} is not an https:// URL. Give the server's --api-tls-listen address, e.g. https://slipway.example.com:5443.");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (
            h.to_string(),
            p.parse::<u16>()
                .with_context(|| format!("{p:?} is not a port number"))?,
        ),
        _ => (authority.to_string(), 443),
    };
    if host.is_empty() {
        bail!("{url} names no host.");
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (host, port) = remote(&args.url)?;
    if !args.listen.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: the proxy serves this machine only (e.g. --listen 127.0.0.1:5099).",
            args.listen
        );
    }
    let tls = match &args.ca_file {
        Some(f) => slipway_tls::client_config(f)
            .with_context(|| format!("cannot use the CA file {}", f.display()))?,
        None => bail!(
            "Give the server's CA certificate with --ca-file (or SLIPWAY_CA_FILE): copy \
             <data-dir>/tls/ca.pem from the server."
        ),
    };
    let connector = tokio_rustls::TlsConnector::from(tls);
    let server_name = rustls_pki_types::ServerName::try_from(host.clone())
        .with_context(|| format!("{host} is not a host name"))?;
    // Check the way there before saying anything is ready.
    connect(&connector, &server_name, &host, port)
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    {
        use std::io::Write;
        // A reader that has gone (a closed pipe) does not stop the proxy.
        let _ = write!(
            std::io::stdout(),
            "Proxying http://{local} to https://{host}:{port}\n\
             Use Heroku's CLI with:\n  \
             export HEROKU_HOST=http://{local}\n  \
             export HEROKU_GIT_HOST={host}:{port}\n  \
             export NODE_EXTRA_CA_CERTS=<the CA file> GIT_SSL_CAINFO=<the CA file>\n"
        );
        let _ = std::io::stdout().flush();
    }
    let remote = Arc::new(Remote {
        connector,
        server_name,
        host,
        port,
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // Out of descriptors, most likely: wait for some to be given back.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let remote = remote.clone();
                tokio::spawn(async move {
                    if let Err(error) = remote.serve(tcp).await {
                        debug!(%error, "Proxy connection ended.");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

struct Remote {
    connector: tokio_rustls::TlsConnector,
    server_name: rustls_pki_types::ServerName<'static>,
    host: String,
    port: u16,
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    name: &rustls_pki_types::ServerName<'static>,
    host: &str,
    port: u16,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let limit = std::time::Duration::from_secs(10);
    let tcp = tokio::time::timeout(limit, TcpStream::connect((host, port)))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {host}:{port} within 10 s"))??;
    let _ = tcp.set_nodelay(true);
    Ok(
        tokio::time::timeout(limit, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| anyhow::anyhow!("no TLS handshake with {host}:{port} within 10 s"))??,
    )
}

type Body = http_body_util::Either<Incoming, http_body_util::Full<bytes::Bytes>>;

impl Remote {
    /// One local connection: its requests go, in order, over one TLS connection to the server.
    async fn serve(self: Arc<Self>, local: TcpStream) -> anyhow::Result<()> {
        let _ = local.set_nodelay(true);
        let sender = match connect(&self.connector, &self.server_name, &self.host, self.port).await
        {
            Ok(tls) => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                Some(sender)
            }
            Err(error) => {
                debug!(%error, "Cannot reach the server.");
                None
            }
        };
        let sender = Arc::new(tokio::sync::Mutex::new(sender));
        let this = self.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (this, sender) = (this.clone(), sender.clone());
            async move { this.forward(req, &sender).await }
        });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(local), service)
            .await?;
        Ok(())
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        sender: &tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        let h = req.headers_mut();
        h.insert("x-forwarded-proto", http::HeaderValue::from_static("http"));
        // An IPv6 address goes in brackets, as in a URL.
        let remote_host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if let Ok(v) = http::HeaderValue::from_str(&remote_host) {
            h.insert("x-slipway-remote-host", v);
        }
        let mut guard = sender.lock().await;
        // The server may have closed the previous connection (its keep-alive ended): open another.
        if guard.as_mut().is_none_or(|s| s.is_closed()) {
            *guard = match connect(&self.connector, &self.server_name, &self.host, self.port).await
            {
                Ok(tls) => match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
                    Ok((s, conn)) => {
                        tokio::spawn(conn);
                        Some(s)
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            };
        }
        let answer = match guard.as_mut() {
            Some(s) => match s.ready().await {
                Ok(()) => s.send_request(req).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            None => Err("no connection".to_string()),
        };
        Ok(match answer {
            Ok(resp) => resp.map(http_body_util::Either::Left),
            Err(error) => {
                let body = serde_json::json!({
                    "id": "bad_gateway",
                    "message": format!(
                        "slipway proxy cannot reach https://{}:{}: {error}. Check that the server runs and listens there (--api-tls-listen).",
                        self.host, self.port
                    ),
                });
                Response::builder()
                    .status(502)
                    .header("content-type", "application/json")
                    .body(http_body_util::Either::Right(http_body_util::Full::new(
                        bytes::Bytes::from(body.to_string()),
                    )))
                    .unwrap_or_else(|_| {
                        Response::new(http_body_util::Either::Right(Default::default()))
                    })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::remote;

    #[test]
    fn remote_urls() {
        assert_eq!(
            remote("https://slipway.example.com:5443").unwrap(),
            ("slipway.example.com".into(), 5443)
        );
        assert_eq!(
            remote("https://example.com/").unwrap(),
            ("example.com".into(), 443)
        );
        assert!(remote("http://example.com:5443").is_err());
        assert!(remote("https://:5443").is_err());
    }
}
