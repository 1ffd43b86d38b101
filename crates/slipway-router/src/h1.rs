//! The router's HTTP/1.1 client to dynos, on the hot path.
//!
//! A request is written and its response read by the task serving the client, and the response
//! body is decoded straight from the dyno's socket as the client side asks for it: no connection
//! task and no channels between the two sides (hyper's client has both; they cost about a third
//! of the router's CPU per request). Parsing is `httparse`'s. Upgrades and HTTP/2 to dynos use
//! hyper's client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::body::ReqBody;

/// Longest response head accepted from a dyno.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const READ_CHUNK: usize = 16 * 1024;

/// A connection to a dyno and what was read from it but not used yet.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// Served a request before (so the dyno may have closed it meanwhile).
    pub reused: bool,
    /// When it went back to the pool.
    pub idle_since: Option<std::time::Instant>,
    /// The thread (and so the event loop) it was made on.
    pub owner: std::thread::ThreadId,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("reused", &self.reused)
            .finish()
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    /// Until the dyno closes the connection.
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection failed before any byte of the request was accepted: safe to send again.
    NotSent,
    /// The dyno closed the connection without answering (H13).
    Closed,
    /// A kept-alive connection was closed before a byte of the answer came: the dyno closed it
    /// as the request went out, so it never saw the request.
    Stale,
    /// The client's body failed (it went idle: H28, or away).
    Body,
    /// The dyno's answer is not HTTP.
    Invalid,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            reused: false,
            idle_since: None,
            owner: std::thread::current().id(),
        }
    }

    /// False if the dyno closed this idle connection (or sent something nobody asked for).
    /// One that was in use a moment ago is taken as alive without asking the kernel.
    pub fn alive(&self) -> bool {
        if self
            .idle_since
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(20))
        {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut b = [0u8; 1];
                matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// The next `n` buffered bytes: small pieces are copied, so the buffer is not shared and
    /// is reused for the next read; large ones are handed over without a copy.
    fn take(&mut self, n: usize) -> Bytes {
        if n <= 4096 {
            let b = Bytes::copy_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            b
        } else {
            self.buf.split_to(n).freeze()
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// The headers the router adds to a request (replacing any the client sent).
pub(crate) struct Extra<'a> {
    pub request_id: &'a str,
    pub fwd: &'a str,
    pub proto: &'static str,
    pub port: &'a str,
    pub start: &'a str,
    pub via: &'a str,
    /// Written only when the client sent no `Host` (HTTP/2 clients send `:authority`).
    pub host: &'a str,
    /// The body goes chunked.
    pub chunked: bool,
}

/// `token` (a header name, which the parser has checked holds only token characters) equals
/// `lower` (lower case letters and `-`) in any case. For token characters, setting bit 5 lowers
/// a letter and changes nothing that could then equal a letter or `-`; no early exit, so the
/// loop runs branch-free.
fn token_eq(token: &[u8], lower: &[u8]) -> bool {
    token.len() == lower.len()
        && token
            .iter()
            .zip(lower)
            .fold(0u8, |diff, (a, b)| diff | ((a | 0x20) ^ b))
            == 0
}

/// The header names the router treats specially, told apart by length first: one comparison
/// per header line on the hot path instead of one per name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    Connection,
    ContentLength,
    Date,
    Expect,
    Host,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    Via,
    XForwardedFor,
    XForwardedPort,
    XForwardedProto,
    XRequestId,
    XRequestStart,
    Other,
}

impl Name {
    pub(crate) fn of(name: &str) -> Name {
        let candidates: &[(&str, Name)] = match name.len() {
            2 => &[("te", Name::Te)],
            3 => &[("via", Name::Via)],
            4 => &[("host", Name::Host), ("date", Name::Date)],
            6 => &[("expect", Name::Expect)],
            7 => &[("upgrade", Name::Upgrade), ("trailer", Name::Trailer)],
            10 => &[
                ("connection", Name::Connection),
                ("keep-alive", Name::KeepAlive),
            ],
            12 => &[("x-request-id", Name::XRequestId)],
            14 => &[("content-length", Name::ContentLength)],
            15 => &[
                ("x-forwarded-for", Name::XForwardedFor),
                ("x-request-start", Name::XRequestStart),
            ],
            16 => &[
                ("x-forwarded-port", Name::XForwardedPort),
                ("proxy-connection", Name::ProxyConnection),
            ],
            17 => &[
                ("transfer-encoding", Name::TransferEncoding),
                ("x-forwarded-proto", Name::XForwardedProto),
            ],
            _ => &[],
        };
        candidates
            .iter()
            .find(|(n, _)| token_eq(name.as_bytes(), n.as_bytes()))
            .map_or(Name::Other, |(_, k)| *k)
    }

    /// Describes one connection.
    fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::Te
                | Name::Trailer
                | Name::Upgrade
                | Name::TransferEncoding
                | Name::KeepAlive
                | Name::ProxyConnection
        )
    }

    /// Whether a `Connection` header may name it for removal. Not the framing or the Host: a
    /// client naming `content-length` would otherwise have its body forwarded with no length,
    /// for the dyno to read as the start of the next request on a pooled connection.
    pub(crate) fn nameable(self) -> bool {
        !matches!(
            self,
            Name::ContentLength | Name::TransferEncoding | Name::Host
        )
    }

    /// Never forwarded as the client sent it.
    fn replaced(self) -> bool {
        self.hop_by_hop()
            || matches!(
                self,
                Name::Via
                    | Name::XRequestId
                    | Name::XForwardedFor
                    | Name::XForwardedProto
                    | Name::XForwardedPort
                    | Name::XRequestStart
            )
    }
}

