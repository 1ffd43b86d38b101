//! Log drains: every app's log lines forwarded to syslog servers and HTTPS endpoints, as
//! Heroku's Logplex does.
//!
//! [`Drains`] is a [`LineSink`] of the log router: [`LineSink::line`] only copies the line into
//! the bounded buffer ([`BUFFER_LINES`]) of each of the app's drains and wakes that drain's task.
//! One tokio task per drain ([`Drains::add`]) takes lines out, turns them into RFC 5424 frames
//! with RFC 6587 octet counting ([`frame`]) and sends them: as a TCP stream (optionally TLS) for
//! `syslog://` and `syslog+tls://` drains, as `application/logplex-1` POST batches for `https://`
//! (and `http://`) drains. A full buffer drops the newest lines and counts them; the drain's next
//! delivery starts with Logplex's in-band `Error L10 (output buffer overflow)` line
//! ([`overflow_message`]). A slow or dead drain only ever fills its own buffer.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Full};
use rustls::{ClientConfig, RootCertStore};
use slipway_logs::{LineSink, LogLine, Source};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Lines buffered per drain (Logplex's `drain_buffer_size`).
pub const BUFFER_LINES: usize = 1024;
/// Drains an app may have (Logplex's `max_drains_per_channel`).
pub const MAX_DRAINS_PER_APP: usize = 5;
/// An HTTPS batch holds at most this many lines...
const HTTP_BATCH_LINES: usize = 100;
/// ... or about this many bytes (Logplex's `http_drain_target_bytes`).
const HTTP_BATCH_BYTES: usize = 100 * 1024;
/// Bytes written to a syslog stream at once.
const TCP_BATCH_BYTES: usize = 64 * 1024;
/// Tries per HTTPS batch before it is dropped: the first and Logplex's `http_frame_retries` (2).
const HTTP_ATTEMPTS: u32 = 3;
/// Reconnect backoff. Logplex waits 30 s to 300 s (`tcp_syslog_reconnect_min`); we start at 1 s
/// and double up to 60 s, so a receiver that restarts (or starts after the drain is added) gets
/// lines within seconds, while a dead one costs one connection attempt a minute.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Bound on connecting, on one write and on one HTTP exchange.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors from drains.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The drain URL is not usable; the message never holds the URL's password.
    #[error("{0}")]
    InvalidUrl(String),
    #[error("drain CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    /// [`Drains::new`] was called outside a tokio runtime.
    #[error("log drains need a tokio runtime")]
    NoRuntime,
}

/// Where a drain sends its lines, parsed from its URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// `syslog://host:port` or `syslog+tls://host:port`.
    Syslog { host: String, port: u16, tls: bool },
    /// `https://[user:pass@]host[:port]/path` (or `http://`).
    Http {
        host: String,
        port: u16,
        tls: bool,
        /// Path and query of the POST.
        path: String,
        /// `Basic ...` from the URL's user and password.
        authorization: Option<String>,
    },
}

impl fmt::Display for Target {
    /// The URL without its user and password, for logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Syslog { host, port, tls } => {
                let scheme = if *tls { "syslog+tls" } else { "syslog" };
                write!(f, "{scheme}://{host}:{port}")
            }
            Target::Http {
                host,
                port,
                tls,
                path,
                ..
            } => {
                let scheme = if *tls { "https" } else { "http" };
                write!(f, "{scheme}://{host}:{port}{path}")
            }
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

/// The schemes a drain URL may have, as named in error messages.
pub const ACCEPTED_SCHEMES: &str = "syslog://, syslog+tls://, https:// or http://";

/// Parses and checks a drain URL. Errors never repeat the URL (it may hold a password).
pub fn parse_url(raw: &str) -> Result<Target, DrainError> {
    let bad = |why: &str| DrainError::InvalidUrl(format!("Invalid drain URL: {why}."));
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    let scheme = url.scheme().to_ascii_lowercase();
    if !matches!(scheme.as_str(), "syslog" | "syslog+tls" | "https" | "http") {
        return Err(bad(&format!(
            "the scheme must be one of {ACCEPTED_SCHEMES}"
        )));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err(bad("it has no host")),
    };
    if scheme.starts_with("syslog") {
        let port = url
            .port()
            .ok_or_else(|| bad("a syslog drain needs a port (syslog://host:port)"))?;
        return Ok(Target::Syslog {
            host,
            port,
            tls: scheme == "syslog+tls",
        });
    }
    let tls = scheme == "https";
    let port = url.port().unwrap_or(if tls { 443 } else { 80 });
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let authorization = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(url.username());
        let pass = decode(url.password().unwrap_or(""));
        use base64::Engine;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    };
    Ok(Target::Http {
        host,
        port,
        tls,
        path,
        authorization,
    })
}

