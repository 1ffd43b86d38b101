//! A web dyno as the router sees it: its address, requests in flight, quarantine, and a pool of
//! keep-alive connections (HTTP/1.1) or one multiplexed HTTP/2 connection.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::body::ReqBody;
use crate::h1::Conn;

/// Time a dyno has to accept a connection (Heroku's 5 s; H19 after).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dyno that refused or timed out is skipped.
pub const QUARANTINE: Duration = Duration::from_secs(5);
/// Idle keep-alive connections kept per dyno.
const MAX_IDLE: usize = 256;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    Instant::now().duration_since(epoch()).as_millis() as u64
}

/// Why a connection to a dyno could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Refused (nothing listens): H21.
    Refused,
    /// Not accepted within [`CONNECT_TIMEOUT`]: H19.
    Timeout,
    /// Anything else (no route to the dyno's network, out of sockets): the platform's fault, H99.
    Other(io::Error),
}

#[derive(Debug)]
pub(crate) struct Dyno {
    pub name: std::sync::Arc<str>,
    pub addr: SocketAddr,
    /// Requests sent and not finished.
    pub outstanding: AtomicUsize,
    quarantined_until: AtomicU64,
    idle: Mutex<Vec<Conn>>,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<ReqBody>>>,
}

impl Dyno {
    pub fn new(name: String, addr: SocketAddr) -> Self {
        Dyno {
            name: name.into(),
            addr,
            outstanding: AtomicUsize::new(0),
            quarantined_until: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            h2: tokio::sync::Mutex::new(None),
        }
    }

    pub fn quarantined(&self) -> bool {
        // Most dynos were never put aside: no clock read for them.
        let until = self.quarantined_until.load(Ordering::Relaxed);
        until != 0 && until > now_ms()
    }

    pub fn quarantine(&self) {
        self.quarantined_until
            .store(now_ms() + QUARANTINE.as_millis() as u64, Ordering::Relaxed);
    }

    async fn connect(&self) -> Result<TcpStream, ConnectError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr)).await {
            Err(_) => Err(ConnectError::Timeout),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(ConnectError::Refused)
            }
            Ok(Err(e)) => Err(ConnectError::Other(e)),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        }
    }

    /// An idle pooled connection the dyno has not closed, if any.
    /// Only connections made on this thread are taken: each router thread has its own event
    /// loop, and a socket is watched by the loop it was made on.
    pub fn idle(&self) -> Option<Conn> {
        let me = std::thread::current().id();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].owner != me {
                continue;
            }
            let c = idle.swap_remove(i);
            if c.alive() {
                return Some(c);
            }
        }
        None
    }

    /// A new connection.
    pub async fn connect_h1(&self) -> Result<Conn, ConnectError> {
        Ok(Conn::new(self.connect().await?))
    }

    /// A new HTTP/1.1 connection that can be upgraded (WebSockets); never pooled.
    pub async fn connect_upgradable(&self) -> Result<http1::SendRequest<ReqBody>, ConnectError> {
        let stream = self.connect().await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Other(io::Error::other(e)))?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                debug!(%error, "Dyno connection ended.");
            }
        });
        Ok(sender)
    }

    /// Gives a connection back once its response is complete.
    pub fn put_back(&self, mut conn: Conn) {
        conn.idle_since = Some(std::time::Instant::now());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// The dyno's HTTP/2 connection, made on first use and again when it has closed.
    pub async fn h2(&self) -> Result<http2::SendRequest<ReqBody>, ConnectError> {
        let mut slot = self.h2.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let stream = self.connect().await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Other(io::Error::other(e)))?;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                debug!(%error, "Dyno HTTP/2 connection ended.");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }
}