impl Extra<'_> {
    /// Sets the headers on a request that goes through hyper's client.
    pub fn apply(&self, h: &mut HeaderMap) {
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-request-id", self.request_id);
        set("x-forwarded-for", self.fwd);
        set("x-forwarded-proto", self.proto);
        set("x-forwarded-port", self.port);
        set("x-request-start", self.start);
        set("via", self.via);
    }
}

/// Writes a request head: request line, the client's headers less hop-by-hop ones (and those
/// its `Connection` header names) and those the router replaces, then the router's.
pub(crate) fn encode_head(
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
    extra: &Extra<'_>,
) -> Vec<u8> {
    let named: Vec<&[u8]> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    encode_head_from(
        method.as_str(),
        path,
        b"",
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        &named,
        extra,
    )
}

/// Whether `v` holds a CR or an LF. The values checked are short (a request ID, an address, a
/// number): a plain loop is cheaper for them than memchr's set-up.
fn has_line_break(v: &[u8]) -> bool {
    if v.len() > 256 {
        return memchr::memchr2(b'\r', b'\n', v).is_some();
    }
    // Both are below 0x0e; most bytes of a header value are not, so one compare rules them out.
    v.iter().any(|&b| b < 0x0e && (b == b'\r' || b == b'\n'))
}

/// [`encode_head`] from header lines as they came (names in any case). If they point into
/// `raw`, the client's head, lines written `name: value\r\n` that follow each other there are
/// copied as one.
pub(crate) fn encode_head_from<'a>(
    method: &str,
    path: &str,
    raw: &[u8],
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    named: &[&[u8]],
    extra: &Extra<'_>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(320 + headers.size_hint().0 * 48);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    let mut run = Run::default();
    for (name, value) in headers {
        let kind = Name::of(name);
        if kind.replaced()
            || (!named.is_empty()
                && kind.nameable()
                && named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name.as_bytes())))
        {
            continue;
        }
        has_host |= kind == Name::Host;
        run.push(&mut out, raw, name, value);
    }
    run.flush(&mut out, raw);
    // Every value here comes from a parsed header value or from the router, neither of which
    // should hold a line break; checked all the same, since one would split the request.
    let mut put = |name: &str, value: &str| {
        if !value.is_empty() && !has_line_break(value.as_bytes()) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    };
    if !has_host {
        put("host: ", extra.host);
    }
    if extra.chunked {
        put("transfer-encoding: ", "chunked");
    }
    put("x-request-id: ", extra.request_id);
    put("x-forwarded-for: ", extra.fwd);
    put("x-forwarded-proto: ", extra.proto);
    put("x-forwarded-port: ", extra.port);
    put("x-request-start: ", extra.start);
    put("via: ", extra.via);
    out.extend_from_slice(b"\r\n");
    out
}

