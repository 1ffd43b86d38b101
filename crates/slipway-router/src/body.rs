//! Bodies passing through the router: the client's request body on its way to the dyno (idle
//! window H28) and the dyno's response on its way back (idle window H15, byte count, the log line
//! and the connection's return to the pool when it ends).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::h1::{BodyReader, Conn};
use crate::logline::{Code, LogFields};
use crate::pool::Dyno;
use crate::Shared;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug)]
struct IdleError(&'static str);

impl std::fmt::Display for IdleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for IdleError {}

/// A rolling idle window: armed lazily, pushed back whenever data moves.
struct Idle {
    window: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    moved: bool,
}

impl Idle {
    fn new(window: Duration) -> Self {
        Idle {
            window,
            timer: None,
            moved: false,
        }
    }

    /// Called when the inner body is pending: true once the window has passed with no data.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.timer {
            None => self.timer = Some(Box::pin(tokio::time::sleep(self.window))),
            Some(t) if self.moved => t.as_mut().reset(Instant::now() + self.window),
            Some(_) => {}
        }
        self.moved = false;
        self.timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready())
    }
}

/// The client's request body, forwarded to a dyno. Fails (H28) if the client sends nothing for
/// the idle window in the middle of it.
pub struct ReqBody {
    inner: Option<Incoming>,
    idle: Idle,
    /// Set when the client went idle, for the log line.
    pub(crate) client_idle: Arc<AtomicBool>,
}

impl ReqBody {
    pub(crate) fn new(inner: Incoming, window: Duration) -> Self {
        ReqBody {
            inner: Some(inner),
            idle: Idle::new(window),
            client_idle: Arc::default(),
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.idle.moved = true;
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.idle.expired(cx) {
                    this.client_idle.store(true, Ordering::Relaxed);
                    this.inner = None;
                    Poll::Ready(Some(Err(Box::new(IdleError("client idle")))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// What a proxied response does when it ends.
pub(crate) struct Finish {
    pub shared: Arc<Shared>,
    pub app_id: Arc<str>,
    pub line: LogFields,
    pub dyno: Arc<Dyno>,
    /// The keep-alive connection, back to the pool on a clean end.
    pub conn: Option<Conn>,
    /// Set when the client's body went idle (requests without a body have none).
    pub client_idle: Option<Arc<AtomicBool>>,
    ended: bool,
}

impl Finish {
    pub(crate) fn new(
        shared: Arc<Shared>,
        app_id: Arc<str>,
        line: LogFields,
        dyno: Arc<Dyno>,
        client_idle: Option<Arc<AtomicBool>>,
    ) -> Self {
        Finish {
            shared,
            app_id,
            line,
            dyno,
            conn: None,
            client_idle,
            ended: false,
        }
    }

    pub(crate) fn done(mut self, bytes: u64, outcome: Option<Code>) {
        self.end(bytes, outcome);
    }

    fn end(&mut self, bytes: u64, outcome: Option<Code>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.dyno
            .outstanding
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.line.bytes = Some(bytes);
        let outcome = outcome.or_else(|| {
            self.client_idle
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
                .then_some(Code::H28)
        });
        match outcome {
            None => {
                if let Some(c) = self.conn.take() {
                    self.dyno.put_back(c);
                }
                self.shared.log(&self.app_id, &self.line.info());
            }
            Some(code) => self.shared.log(&self.app_id, &self.line.error(code)),
        }
    }
}

impl Drop for Finish {
    /// Dropped before its end (the task serving the client was cancelled): the dyno's count and
    /// the log line are still settled.
    fn drop(&mut self) {
        self.end(0, Some(Code::H18Client));
    }
}

/// The body of a response the router sends to its client.
pub enum RespBody {
    /// A page the router makes itself.
    Full(Option<Bytes>),
    /// A dyno's response.
    Proxied(Box<Proxied>),
}

/// Where a proxied body comes from.
enum Source {
    /// Hyper's client (HTTP/2 to the dyno).
    Hyper(Incoming),
    /// Straight from the dyno's HTTP/1.1 connection.
    H1(BodyReader),
}

pub struct Proxied {
    inner: Source,
    bytes: u64,
    idle: Idle,
    finish: Option<Finish>,
}

impl RespBody {
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        RespBody::Full(Some(b.into()))
    }

    pub(crate) fn empty() -> Self {
        RespBody::Full(None)
    }

    pub(crate) fn proxied(inner: Incoming, idle: Duration, finish: Finish) -> Self {
        Self::from_source(Source::Hyper(inner), idle, finish)
    }

    pub(crate) fn proxied_h1(inner: BodyReader, idle: Duration, finish: Finish) -> Self {
        Self::from_source(Source::H1(inner), idle, finish)
    }

    fn from_source(inner: Source, idle: Duration, finish: Finish) -> Self {
        let mut p = Box::new(Proxied {
            inner,
            bytes: 0,
            idle: Idle::new(idle),
            finish: Some(finish),
        });
        if p.source_done() {
            // No body (204, 304, HEAD): hyper will not poll it.
            p.end(None);
        }
        RespBody::Proxied(p)
    }
}

impl Proxied {
    fn source_done(&self) -> bool {
        match &self.inner {
            Source::Hyper(b) => b.is_end_stream(),
            Source::H1(r) => r.is_done(),
        }
    }

    fn end(&mut self, outcome: Option<Code>) {
        if let Some(mut f) = self.finish.take() {
            if outcome.is_none() {
                if let Source::H1(r) = &mut self.inner {
                    f.conn = r.reusable();
                }
            }
            f.done(self.bytes, outcome);
        }
    }

    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.inner {
            Source::Hyper(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Source::H1(r) => match r.poll_data(cx) {
                Poll::Ready(Some(Ok(d))) => Poll::Ready(Some(Ok(Frame::data(d)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Proxied {
    fn drop(&mut self) {
        // Dropped before its end: the client went away mid-response.
        self.end(Some(Code::H18Client));
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RespBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespBody::Proxied(p) => match p.poll_source(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        p.bytes += d.len() as u64;
                    }
                    p.idle.moved = true;
                    if p.source_done() {
                        p.end(None);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(None) => {
                    p.end(None);
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    p.end(Some(Code::H18Backend));
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Pending => {
                    if p.idle.expired(cx) {
                        p.end(Some(Code::H15));
                        Poll::Ready(Some(Err(Box::new(IdleError("dyno idle")))))
                    } else {
                        Poll::Pending
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Full(b) => b.is_none(),
            RespBody::Proxied(p) => p.finish.is_none() || p.source_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespBody::Proxied(p) => match &p.inner {
                Source::Hyper(b) => b.size_hint(),
                Source::H1(r) => match r.remaining() {
                    Some(n) => SizeHint::with_exact(n),
                    None => SizeHint::default(),
                },
            },
        }
    }
}