/// The syslog priority of a line. Logplex uses the facilities local0, local3 and local7; we
/// send app output as local7, router lines as local3 and other platform lines as local0, all
/// with severity info (6): `<190>`, `<158>`, `<134>`.
pub fn priority(line: &LogLine) -> u8 {
    const INFO: u8 = 6;
    let facility = match line.source {
        Source::App => 23,
        Source::Heroku if &*line.dyno == "router" => 19,
        Source::Heroku => 16,
    };
    facility * 8 + INFO
}

/// Appends one octet-counted RFC 5424 frame (RFC 6587 `LEN SP FRAME`):
/// `<PRI>1 TIMESTAMP d.<token> SOURCE DYNO - - MESSAGE\n`, the drain token in HOSTNAME, the
/// source (`app`, `heroku`) as APP-NAME and the dyno as PROCID, as Logplex sends them. The
/// frame ends with a newline counted in LEN, as in Heroku's examples.
pub fn frame(line: &LogLine, token: &str, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // The app-name field is printable ASCII, at most 128 characters (RFC 5424).
    let clean: String;
    let dyno = if line.dyno.len() <= 128 && line.dyno.bytes().all(|b| b.is_ascii_graphic()) {
        &*line.dyno
    } else {
        clean = line
            .dyno
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(128)
            .collect();
        &clean
    };
    let dyno = if dyno.is_empty() { "-" } else { dyno };
    let source = line.source.as_str();
    let priority = priority(line);
    // "<PRI>1 STAMP TOKEN SOURCE DYNO - - MESSAGE\n", its length first.
    let pri_digits = if priority >= 100 {
        3
    } else if priority >= 10 {
        2
    } else {
        1
    };
    let len = 1
        + pri_digits
        + 3
        + 32
        + 1
        + token.len()
        + 1
        + source.len()
        + 1
        + dyno.len()
        + 5
        + line.message.len()
        + 1;
    let _ = write!(out, "{len} <{priority}>1 ");
    out.extend_from_slice(&slipway_logs::stamp(line.time));
    out.push(b' ');
    out.extend_from_slice(token.as_bytes());
    out.push(b' ');
    out.extend_from_slice(source.as_bytes());
    out.push(b' ');
    out.extend_from_slice(dyno.as_bytes());
    out.extend_from_slice(b" - - ");
    out.extend_from_slice(line.message.as_bytes());
    out.push(b'\n');
}

/// Logplex's in-band message for lines a drain lost.
pub fn overflow_message(dropped: u64, since: DateTime<Utc>) -> String {
    format!(
        "Error L10 (output buffer overflow): {dropped} messages dropped since {}.",
        since.to_rfc3339_opts(SecondsFormat::Secs, false)
    )
}

/// One drain's buffer, shared between producers and its task.
struct Drain {
    id: String,
    token: String,
    queue: Mutex<Queue>,
    wake: Notify,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<LogLine>,
    dropped: u64,
    first_drop: Option<DateTime<Utc>>,
}