/// Sends a request: the head, then the body (chunked if `chunked`).
pub(crate) async fn write_request(
    conn: &mut Conn,
    head: &[u8],
    body: Option<(&mut ReqBody, bool)>,
) -> Result<(), SendError> {
    if conn.stream.write_all(head).await.is_err() {
        // A kept-alive connection the dyno had closed takes nothing.
        return Err(if conn.reused {
            SendError::NotSent
        } else {
            SendError::Closed
        });
    }
    if let Some((body, chunked)) = body {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(SendError::Body);
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let w = if chunked {
                let size = format!("{:x}\r\n", data.len());
                let mut buf = Vec::with_capacity(size.len() + data.len() + 2);
                buf.extend_from_slice(size.as_bytes());
                buf.extend_from_slice(&data);
                buf.extend_from_slice(b"\r\n");
                conn.stream.write_all(&buf).await
            } else {
                conn.stream.write_all(&data).await
            };
            if w.is_err() {
                return Err(SendError::Closed);
            }
        }
        if chunked && conn.stream.write_all(b"0\r\n\r\n").await.is_err() {
            return Err(SendError::Closed);
        }
    }
    Ok(())
}

/// A response head from a dyno.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    framing: Framing,
    /// The connection can serve another request once the body is read.
    keep_alive: bool,
}

/// A response head parsed in place: what the router needs to relay it.
pub(crate) struct Head<'h, 'b> {
    pub status: StatusCode,
    pub reason: &'b str,
    /// Bytes the head takes in the buffer.
    len: usize,
    framing: Framing,
    keep_alive: bool,
    /// The dyno's `Content-Length`.
    length: Option<u64>,
    headers: &'h [httparse::Header<'b>],
    /// Each header's [`Name`].
    kinds: [Name; MAX_HEADERS],
    /// Headers the dyno's `Connection` header names.
    named: Vec<&'b [u8]>,
}

impl<'b> Head<'_, 'b> {
    /// The headers the client may see: hop-by-hop ones, and those `Connection` names, stay
    /// between the dyno and the router. `Content-Length` is the router's to write
    /// ([`Head::client_length`]), so that the framing the client sees is the one the router
    /// reads.
    fn forwarded(&self) -> impl Iterator<Item = (Name, &httparse::Header<'b>)> {
        self.headers
            .iter()
            .zip(self.kinds)
            .filter(|(h, kind)| {
                !kind.hop_by_hop()
                    && *kind != Name::ContentLength
                    && (self.named.is_empty()
                        || !self
                            .named
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes())))
            })
            .map(|(h, kind)| (kind, h))
    }

    /// True if the body to the client goes chunked (its length is not known up front).
    fn chunked_out(&self) -> bool {
        matches!(self.framing, Framing::Chunked(_) | Framing::Close)
    }

    /// The `Content-Length` the client gets: the body's, or for `HEAD` and `304` the length the
    /// dyno gave.
    fn client_length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            Framing::Done if self.status != StatusCode::NO_CONTENT => self.length,
            _ => None,
        }
    }
}

/// Parses the response head at the front of `buf`: `Ok(None)` while it is incomplete.
fn parse_head<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [std::mem::MaybeUninit<httparse::Header<'b>>],
    is_head: bool,
) -> Result<Option<Head<'h, 'b>>, SendError> {
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        _ => return Err(SendError::Invalid),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(SendError::Invalid)?;
    // Upgrades go over a connection of their own, never a pooled one: a 101 here was not asked
    // for, and what follows it on the connection is not HTTP.
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(SendError::Invalid);
    }
    let http10 = parsed.version == Some(0);
    let reason = parsed.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = parsed.headers;
    let (mut length, mut chunked, mut close) = (None, false, http10);
    let mut coded = false;
    let mut named = Vec::new();
    let mut kinds = [Name::Other; MAX_HEADERS];
    for (h, slot) in headers.iter().zip(kinds.iter_mut()) {
        let kind = Name::of(h.name);
        *slot = kind;
        if kind == Name::ContentLength {
            // Digits only; repeated values must agree (else the dyno and a client could read
            // different bodies).
            let v = h.value.trim_ascii();
            let n = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or(SendError::Invalid)?;
            if length.is_some_and(|l| l != n) {
                return Err(SendError::Invalid);
            }
            length = Some(n);
        } else if kind == Name::TransferEncoding {
            // Chunked when it is the last coding named (`gzip, chunked`), not a name that ends
            // the same way (`xchunked`).
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            coded = true;
        } else if kind == Name::Connection {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close &= !http10;
                } else if !token.is_empty() {
                    named.push(token);
                }
            }
        }
    }
    let framing =
        if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Done
        } else if chunked {
            // With a Content-Length as well, the chunks win and the connection is not reused
            // (RFC 9112 §6.3): the dyno's framing is in doubt.
            close |= length.is_some();
            Framing::Chunked(Chunk::Size)
        } else if coded {
            // A transfer coding that does not end in chunked: the body runs to the close.
            Framing::Close
        } else if let Some(n) = length {
            if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            }
        } else {
            Framing::Close
        };
    Ok(Some(Head {
        status,
        reason,
        len,
        keep_alive: !close && framing != Framing::Close,
        framing,
        length,
        headers,
        kinds,
        named,
    }))
}

