//! The hot path: HTTP/1.1 requests without a body, served without hyper's server.
//!
//! Most requests a web app gets are `GET`s on a kept-alive connection. For those, this loop reads
//! the head with `httparse`, writes the dyno's head straight from the client's header lines, and
//! relays the dyno's answer with one write, under one timer per connection that is re-armed only
//! when it fires early. Everything else hands the connection, with the bytes already read, to
//! hyper and [`proxy::handle`] for the rest of its life: a request body, an upgrade, HTTP/1.0, a
//! malformed or oversized head, an unknown host, an app with no web dyno up, in maintenance, with
//! session affinity, an HTTPS redirect or HTTP/2 to its dynos. Both paths log the same line and
//! answer with the same pages.
//!
//! Why: the router and the dynos share cores. Each microsecond the router spends per request makes
//! it likelier that a woken dyno preempts it after every request it forwards, instead of taking
//! them in batches; hyper's server machinery was about a third of the router's own time.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use crate::body::{Finish, RespBody};
use crate::h1::{self, Extra, SendError};
use crate::logline::{Code, LogFields};
use crate::proxy::{self, InFlight};
use crate::table::AppRoute;
use crate::{ConnInfo, Shared, HEADER_READ_TIMEOUT, MAX_LINE};

/// More header lines than this go to hyper (which takes up to 100).
const MAX_HEADERS: usize = 64;
/// A head not complete within this many bytes goes to hyper (which answers 431 or 400).
const MAX_HEAD: usize = 16 * 1024;
/// Most bytes of pipelined requests read while a response is awaited.
const MAX_BUFFERED: usize = 64 * 1024;
/// Response bytes gathered before they are written to the client.
const WRITE_BATCH: usize = 64 * 1024;
/// Time to close a connection (a TLS client must take the close notification).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// One timer for a connection's deadlines. Deadlines mostly move later, so the timer is left
/// armed for an earlier one and pushed back only when it fires: no timer work per request.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

/// A request the hot path forwards.
struct Planned {
    /// The request head as the dyno gets it.
    head: Vec<u8>,
    line: LogFields,
    route: Arc<AppRoute>,
    /// The client asked to close the connection after this request.
    close: bool,
    is_head: bool,
    /// Bytes of the client's head.
    len: usize,
}

enum Plan {
    Forward(Box<Planned>),
    Hyper,
}

/// The route of the host a connection's last request named: a kept-alive connection mostly
/// names one host, and this spares each request the host's parsing and the table's lookups.
struct Cached {
    /// The `Host` header's value as the client sent it.
    raw: Vec<u8>,
    /// The table's version when `route` was looked up.
    version: u64,
    host: Arc<str>,
    route: Arc<AppRoute>,
}

/// The route for a `Host` header's value, from the connection's cache while the table has not
/// changed.
fn route(
    raw: &[u8],
    shared: &Shared,
    cache: &mut Option<Cached>,
) -> Option<(Arc<str>, Arc<AppRoute>)> {
    let version = shared.table.version();
    if let Some(c) = cache
        .as_ref()
        .filter(|c| c.version == version && c.raw == raw)
    {
        return Some((c.host.clone(), c.route.clone()));
    }
    let host: Arc<str> = proxy::host_name(std::str::from_utf8(raw).ok()?).into();
    let route = proxy::route_for(shared, &host)?;
    *cache = Some(Cached {
        raw: raw.to_vec(),
        version,
        host: host.clone(),
        route: route.clone(),
    });
    Some((host, route))
}