impl Drain {
    fn new(id: &str, token: &str) -> Self {
        Drain {
            id: id.to_string(),
            token: token.to_string(),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            stop: watch::channel(false).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line, or counts it dropped when the buffer is full.
    fn push(&self, line: &LogLine) {
        {
            let mut q = self.lock();
            if q.lines.len() >= BUFFER_LINES {
                q.dropped += 1;
                q.first_drop.get_or_insert(line.time);
                return;
            }
            q.lines.push_back(line.clone());
        }
        self.wake.notify_one();
    }

    /// Counts lines lost after they left the buffer (an HTTPS batch that failed every try).
    fn lost(&self, n: u64, since: DateTime<Utc>) {
        let mut q = self.lock();
        q.dropped += n;
        let first = q.first_drop.map_or(since, |t| t.min(since));
        q.first_drop = Some(first);
    }

    /// Takes up to `max_lines` lines (about `max_bytes` bytes) as frames, the L10 line first if
    /// lines were dropped. Returns the frames, their count and the first line's time; `None`
    /// when nothing is queued.
    fn take(&self, max_lines: usize, max_bytes: usize) -> Option<(Vec<u8>, usize, DateTime<Utc>)> {
        let mut lines = Vec::new();
        {
            let mut q = self.lock();
            if q.lines.is_empty() && q.dropped == 0 {
                return None;
            }
            if let Some(since) = q.first_drop.take() {
                lines.push(LogLine {
                    seq: 0,
                    time: Utc::now(),
                    source: Source::Heroku,
                    dyno: "logplex".into(),
                    message: overflow_message(q.dropped, since).into(),
                });
                q.dropped = 0;
            }
            let mut bytes = 0;
            while lines.len() < max_lines && bytes < max_bytes {
                let Some(line) = q.lines.pop_front() else {
                    break;
                };
                bytes += line.message.len() + 100;
                lines.push(line);
            }
        }
        let first = lines.first().map_or_else(Utc::now, |l| l.time);
        let mut out = Vec::new();
        for line in &lines {
            frame(line, &self.token, &mut out);
        }
        Some((out, lines.len(), first))
    }

    /// Waits for lines and takes them; `None` once the drain is removed.
    async fn next(
        &self,
        stop: &mut watch::Receiver<bool>,
        max_lines: usize,
        max_bytes: usize,
    ) -> Option<(Vec<u8>, usize, DateTime<Utc>)> {
        loop {
            if *stop.borrow() {
                return None;
            }
            if let Some(batch) = self.take(max_lines, max_bytes) {
                return Some(batch);
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
    }
}

/// Sleeps, or returns `false` at once when the drain is removed.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Exponential reconnect delay between [`BACKOFF_MIN`] and [`BACKOFF_MAX`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_MIN)
    }
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }
}

/// All apps' drains; cheap to clone. Create it inside the tokio runtime.
#[derive(Clone)]
pub struct Drains {
    inner: Arc<Inner>,
}

struct Inner {
    tls: Arc<ClientConfig>,
    /// Networks no drain may connect to (checked on every address a drain's host resolves to).
    unreachable: Arc<[Net]>,
    apps: RwLock<HashMap<String, Vec<Arc<Drain>>>>,
    runtime: tokio::runtime::Handle,
}

impl Drains {
    /// Drains trusting the system's CA roots and, if given, the certificates in the PEM file
    /// `extra_ca_file`. Must be called inside a tokio runtime, where drain tasks will run.
    pub fn new(extra_ca_file: Option<&Path>) -> Result<Self, DrainError> {
        let mut roots = RootCertStore::empty();
        // A missing or unreadable system store leaves only the extra CA file.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_ca_file {
            use rustls_pki_types::pem::PemObject;
            let err = |reason: String| DrainError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let mut n = 0;
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
            {
                roots
                    .add(cert.map_err(|e| err(e.to_string()))?)
                    .map_err(|e| err(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(err("it holds no certificate".into()));
            }
        }
        let tls =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| DrainError::CaFile {
                    path: String::new(),
                    reason: e.to_string(),
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Drains {
            inner: Arc::new(Inner {
                tls: Arc::new(tls),
                unreachable: Arc::from(LINK_LOCAL),
                apps: RwLock::default(),
                runtime: tokio::runtime::Handle::try_current()
                    .map_err(|_| DrainError::NoRuntime)?,
            }),
        })
    }

    /// Drains may not connect to `nets` either (besides link-local addresses): the dyno
    /// network, where a drain would reach another app's dynos around the router. Call before
    /// adding drains.
    pub fn with_unreachable(mut self, nets: &[(std::net::Ipv4Addr, u8)]) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            let mut all: Vec<Net> = LINK_LOCAL.to_vec();
            all.extend(nets.iter().map(|(a, p)| Net::V4(*a, *p)));
            inner.unreachable = Arc::from(all);
        }
        self
    }

    /// [`parse_url`], and a host given as an address must not be on a network drains may not
    /// reach (a name is checked on every connection, against what it resolves to then).
    pub fn check_url(&self, raw: &str) -> Result<Target, DrainError> {
        let target = parse_url(raw)?;
        let host = match &target {
            Target::Syslog { host, .. } | Target::Http { host, .. } => host,
        };
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            if blocked(ip, &self.inner.unreachable) {
                return Err(DrainError::InvalidUrl(UNREACHABLE.to_string()));
            }
        }
        Ok(target)
    }

    /// Starts sending the app's lines to the drain `url` (id `id`, token `d.<uuid>`).
    pub fn add(&self, app_id: &str, id: &str, url: &str, token: &str) -> Result<(), DrainError> {
        let target = parse_url(url)?;
        let drain = Arc::new(Drain::new(id, token));
        let stop = drain.stop.subscribe();
        let reach = Reach {
            tls: self.inner.tls.clone(),
            unreachable: self.inner.unreachable.clone(),
        };
        tracing::info!(app = %app_id, drain = %token, target = %target, "Log drain started.");
        let task_drain = drain.clone();
        self.inner.runtime.spawn(async move {
            match target {
                Target::Syslog { .. } => run_syslog(task_drain, target, reach, stop).await,
                Target::Http { .. } => run_http(task_drain, target, reach, stop).await,
            }
        });
        self.inner
            .apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id.to_string())
            .or_default()
            .push(drain);
        Ok(())
    }

    /// Stops the drain `id` of the app; lines still buffered are discarded.
    pub fn remove(&self, app_id: &str, id: &str) {
        let mut apps = self.inner.apps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(drains) = apps.get_mut(app_id) {
            drains.retain(|d| {
                if d.id == id {
                    d.stop.send_replace(true);
                    false
                } else {
                    true
                }
            });
            if drains.is_empty() {
                apps.remove(app_id);
            }
        }
    }

    /// Lines dropped and not yet reported by the app's drain `id` (for tests and status).
    pub fn dropped(&self, app_id: &str, id: &str) -> Option<u64> {
        let apps = self.inner.apps.read().unwrap_or_else(|e| e.into_inner());
        let drain = apps.get(app_id)?.iter().find(|d| d.id == id)?;
        let dropped = drain.lock().dropped;
        Some(dropped)
    }
}