/// Waits for a response head and hands it to `take`, skipping `100 Continue` and the like.
async fn next_head<T>(
    conn: &mut Conn,
    is_head: bool,
    mut take: impl FnMut(&Head<'_, '_>, &[u8]) -> Result<T, SendError>,
) -> Result<(T, Framing, bool), SendError> {
    let mut got_any = !conn.buf.is_empty();
    loop {
        if !conn.buf.is_empty() {
            // Uninitialised: see `fast::plan`.
            let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            if let Some(head) = parse_head(&conn.buf, &mut slots, is_head)? {
                let (len, framing, keep_alive) = (head.len, head.framing, head.keep_alive);
                let informational = head.status.is_informational()
                    && head.status != StatusCode::SWITCHING_PROTOCOLS;
                let taken = if informational {
                    None
                } else {
                    Some(take(&head, &conn.buf)?)
                };
                conn.buf.advance(len);
                match taken {
                    // 100 Continue and the like: the real answer follows.
                    None => continue,
                    Some(t) => return Ok((t, framing, keep_alive)),
                }
            }
        }
        match conn.fill().await {
            Ok(0) | Err(_) if conn.reused && !got_any => return Err(SendError::Stale),
            Ok(0) | Err(_) => return Err(SendError::Closed),
            Ok(_) => got_any = true,
        }
    }
}

/// Reads the response head into a header map.
pub(crate) async fn read_head(conn: &mut Conn, is_head: bool) -> Result<Response, SendError> {
    let ((status, headers), framing, keep_alive) = next_head(conn, is_head, |head, buf| {
        // One copy of the head; header values are slices of it.
        let raw = Bytes::copy_from_slice(&buf[..head.len]);
        let base = buf.as_ptr() as usize;
        let mut headers = HeaderMap::with_capacity(head.headers.len());
        for (_, h) in head.forwarded() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| SendError::Invalid)?;
            let at = h.value.as_ptr() as usize - base;
            let value = HeaderValue::from_maybe_shared(raw.slice(at..at + h.value.len()))
                .map_err(|_| SendError::Invalid)?;
            headers.append(name, value);
        }
        if let Some(n) = head.client_length() {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        Ok((head.status, headers))
    })
    .await?;
    Ok(Response {
        status,
        headers,
        framing,
        keep_alive,
    })
}

/// A response head already written out for the client, less its framing header and final line.
pub(crate) struct RawHead {
    pub status: StatusCode,
    /// The body goes to the client chunked.
    pub chunked: bool,
    /// The dyno sent a `Date` header.
    pub dated: bool,
    framing: Framing,
    keep_alive: bool,
}