/// Decides what to do with the head at the front of `buf`; `None` until it is complete.
fn plan(buf: &[u8], shared: &Shared, info: &ConnInfo, cache: &mut Option<Cached>) -> Option<Plan> {
    // Left uninitialised: filling 64 empty headers for each request cost more than parsing one.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return None,
        _ => return Some(Plan::Hyper),
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Some(Plan::Hyper);
    };
    if !path.starts_with('/')
        || path.contains('#')
        || method == "CONNECT"
        || method.len() + path.len() + 10 > MAX_LINE
    {
        return Some(Plan::Hyper);
    }
    let (mut host, mut fwd, mut request_id, mut via) = (None, None, None, None);
    let mut close = false;
    let mut named: Vec<&[u8]> = Vec::new();
    for h in req.headers.iter() {
        let (name, value) = (h.name, h.value);
        if name.len() + value.len() + 2 > MAX_LINE {
            return Some(Plan::Hyper);
        }
        match h1::Name::of(name) {
            h1::Name::Host => {
                if host.is_some() {
                    return Some(Plan::Hyper);
                }
                host = Some(value);
            }
            h1::Name::ContentLength if value.trim_ascii() != b"0" => return Some(Plan::Hyper),
            h1::Name::TransferEncoding | h1::Name::Upgrade | h1::Name::Expect => {
                return Some(Plan::Hyper)
            }
            h1::Name::Connection => {
                for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return Some(Plan::Hyper);
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        named.push(token);
                    }
                }
            }
            h1::Name::XForwardedFor => fwd = fwd.or(Some(value)),
            h1::Name::XRequestId => request_id = request_id.or(Some(value)),
            h1::Name::Via => via = via.or(Some(value)),
            _ => {}
        }
    }
    let Some((host, route)) = host.and_then(|h| route(h, shared, cache)) else {
        return Some(Plan::Hyper);
    };
    let s = &route.settings;
    if route.dynos.is_empty()
        || s.maintenance
        || s.session_affinity
        || s.http2_to_dyno
        || (s.https_redirect && !info.https)
    {
        return Some(Plan::Hyper);
    }
    let request_id = proxy::request_id_from(request_id);
    let fwd = proxy::forwarded_for(fwd, &info.ip);
    let mut start = itoa::Buffer::new();
    let start = start.format(proxy::now_ms());
    let proto = if info.https { "https" } else { "http" };
    let head = h1::encode_head_from(
        method,
        path,
        buf,
        req.headers.iter().map(|h| (h.name, h.value)),
        &named,
        &Extra {
            request_id: &request_id,
            fwd: &fwd,
            proto,
            port: &info.port_str,
            start,
            via: &proxy::via(via, false),
            host: &host,
            chunked: false,
        },
    );
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return Some(Plan::Hyper);
    };
    Some(Plan::Forward(Box::new(Planned {
        head,
        is_head: method == http::Method::HEAD,
        line: LogFields {
            method,
            path: path.to_string(),
            host,
            request_id,
            fwd,
            protocol: proto,
            ..LogFields::default()
        },
        route,
        close,
        len,
    })))
}

/// The client's side of a connection.
struct Client<I> {
    io: I,
    /// What was read from the client and not used yet.
    buf: BytesMut,
    timer: Timer,
    /// The answer being written.
    out: Vec<u8>,
    /// The client ended its input after pipelining requests: they are served, then the
    /// connection closes.
    eof: bool,
}

/// What came first while something was awaited for a request.
enum Watched<T> {
    Done(T),
    ClientGone,
    TimedOut,
}

/// Awaits `fut` (until `deadline`, if any) while watching the client. Its end of input with
/// nothing of another request buffered means it left; bytes of a request it pipelines
/// meanwhile are kept for later.
async fn watching<I: AsyncRead + Unpin, T>(
    io: &mut I,
    buf: &mut BytesMut,
    eof: &mut bool,
    timer: &mut Timer,
    deadline: Option<Instant>,
    fut: impl Future<Output = T>,
) -> Watched<T> {
    tokio::pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(t) = fut.as_mut().poll(cx) {
            return Poll::Ready(Watched::Done(t));
        }
        while !*eof && buf.len() < MAX_BUFFERED {
            match poll_read_buf(Pin::new(&mut *io), cx, &mut *buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    if buf.is_empty() {
                        return Poll::Ready(Watched::ClientGone);
                    }
                    *eof = true;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        match deadline.map(|d| timer.poll_expired(cx, d)) {
            Some(Poll::Ready(())) => Poll::Ready(Watched::TimedOut),
            _ => Poll::Pending,
        }
    })
    .await
}