impl LineSink for Drains {
    fn line(&self, app_id: &str, line: &LogLine) {
        let apps = self.inner.apps.read().unwrap_or_else(|e| e.into_inner());
        if let Some(drains) = apps.get(app_id) {
            for d in drains {
                d.push(line);
            }
        }
    }

    fn remove_app(&self, app_id: &str) {
        let removed = self
            .inner
            .apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_id);
        for d in removed.into_iter().flatten() {
            d.stop.send_replace(true);
        }
    }
}

trait Stream: tokio::io::AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A network as address and prefix length.
#[derive(Debug, Clone, Copy)]
enum Net {
    V4(std::net::Ipv4Addr, u8),
    V6(std::net::Ipv6Addr, u8),
}

/// Link-local addresses (a cloud's metadata service among them) are never a drain's.
const LINK_LOCAL: [Net; 2] = [
    Net::V4(std::net::Ipv4Addr::new(169, 254, 0, 0), 16),
    Net::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
];

const UNREACHABLE: &str = "Invalid drain URL: its address is on the dyno network or link-local, \
                           which log drains may not reach. Drain to a host outside them.";

fn blocked(ip: std::net::IpAddr, nets: &[Net]) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|net| match (net, ip) {
        (Net::V4(base, len), std::net::IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from((*len).min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(*base) & mask
        }
        (Net::V6(base, len), std::net::IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from((*len).min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(*base) & mask
        }
        _ => false,
    })
}

/// What a drain needs to connect: TLS roots, and where it may not go.
#[derive(Clone)]
struct Reach {
    tls: Arc<ClientConfig>,
    unreachable: Arc<[Net]>,
}

/// Opens a TCP connection, with TLS when `tls`, to the first address of `host` that is not on
/// a network drains may not reach.
async fn connect(
    host: &str,
    port: u16,
    tls: Option<&Arc<ClientConfig>>,
    unreachable: &[Net],
) -> std::io::Result<Box<dyn Stream>> {
    let timeout =
        |e: tokio::time::error::Elapsed| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout(IO_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(timeout)??
            .filter(|a| !blocked(a.ip(), unreachable))
            .collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            UNREACHABLE,
        ));
    }
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(&addrs[..]))
        .await
        .map_err(timeout)??;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tls = tokio::time::timeout(
        IO_TIMEOUT,
        tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .map_err(timeout)??;
    Ok(Box::new(tls))
}

/// Logs a drain failure once per outage; repeats go to debug.
fn report(failing: &mut bool, drain: &Drain, target: &Target, error: &dyn fmt::Display) {
    if *failing {
        tracing::debug!(drain = %drain.token, target = %target, error = %error, "Log drain still failing.");
    } else {
        tracing::warn!(drain = %drain.token, target = %target, error = %error, "Log drain failing; retrying with backoff.");
        *failing = true;
    }
}