/// Reads the response head and writes the client's copy of it into `out`: the status line and
/// the headers the client may see, as the dyno spelled them, and the body's length if known.
pub(crate) async fn read_head_raw(
    conn: &mut Conn,
    is_head: bool,
    out: &mut Vec<u8>,
) -> Result<RawHead, SendError> {
    let ((status, chunked, dated), framing, keep_alive) = next_head(conn, is_head, |head, buf| {
        let chunked = head.chunked_out();
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(head.status.as_str().as_bytes());
        out.push(b' ');
        let reason = if head.reason.is_empty() {
            head.status.canonical_reason().unwrap_or("")
        } else {
            head.reason
        };
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut dated = false;
        if let Some(n) = head.client_length() {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut run = Run::default();
        for (kind, h) in head.forwarded() {
            dated |= kind == Name::Date;
            run.push(out, buf, h.name, h.value);
        }
        run.flush(out, buf);
        Ok((head.status, chunked, dated))
    })
    .await?;
    Ok(RawHead {
        status,
        chunked,
        dated,
        framing,
        keep_alive,
    })
}

/// Header lines on their way out of a head in `buf`: lines written `name: value\r\n` that
/// follow each other there go out with one copy; others are written out again in that form.
#[derive(Default)]
struct Run(std::ops::Range<usize>);

impl Run {
    fn push(&mut self, out: &mut Vec<u8>, buf: &[u8], name: &str, value: &[u8]) {
        match raw_line(buf, name, value) {
            Some(line) if line.start == self.0.end && !self.0.is_empty() => self.0.end = line.end,
            Some(line) => {
                self.flush(out, buf);
                self.0 = line;
            }
            None => {
                self.flush(out, buf);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>, buf: &[u8]) {
        out.extend_from_slice(&buf[std::mem::take(&mut self.0)]);
    }
}

/// Where a header's line is in `buf`, if it reads exactly `name: value\r\n` there. `name` and
/// `value` are slices of `buf` as httparse gives them, or of something else entirely (then this
/// is `None`, `buf` being empty).
fn raw_line(buf: &[u8], name: &str, value: &[u8]) -> Option<std::ops::Range<usize>> {
    if value.is_empty() || buf.is_empty() {
        return None;
    }
    let base = buf.as_ptr() as usize;
    let start = (name.as_ptr() as usize).checked_sub(base)?;
    let colon = start.checked_add(name.len())?;
    let at = (value.as_ptr() as usize).checked_sub(base)?;
    let end = at.checked_add(value.len())?;
    (at == colon + 2 && buf.get(colon..at)? == b": " && buf.get(end..end + 2)? == b"\r\n")
        .then_some(start..end + 2)
}

impl RawHead {
    pub fn into_body(self, conn: Conn) -> BodyReader {
        BodyReader {
            conn: Some(conn),
            framing: self.framing,
            keep_alive: self.keep_alive,
        }
    }
}

/// A response body read straight from the dyno's connection.
pub(crate) struct BodyReader {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
}

impl Response {
    pub fn into_body(self, conn: Conn) -> BodyReader {
        BodyReader {
            conn: Some(conn),
            framing: self.framing,
            keep_alive: self.keep_alive,
        }
    }
}

fn invalid() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "bad chunked encoding from the dyno",
    )
}

impl BodyReader {
    pub fn is_done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// The connection, if the body has been read to its end and it can be used again.
    pub fn reusable(&mut self) -> Option<Conn> {
        if self.framing == Framing::Done && self.keep_alive {
            let mut c = self.conn.take()?;
            c.reused = true;
            if c.buf.is_empty() {
                return Some(c);
            }
        }
        None
    }

    pub fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(n) => Some(n),
            Framing::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of the body; `None` at its end; an error if the dyno closed early.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(n) => {
                    if !conn.buf.is_empty() {
                        let take = (conn.buf.len() as u64).min(n) as usize;
                        let data = conn.take(take);
                        let left = n - take as u64;
                        self.framing = if left == 0 {
                            Framing::Done
                        } else {
                            Framing::Length(left)
                        };
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Framing::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.take(conn.buf.len());
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Framing::Chunked(state) => match state {
                    Chunk::Size => {
                        if let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") {
                            let line = &conn.buf[..end];
                            let hex = line.split(|b| *b == b';').next().unwrap_or(b"");
                            let size = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
                            let Some(size) = size else {
                                return Poll::Ready(Some(Err(invalid())));
                            };
                            conn.buf.advance(end + 2);
                            self.framing = Framing::Chunked(if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            });
                            continue;
                        }
                        if conn.buf.len() > 4096 {
                            return Poll::Ready(Some(Err(invalid())));
                        }
                    }
                    Chunk::Data(n) => {
                        if !conn.buf.is_empty() {
                            let take = (conn.buf.len() as u64).min(n) as usize;
                            let data = conn.take(take);
                            let left = n - take as u64;
                            self.framing = Framing::Chunked(if left == 0 {
                                Chunk::DataEnd
                            } else {
                                Chunk::Data(left)
                            });
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                    Chunk::DataEnd => {
                        if conn.buf.len() >= 2 {
                            if &conn.buf[..2] != b"\r\n" {
                                return Poll::Ready(Some(Err(invalid())));
                            }
                            conn.buf.advance(2);
                            self.framing = Framing::Chunked(Chunk::Size);
                            continue;
                        }
                    }
                    Chunk::Trailers => {
                        // Trailer lines are dropped; an empty line ends the body.
                        if let Some(end) = conn.buf.windows(2).position(|w| w == b"\r\n") {
                            conn.buf.advance(end + 2);
                            if end == 0 {
                                self.framing = Framing::Done;
                                return Poll::Ready(None);
                            }
                            continue;
                        }
                        if conn.buf.len() > 16 * 1024 {
                            return Poll::Ready(Some(Err(invalid())));
                        }
                    }
                },
            }
            // Need more bytes from the dyno.
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if self.framing == Framing::Close {
                        self.framing = Framing::Done;
                        self.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the dyno closed the connection in the middle of the response",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(answer: &'static [u8]) -> Conn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
            // Dribbled a few bytes at a time, to cross every state boundary.
            for piece in answer.chunks(3) {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        });
        Conn::new(TcpStream::connect(addr).await.unwrap())
    }

    async fn body_of(answer: &'static [u8]) -> (Response, Vec<u8>, bool) {
        let mut conn = pair(answer).await;
        write_request(&mut conn, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", None)
            .await
            .unwrap();
        let resp = read_head(&mut conn, false).await.unwrap();
        let status_ok = resp.status == StatusCode::OK;
        let mut reader = BodyReader {
            conn: Some(conn),
            framing: resp.framing,
            keep_alive: resp.keep_alive,
        };
        let mut out = Vec::new();
        while let Some(d) = std::future::poll_fn(|cx| reader.poll_data(cx)).await {
            out.extend_from_slice(&d.unwrap());
        }
        let reusable = reader.reusable().is_some();
        assert!(status_ok);
        (resp_placeholder(), out, reusable)
    }

    fn resp_placeholder() -> Response {
        Response {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            framing: Framing::Done,
            keep_alive: true,
        }
    }

    #[test]
    fn names_are_told_apart_in_any_case() {
        for (name, kind) in [
            ("Host", Name::Host),
            ("CONTENT-LENGTH", Name::ContentLength),
            ("x-Request-Start", Name::XRequestStart),
            ("X-Forwarded-For", Name::XForwardedFor),
            ("Proxy-Connection", Name::ProxyConnection),
            ("x-forwarded-port", Name::XForwardedPort),
            ("Transfer-Encoding", Name::TransferEncoding),
            ("x-forwarded-proto", Name::XForwardedProto),
            ("TE", Name::Te),
            ("hosts", Name::Other),
            ("accept", Name::Other),
        ] {
            assert_eq!(Name::of(name), kind, "{name}");
        }
        assert!(Name::KeepAlive.hop_by_hop() && !Name::Via.hop_by_hop());
        assert!(Name::Via.replaced() && Name::Upgrade.replaced() && !Name::Host.replaced());
    }

    #[test]
    fn added_values_with_a_line_break_are_left_out() {
        let long_clean = "a".repeat(300);
        let long_cr = format!("{}\r{}", "a".repeat(290), "b");
        for (value, kept) in [
            ("abc", true),
            ("a\rb", false),
            ("ab\n", false),
            ("\r", false),
            (long_clean.as_str(), true),
            (long_cr.as_str(), false),
        ] {
            assert_eq!(!has_line_break(value.as_bytes()), kept, "{value:?}");
            let extra = Extra {
                request_id: value,
                fwd: "",
                proto: "",
                port: "",
                start: "",
                via: "",
                host: "x",
                chunked: false,
            };
            let head = encode_head_from("GET", "/", b"", std::iter::empty(), &[], &extra);
            let head = String::from_utf8(head).unwrap();
            assert_eq!(head.contains("x-request-id: "), kept, "{head:?}");
            assert_eq!(head.matches('\n').count(), head.matches("\r\n").count());
        }
    }

    #[tokio::test]
    async fn content_length_chunked_and_close_delimited_bodies() {
        let (_, b, reuse) =
            body_of(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world").await;
        assert_eq!(b, b"hello world");
        assert!(reuse);
        let (_, b, reuse) = body_of(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
        )
        .await;
        assert_eq!(b, b"hello world");
        assert!(reuse);
        let (_, b, reuse) =
            body_of(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end").await;
        assert_eq!(b, b"until the end");
        assert!(!reuse);
    }
}