/// Serves a client connection: the hot path for as long as its requests allow, then hyper.
pub(crate) async fn serve<I>(io: I, shared: Arc<Shared>, info: ConnInfo)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut c = Client {
        io,
        buf: BytesMut::with_capacity(4096),
        timer: Timer::default(),
        out: Vec::with_capacity(1024),
        eof: false,
    };
    let mut cache = None;
    loop {
        let mut deadline = None;
        let planned = loop {
            if !c.buf.is_empty() {
                if let Some(p) = plan(&c.buf, &shared, &info, &mut cache) {
                    break p;
                }
            }
            match c.fill(&mut deadline, HEADER_READ_TIMEOUT).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let planned = match planned {
            Plan::Forward(p) => p,
            Plan::Hyper => {
                let io = Prefixed {
                    prefix: c.buf.freeze(),
                    io: c.io,
                };
                return crate::serve_hyper(io, shared, info).await;
            }
        };
        c.buf.advance(planned.len);
        if !c.forward(&shared, *planned).await {
            let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, c.io.shutdown()).await;
            return;
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Client<I> {
    /// Reads more of the client's bytes; times out once `window` has passed since the first
    /// read that had to wait.
    async fn fill(
        &mut self,
        deadline: &mut Option<Instant>,
        window: Duration,
    ) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        poll_fn(
            |cx| match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending => {
                    let d = *deadline.get_or_insert_with(|| Instant::now() + window);
                    match self.timer.poll_expired(cx, d) {
                        Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
        )
        .await
    }

    /// Forwards one request and relays its answer; false if the connection must close.
    async fn forward(&mut self, shared: &Arc<Shared>, p: Planned) -> bool {
        let Planned {
            head,
            line,
            route,
            close,
            is_head,
            ..
        } = p;
        let received = Instant::now();
        let settings = route.settings.clone();
        let (response_timeout, idle) = settings.timeouts.for_path(&line.path);
        let mut flight = InFlight {
            shared: shared.clone(),
            app_id: route.app_id.clone(),
            line: Some(line),
            started: received,
            dyno: None,
        };
        let mut tried: Vec<usize> = Vec::new();
        let mut last = None;
        let mut fresh = false;
        loop {
            let Some(i) = proxy::pick(&route, &tried, None) else {
                let page = flight.fail(last.unwrap_or(Code::H21), &settings);
                return self.page(page, is_head, close, idle).await;
            };
            let dyno = route.dynos[i].clone();
            flight.line().dyno = dyno.name.clone();
            let conn = match (!fresh).then(|| dyno.idle()).flatten() {
                Some(c) => Ok(c),
                None => {
                    let connect = dyno.connect_h1();
                    let c = &mut *self;
                    match watching(
                        &mut c.io,
                        &mut c.buf,
                        &mut c.eof,
                        &mut c.timer,
                        None,
                        connect,
                    )
                    .await
                    {
                        Watched::Done(r) => r,
                        // The guard logs H27 as it goes.
                        Watched::ClientGone | Watched::TimedOut => return false,
                    }
                }
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => match proxy::connect_failed(&dyno, e) {
                    Ok(code) => {
                        tried.push(i);
                        last = Some(code);
                        continue;
                    }
                    Err(code) => {
                        let page = flight.fail(code, &settings);
                        return self.page(page, is_head, close, idle).await;
                    }
                },
            };
            flight.count(&dyno);
            let connected = Instant::now();
            flight.line().connect = Some(connected.duration_since(received));
            match h1::write_request(&mut conn, &head, None).await {
                Ok(()) => {}
                Err(SendError::NotSent) => {
                    // A kept-alive connection the dyno had closed took nothing: again, on a new
                    // connection.
                    if fresh {
                        tried.push(i);
                    }
                    fresh = true;
                    flight.uncount();
                    continue;
                }
                Err(_) => {
                    let page = flight.fail(Code::H13, &settings);
                    return self.page(page, is_head, close, idle).await;
                }
            }
            let c = &mut *self;
            let head = h1::read_head_raw(&mut conn, is_head, &mut c.out);
            let deadline = Some(connected + response_timeout);
            let code = match watching(
                &mut c.io,
                &mut c.buf,
                &mut c.eof,
                &mut c.timer,
                deadline,
                head,
            )
            .await
            {
                // The guard logs H27 as it goes.
                Watched::ClientGone => return false,
                Watched::TimedOut => {
                    flight.line().service = Some(response_timeout);
                    Code::H12
                }
                Watched::Done(Err(SendError::Stale)) if !fresh => {
                    fresh = true;
                    flight.uncount();
                    continue;
                }
                Watched::Done(Err(e)) => {
                    flight.line().service = Some(connected.elapsed());
                    match e {
                        SendError::Invalid => Code::H17,
                        _ => Code::H13,
                    }
                }
                Watched::Done(Ok(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    // Nobody asked to switch.
                    flight.line().service = Some(connected.elapsed());
                    Code::H17
                }
                Watched::Done(Ok(head)) => {
                    let line = flight.line();
                    line.service = Some(connected.elapsed());
                    line.status = head.status.as_u16();
                    let finish = Finish::new(
                        shared.clone(),
                        route.app_id.clone(),
                        flight.disarm(),
                        dyno.clone(),
                        None,
                    );
                    return self.relay(head, conn, finish, idle, close).await;
                }
            };
            let page = flight.fail(code, &settings);
            return self.page(page, is_head, close, idle).await;
        }
    }

    /// Relays the dyno's answer: the head in `out`, then the body, with the idle window between
    /// the dyno's bytes (H15). Logs the request's line at its end.
    async fn relay(
        &mut self,
        head: h1::RawHead,
        conn: h1::Conn,
        mut finish: Finish,
        idle: Duration,
        close: bool,
    ) -> bool {
        let chunked = head.chunked;
        if !head.dated {
            self.out.extend_from_slice(b"date: ");
            date::put(&mut self.out);
            self.out.extend_from_slice(b"\r\n");
        }
        if chunked {
            self.out
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            self.out.extend_from_slice(b"connection: close\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        let mut body = head.into_body(conn);
        let mut bytes = 0u64;
        let mut deadline: Option<Instant> = None;
        let outcome = loop {
            // Whatever the dyno has sent is gathered; the client gets it when the dyno pauses.
            let now = poll_fn(|cx| match body.poll_data(cx) {
                Poll::Ready(d) => Poll::Ready(Some(d)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
            let next = match now {
                Some(next) => next,
                None => {
                    if self.flush(idle).await.is_err() {
                        break Some(Code::H18Client);
                    }
                    let waited = poll_fn(|cx| match body.poll_data(cx) {
                        Poll::Ready(d) => Poll::Ready(Some(d)),
                        Poll::Pending => {
                            let d = *deadline.get_or_insert_with(|| Instant::now() + idle);
                            match self.timer.poll_expired(cx, d) {
                                Poll::Ready(()) => Poll::Ready(None),
                                Poll::Pending => Poll::Pending,
                            }
                        }
                    })
                    .await;
                    match waited {
                        Some(next) => next,
                        None => break Some(Code::H15),
                    }
                }
            };
            let data = match next {
                Some(Ok(data)) => data,
                None => {
                    if chunked {
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    break match self.flush(idle).await {
                        Ok(()) => None,
                        Err(_) => Some(Code::H18Client),
                    };
                }
                Some(Err(_)) => {
                    // The dyno broke off: the client gets what came, then the connection closes.
                    let _ = self.flush(idle).await;
                    break Some(Code::H18Backend);
                }
            };
            deadline = None;
            bytes += data.len() as u64;
            if chunked {
                self.out
                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                self.out.extend_from_slice(&data);
                self.out.extend_from_slice(b"\r\n");
            } else {
                self.out.extend_from_slice(&data);
            }
            if self.out.len() >= WRITE_BATCH && self.flush(idle).await.is_err() {
                break Some(Code::H18Client);
            }
        };
        if outcome.is_none() {
            finish.conn = body.reusable();
        }
        finish.done(bytes, outcome);
        outcome.is_none() && !close
    }

    /// Answers with a page the router makes (an error, for one); false if the connection must
    /// close.
    async fn page(
        &mut self,
        page: Response<RespBody>,
        is_head: bool,
        close: bool,
        idle: Duration,
    ) -> bool {
        let (parts, body) = page.into_parts();
        let body = match body {
            RespBody::Full(b) => b.unwrap_or_default(),
            RespBody::Proxied(_) => Bytes::new(),
        };
        let close = close
            || parts
                .headers
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            if name == http::header::CONNECTION {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\ndate: ", body.len()).as_bytes());
        date::put(out);
        out.extend_from_slice(b"\r\n");
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !is_head {
            out.extend_from_slice(&body);
        }
        self.flush(idle).await.is_ok() && !close
    }

    /// Writes `out` to the client; fails if the client takes none of it for `window`.
    async fn flush(&mut self, window: Duration) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (mut written, mut deadline) = (0, None::<Instant>);
        let result = poll_fn(|cx| {
            loop {
                let w = if written < self.out.len() {
                    Pin::new(&mut self.io).poll_write(cx, &self.out[written..])
                } else {
                    // TLS keeps records queued when the socket is full: they go out here.
                    match Pin::new(&mut self.io).poll_flush(cx) {
                        Poll::Ready(r) => return Poll::Ready(r),
                        Poll::Pending => break,
                    }
                };
                match w {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        deadline = None;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            let d = *deadline.get_or_insert_with(|| Instant::now() + window);
            match self.timer.poll_expired(cx, d) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        self.out.clear();
        result
    }
}

/// The `Date` header's value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub(super) fn put(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        CACHED.with_borrow_mut(|(at, text)| {
            if *at != secs || text.is_empty() {
                *at = secs;
                *text = httpdate::fmt_http_date(now);
            }
            out.extend_from_slice(text.as_bytes());
        });
    }
}

/// A connection handed to hyper, with the bytes the hot path had read from it.
pub(crate) struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
