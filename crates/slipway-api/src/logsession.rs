//! Log sessions: `POST /apps/{app}/log-sessions` and the stream at its `logplex_url`.
//!
//! The stream is Server-Sent Events when the client asks for `text/event-stream` (each line an
//! event whose `id` resumes with `Last-Event-ID`), and plain `\n`-terminated text otherwise.
//! Without `tail` it sends the backlog and closes.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use slipway_logs::{parse_source, Filter, LogLine};
use slipway_types::{LogSession, LogSessionRequest};
use tokio::sync::broadcast;

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::handlers::ApiHost;
use crate::AppState;

/// Keep-alive comment interval on tails.
const KEEPALIVE: Duration = Duration::from_secs(15);

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
    let token = s.logs.create_session(
        &app.id,
        filter,
        req.lines.unwrap_or(100) as usize,
        req.tail.unwrap_or(false),
    );
    let now = chrono::Utc::now();
    let session = LogSession {
        id: uuid::Uuid::new_v4().to_string(),
        logplex_url: format!("http://{host}/log-sessions/{token}"),
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
        match self {
            Format::Sse => Bytes::from(format!("id: {}\ndata: {l}\n\n", l.seq)),
            Format::Plain => Bytes::from(format!("{l}\n")),
        }
    }
}

struct Tail {
    rx: broadcast::Receiver<LogLine>,
    filter: Filter,
    format: Format,
}

pub async fn stream(
    State(s): State<AppState>,
    Path(token): Path<String>,
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
    for l in &backlog {
        chunk.extend_from_slice(&format.line(l));
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
        let tail = Tail {
            rx,
            filter: session.filter,
            format,
        };
        let live = stream::unfold(tail, |mut t| async move {
            loop {
                match tokio::time::timeout(KEEPALIVE, t.rx.recv()).await {
                    Ok(Ok(line)) if t.filter.matches(&line) => {
                        let bytes = t.format.line(&line);
                        return Some((Ok(bytes), t));
                    }
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    Err(_) => {
                        let keepalive = match t.format {
                            Format::Sse => Bytes::from_static(b": keep-alive\n\n"),
                            // Plain-text readers get nothing: a blank line would be a log line.
                            Format::Plain => continue,
                        };
                        return Some((Ok(keepalive), t));
                    }
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