/// A `syslog://` or `syslog+tls://` drain: one long-lived stream of octet-counted frames.
async fn run_syslog(
    drain: Arc<Drain>,
    target: Target,
    reach: Reach,
    mut stop: watch::Receiver<bool>,
) {
    let Target::Syslog {
        host,
        port,
        tls: use_tls,
    } = &target
    else {
        return;
    };
    let mut backoff = Backoff::new();
    let mut failing = false;
    // Frames taken from the buffer but not yet written; kept across reconnects.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut stream = match connect(
            host,
            *port,
            use_tls.then_some(&reach.tls),
            &reach.unreachable,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                report(&mut failing, &drain, &target, &e);
                if !pause(&mut stop, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        loop {
            if pending.is_empty() {
                match drain.next(&mut stop, usize::MAX, TCP_BATCH_BYTES).await {
                    Some((frames, _, _)) => pending = frames,
                    None => {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
            let write = async {
                stream.write_all(&pending).await?;
                stream.flush().await
            };
            match tokio::time::timeout(IO_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    pending.clear();
                    backoff.reset();
                    if failing {
                        tracing::info!(drain = %drain.token, target = %target, "Log drain delivering again.");
                        failing = false;
                    }
                }
                Ok(Err(e)) => {
                    report(&mut failing, &drain, &target, &e);
                    break;
                }
                Err(e) => {
                    report(&mut failing, &drain, &target, &e);
                    break;
                }
            }
        }
        if !pause(&mut stop, backoff.next()).await {
            return;
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An `https://` drain: POSTs of up to [`HTTP_BATCH_LINES`] frames over a kept-alive connection.
/// Lines are sent as soon as the previous POST is done, so batches grow only while the receiver
/// is slow and a line waits at most one exchange.
async fn run_http(
    drain: Arc<Drain>,
    target: Target,
    reach: Reach,
    mut stop: watch::Receiver<bool>,
) {
    let Target::Http {
        host,
        port,
        tls: use_tls,
        path,
        authorization,
    } = &target
    else {
        return;
    };
    let host_header = if (*use_tls && *port == 443) || (!*use_tls && *port == 80) {
        host.clone()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut backoff = Backoff::new();
    let mut failing = false;
    let mut sender: Option<Sender> = None;
    loop {
        let Some((body, count, first)) = drain
            .next(&mut stop, HTTP_BATCH_LINES, HTTP_BATCH_BYTES)
            .await
        else {
            return;
        };
        let body = Bytes::from(body);
        let frame_id = uuid::Uuid::new_v4().simple().to_string();
        let mut delivered = false;
        for attempt in 0..HTTP_ATTEMPTS {
            if attempt > 0 && !pause(&mut stop, backoff.next()).await {
                return;
            }
            let result = post(
                &mut sender,
                (
                    host,
                    *port,
                    use_tls.then_some(&reach.tls),
                    &reach.unreachable,
                ),
                &host_header,
                path,
                authorization.as_deref(),
                &drain.token,
                &frame_id,
                count,
                body.clone(),
            )
            .await;
            match result {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(e) => {
                    sender = None;
                    report(&mut failing, &drain, &target, &e);
                }
            }
        }
        if delivered {
            backoff.reset();
            if failing {
                tracing::info!(drain = %drain.token, target = %target, "Log drain delivering again.");
                failing = false;
            }
        } else {
            tracing::debug!(drain = %drain.token, lines = count, "Log drain batch dropped.");
            drain.lost(count as u64, first);
            if !pause(&mut stop, backoff.next()).await {
                return;
            }
        }
    }
}

/// The most of a receiver's answer a drain reads.
const ANSWER_MAX: usize = 64 * 1024;

/// One POST of a batch, connecting first if needed. Fails on any non-2xx answer.
#[allow(clippy::too_many_arguments)]
async fn post(
    sender: &mut Option<Sender>,
    (host, port, tls, unreachable): (&str, u16, Option<&Arc<ClientConfig>>, &[Net]),
    host_header: &str,
    path: &str,
    authorization: Option<&str>,
    token: &str,
    frame_id: &str,
    count: usize,
    body: Bytes,
) -> Result<(), String> {
    let exchange = async {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = connect(host, port, tls, unreachable)
                .await
                .map_err(|e| e.to_string())?;
            let (s, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *sender = Some(s);
        }
        let Some(s) = sender.as_mut() else {
            return Err("no connection".to_string());
        };
        s.ready().await.map_err(|e| e.to_string())?;
        let mut req = http::Request::post(path)
            .header(http::header::HOST, host_header)
            .header(http::header::CONTENT_TYPE, "application/logplex-1")
            .header(http::header::USER_AGENT, "Slipway-Logplex/1")
            .header("Logplex-Msg-Count", count.to_string())
            .header("Logplex-Drain-Token", token)
            .header("Logplex-Frame-Id", frame_id);
        if let Some(auth) = authorization {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read the answer so the connection can be reused, but never more than a little of it
        // into memory: past that, the connection is dropped instead.
        if http_body_util::Limited::new(resp.into_body(), ANSWER_MAX)
            .collect()
            .await
            .is_err()
        {
            *sender = None;
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests;
