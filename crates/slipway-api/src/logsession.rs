//! Log sessions: `POST /apps/{app}/log-sessions` and the stream at its `logplex_url`.
//!
//! The stream is Server-Sent Events when the client asks for `text/event-stream` (each line an
//! event whose `id` resumes with `Last-Event-ID`), and plain `\n`-terminated text otherwise.
//! Without `tail` it sends the backlog and closes.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures_util::stream;
use slipway_logs::history::Query;
use slipway_logs::{parse_source, Filter, LogLine};
use slipway_types::{LogSession, LogSessionRequest};
use tokio::sync::broadcast;

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::handlers::ApiHost;
use crate::AppState;

/// Keep-alive comment interval on tails.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Lines a history search returns unless asked for another number.
const SEARCH_LINES: usize = 1500;
/// The most a history search returns.
const MAX_SEARCH_LINES: usize = 100_000;

/// `2026-11-26T10:00:00Z` or an age such as `2h`, `90m`, `1d` (that long before `now`).
fn when(
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.and_utc());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M") {
        return Ok(t.and_utc());
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        ApiError::invalid(format!(
            "Invalid time {text:?}: give an age such as 2h, 30m or 1d, or a time such as 2026-11-26T10:00:00Z."
        ))
    })?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| ApiError::invalid(format!("Invalid time {text:?}: too far back.")))
}

pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: LogSessionRequest = parse_json(&body)?;
    let source = match req.source.as_deref() {
        None | Some("") => None,
        Some(src) => Some(parse_source(src).ok_or_else(|| {
            ApiError::invalid(format!("Invalid source {src:?}: use app or heroku."))
        })?),
    };
    let filter = Filter {
        dyno: req.dyno.filter(|d| !d.is_empty()),
        source,
    };
    let now = chrono::Utc::now();
    let since = req.since.as_deref().map(|t| when(t, now)).transpose()?;
    let until = req.until.as_deref().map(|t| when(t, now)).transpose()?;
    let grep = req.grep.filter(|g| !g.is_empty());
    let tail = req.tail.unwrap_or(false);
    let token = if since.is_some() || until.is_some() || grep.is_some() {
        if s.logs.history().is_none() {
            return Err(ApiError::invalid(
                "This server keeps no log history on disk, so --since, --until and --grep are not available.",
            ));
        }
        if until.is_some() && tail {
            return Err(ApiError::invalid(
                "--until and --tail cannot go together: a tail has no end.",
            ));
        }
        if let (Some(a), Some(b)) = (since, until) {
            if a > b {
                return Err(ApiError::invalid(
                    "--since is after --until: nothing can match. Swap them.",
                ));
            }
        }
        s.logs.create_search_session(
            &app.id,
            Query {
                since,
                until,
                grep,
                filter,
                limit: req
                    .lines
                    .map_or(SEARCH_LINES, |n| n as usize)
                    .clamp(1, MAX_SEARCH_LINES),
            },
            tail,
        )
    } else {
        s.logs
            .create_session(&app.id, filter, req.lines.unwrap_or(100) as usize, tail)
    };
    let session = LogSession {
        id: uuid::Uuid::new_v4().to_string(),
        logplex_url: format!("{host}/log-sessions/{token}"),
        created_at: now,
        updated_at: now,
    };
    Ok((StatusCode::CREATED, Json(session)).into_response())
}

enum Format {
    Sse,
    Plain,
}

impl Format {
    fn line(&self, l: &LogLine) -> Bytes {
        let mut out = Vec::new();
        self.write_line(l, &mut out);
        Bytes::from(out)
    }

    fn write_line(&self, l: &LogLine, out: &mut Vec<u8>) {
        match self {
            Format::Sse => {
                out.extend_from_slice(b"id: ");
                out.extend_from_slice(l.seq.to_string().as_bytes());
                out.extend_from_slice(b"\ndata: ");
                l.write_to(out);
                out.extend_from_slice(b"\n\n");
            }
            Format::Plain => {
                l.write_to(out);
                out.push(b'\n');
            }
        }
    }
}

/// Bytes of a tail that may wait in the socket to a reader that falls behind. The kernel would let
/// the buffer grow to megabytes (seconds of lines on the way); past this, lines wait in the app's
/// stream, where a tail that stays behind loses them with an L11 notice, as Logplex does.
const TAIL_SOCKET_BUFFER: usize = 64 * 1024;

/// The API connection a request came on: lets a handler tune its socket. Serve the API with
/// `into_make_service_with_connect_info::<ApiConn>()` to provide it.
#[derive(Clone, Debug)]
pub struct ApiConn(std::sync::Arc<std::os::fd::OwnedFd>);

impl ApiConn {
    /// For a connection accepted outside `axum::serve` (the TLS listener).
    pub fn of(stream: &tokio::net::TcpStream) -> ApiConn {
        use std::os::fd::AsFd;
        let fd = stream.as_fd().try_clone_to_owned();
        ApiConn(std::sync::Arc::new(fd.unwrap_or_else(|_| {
            std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"))
        })))
    }

    /// The client's address.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        // A duplicate of the descriptor, as a std socket, asks for it (and is closed after).
        let sock = std::net::TcpStream::from(self.0.try_clone().ok()?);
        let ip = sock.peer_addr().ok()?.ip();
        Some(match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        })
    }
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for ApiConn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        use std::os::fd::AsFd;
        // A second descriptor for the same socket, closed with the connection's service.
        let fd = stream.io().as_fd().try_clone_to_owned();
        ApiConn(std::sync::Arc::new(fd.unwrap_or_else(|_| {
            // Out of descriptors: an unconnected one, which the tuning below just fails on.
            std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"))
        })))
    }
}

struct Tail {
    rx: broadcast::Receiver<LogLine>,
    filter: Filter,
    grep: Option<String>,
    format: Format,
}

impl Tail {
    fn matches(&self, line: &LogLine) -> bool {
        self.filter.matches(line)
            && self
                .grep
                .as_deref()
                .is_none_or(|g| line.to_string().contains(g))
    }
}

pub async fn stream(
    State(s): State<AppState>,
    Path(token): Path<String>,
    conn: Option<Extension<ConnectInfo<ApiConn>>>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = s.logs.session(&token) else {
        return ApiError::not_found(
            "log_session",
            "This log session has expired or does not exist. Start a new one.",
        )
        .into_response();
    };
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let format = if sse { Format::Sse } else { Format::Plain };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (backlog, rx) = match resume {
        Some(seq) => s.logs.since(&session.app_id, &session.filter, seq),
        None => s
            .logs
            .snapshot(&session.app_id, &session.filter, session.lines),
    };
    let mut chunk = Vec::new();
    match (&session.search, s.logs.history()) {
        (Some(query), Some(history)) if resume.is_none() => {
            // From the on-disk history; the lines have no stream position, so no SSE id.
            let (history, query, app_id) = (history.clone(), query.clone(), session.app_id.clone());
            let found = tokio::task::spawn_blocking(move || history.query(&app_id, &query))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            for l in found {
                match format {
                    Format::Sse => chunk.extend_from_slice(format!("data: {l}\n\n").as_bytes()),
                    Format::Plain => chunk.extend_from_slice(format!("{l}\n").as_bytes()),
                }
            }
        }
        (Some(_), _) => {}
        (None, _) => {
            for l in &backlog {
                chunk.extend_from_slice(&format.line(l));
            }
        }
    }
    let head = stream::iter(if chunk.is_empty() {
        None
    } else {
        Some(Ok::<_, std::io::Error>(Bytes::from(chunk)))
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    let body = if session.tail {
        if let Some(Extension(ConnectInfo(ApiConn(fd)))) = &conn {
            let _ = nix::sys::socket::setsockopt(
                fd.as_ref(),
                nix::sys::socket::sockopt::SndBuf,
                &TAIL_SOCKET_BUFFER,
            );
        }
        let tail = Tail {
            rx,
            filter: session.filter,
            grep: session.search.and_then(|q| q.grep),
            format,
        };
        let live = stream::unfold(tail, |mut t| async move {
            loop {
                let first = match tokio::time::timeout(KEEPALIVE, t.rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => match t.format {
                        Format::Sse => {
                            return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), t));
                        }
                        // Plain-text readers get nothing: a blank line would be a log line.
                        Format::Plain => continue,
                    },
                };
                // Whatever else is already waiting goes out in the same chunk: one write per
                // batch, not per line, keeps a tail up with a fast writer.
                let mut out = Vec::with_capacity(16 * 1024);
                let mut next = Some(first);
                let mut taken = 0;
                while let Some(r) = next.take() {
                    match r {
                        Ok(line) => {
                            if t.matches(&line) {
                                t.format.write_line(&line, &mut out);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            // The tail fell behind and lines were dropped: say so in-band, as
                            // Logplex does.
                            let line = LogLine {
                                seq: 0,
                                time: chrono::Utc::now(),
                                source: slipway_logs::Source::Heroku,
                                dyno: "logplex".into(),
                                message: format!(
                                    "Error L11 (Tail buffer overflow): {n} messages dropped."
                                )
                                .into(),
                            };
                            t.format.write_line(&line, &mut out);
                        }
                        Err(broadcast::error::RecvError::Closed) => {
                            if out.is_empty() {
                                return None;
                            }
                            break;
                        }
                    }
                    taken += 1;
                    if taken < 4096 && out.len() < 256 * 1024 {
                        next = match t.rx.try_recv() {
                            Ok(l) => Some(Ok(l)),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Some(Err(broadcast::error::RecvError::Lagged(n)))
                            }
                            Err(_) => None,
                        };
                    }
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), t));
                }
            }
        });
        use futures_util::StreamExt;
        Body::from_stream(head.chain(live))
    } else {
        Body::from_stream(head)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
