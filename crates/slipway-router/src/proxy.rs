//! One request through the router: find the app, pick a dyno, forward, answer.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, LOCATION, SET_COOKIE, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use rand::Rng;
use slipway_types::WebStatus;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::body::{Finish, ReqBody, RespBody};
use crate::h1::{self, SendError};
use crate::logline::{Code, LogFields};
use crate::pool::{ConnectError, Dyno};
use crate::settings::{AppSettings, Balance};
use crate::table::AppRoute;
use crate::{page, valid_request_id, ConnInfo, Shared, BOOT_WAIT, MAX_LINE};

/// Session affinity cookie (Heroku's name).
pub const AFFINITY_COOKIE: &str = "heroku-session-affinity";

/// Headers that describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 6] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    UPGRADE,
];

/// Counts a request against a dyno until the guard goes, and, if the handler is dropped before
/// answering (the client went away), logs H27.
pub(crate) struct InFlight {
    pub shared: Arc<Shared>,
    pub app_id: Arc<str>,
    pub line: Option<LogFields>,
    pub started: Instant,
    pub dyno: Option<Arc<Dyno>>,
}

impl InFlight {
    pub(crate) fn line(&mut self) -> &mut LogFields {
        self.line.get_or_insert_with(LogFields::default)
    }

    pub(crate) fn count(&mut self, dyno: &Arc<Dyno>) {
        self.uncount();
        dyno.outstanding.fetch_add(1, Ordering::Relaxed);
        self.dyno = Some(dyno.clone());
    }

    pub(crate) fn uncount(&mut self) {
        if let Some(d) = self.dyno.take() {
            d.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Logs a failure and answers with its page.
    pub(crate) fn fail(&mut self, code: Code, settings: &AppSettings) -> Response<RespBody> {
        self.uncount();
        let mut line = self.line.take().unwrap_or_default();
        let status = code.status();
        line.status = status.as_u16();
        self.shared.log(&self.app_id, &line.error(code));
        match code {
            Code::H80 => page::maintenance(status, settings.maintenance_page_url.as_deref()),
            _ => page::error(status, settings.error_page_url.as_deref()),
        }
    }

    /// Hands the line (and the dyno count) over to the response body.
    pub(crate) fn disarm(&mut self) -> LogFields {
        self.dyno = None;
        self.line.take().unwrap_or_default()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.uncount();
        if let Some(mut line) = self.line.take() {
            line.status = 499;
            line.service = Some(self.started.elapsed());
            self.shared.log(&self.app_id, &line.error(Code::H27));
        }
    }
}

fn too_long<B>(req: &Request<B>) -> bool {
    let uri_len = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    uri_len + req.method().as_str().len() + 10 > MAX_LINE
        || req
            .headers()
            .iter()
            .any(|(n, v)| n.as_str().len() + v.len() + 2 > MAX_LINE)
}

/// The host asked for, lower case, without the port.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    let raw = match req.headers().get(HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
    Some(host_name(raw))
}

/// A `Host` value without its port, lower case.
pub(crate) fn host_name(raw: &str) -> String {
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(raw, |(h, _)| h),
        None => raw.split_once(':').map_or(raw, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

pub(crate) fn route_for(shared: &Shared, host: &str) -> Option<Arc<AppRoute>> {
    let base = shared.config.base_domain.as_str();
    if let Some(name) = host
        .strip_suffix(base)
        .and_then(|n| n.strip_suffix('.'))
        .filter(|n| !n.is_empty() && !n.contains('.'))
    {
        return shared.table.app(name);
    }
    shared.table.app_for_domain(host)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn request_id<B>(req: &Request<B>) -> String {
    request_id_from(req.headers().get("x-request-id").map(|v| v.as_bytes()))
}

/// The client's `X-Request-ID` if it follows the rules, else a new one.
pub(crate) fn request_id_from(given: Option<&[u8]>) -> String {
    match given.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(id) if valid_request_id(id) => id.to_string(),
        _ => new_request_id(),
    }
}

/// A random (version 4) UUID, lower case and hyphenated.
fn new_request_id() -> String {
    // One u128, not 16 bytes drawn one at a time.
    let bytes = rand::thread_rng().gen::<u128>().to_le_bytes();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

/// `X-Forwarded-For`: the client's list with its peer's address appended.
pub(crate) fn forwarded_for(given: Option<&[u8]>, peer: &str) -> String {
    match given.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer}"),
        _ => peer.to_string(),
    }
}

/// `Via`: the client's with the router appended.
pub(crate) fn via(given: Option<&[u8]>, h2: bool) -> std::borrow::Cow<'static, str> {
    let mine = if h2 { "2.0 slipway" } else { "1.1 slipway" };
    match given.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(prev) => format!("{prev}, {mine}").into(),
        None => mine.into(),
    }
}

/// The affinity key in the client's cookie, and the formation generation it was set for.
fn affinity_cookie(headers: &HeaderMap) -> Option<(u64, u32)> {
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for c in v.split(';') {
            let Some(val) = c
                .trim()
                .strip_prefix(AFFINITY_COOKIE)
                .and_then(|r| r.strip_prefix('='))
            else {
                continue;
            };
            let (k, g) = val.split_once('.')?;
            return Some((
                u64::from_str_radix(k, 16).ok()?,
                u32::from_str_radix(g, 16).ok()?,
            ));
        }
    }
    None
}

fn score(key: u64, dyno: &Dyno) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    dyno.name.hash(&mut h);
    h.finish()
}

/// Picks a dyno among those not yet tried: quarantined ones only if nothing else is left.
pub(crate) fn pick(route: &AppRoute, tried: &[usize], affinity: Option<u64>) -> Option<usize> {
    let n = route.dynos.len();
    let usable = |i: &usize| !tried.contains(i) && !route.dynos[*i].quarantined();
    // The common case, nothing tried and nothing quarantined, needs no list.
    let all_fresh = tried.is_empty() && route.dynos.iter().all(|d| !d.quarantined());
    let pool: Vec<usize> = if all_fresh {
        Vec::new()
    } else {
        let fresh: Vec<usize> = (0..n).filter(usable).collect();
        if fresh.is_empty() {
            (0..n).filter(|i| !tried.contains(i)).collect()
        } else {
            fresh
        }
    };
    let (len, at) = if all_fresh {
        (n, None)
    } else {
        (pool.len(), Some(&pool))
    };
    let index = |k: usize| at.map_or(k, |p| p[k]);
    if len == 0 {
        return None;
    }
    if let Some(key) = affinity {
        // Rendezvous hashing: a formation change moves only the clients it has to.
        return (0..len)
            .map(index)
            .max_by_key(|i| score(key, &route.dynos[*i]));
    }
    if len == 1 {
        return Some(index(0));
    }
    let mut rng = rand::thread_rng();
    match route.settings.balance {
        Balance::LeastOutstanding => {
            let a = rng.gen_range(0..len);
            let mut b = rng.gen_range(0..len - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (index(a), index(b));
            let load = |i: usize| route.dynos[i].outstanding.load(Ordering::Relaxed);
            Some(if load(b) < load(a) { b } else { a })
        }
        Balance::Random => Some(index(rng.gen_range(0..len))),
    }
}

/// What a failed connection to a dyno means: `Ok` with the code to log if no other dyno takes
/// the request (the dyno is put aside for a while), or `Err(H99)` when the platform failed.
pub(crate) fn connect_failed(dyno: &Dyno, error: ConnectError) -> Result<Code, Code> {
    match error {
        ConnectError::Refused => {
            dyno.quarantine();
            Ok(Code::H21)
        }
        ConnectError::Timeout => {
            dyno.quarantine();
            Ok(Code::H19)
        }
        ConnectError::Other(error) => {
            tracing::warn!(dyno = %dyno.name, %error, "Cannot reach a dyno.");
            Err(Code::H99)
        }
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && req
            .headers()
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Removes hop-by-hop headers, and those the `Connection` header names (never the request's
/// framing or its Host: see [`crate::h1::Name::nameable`]).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| crate::h1::Name::of(n.as_str()).nameable())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// How a request goes to the dyno.
enum Via {
    H1(h1::Conn),
    Upgrade(http1::SendRequest<ReqBody>),
    H2(http2::SendRequest<ReqBody>),
}

/// Where the response came from.
enum From {
    Hyper(Response<Incoming>, Instant),
    H1(h1::BodyReader),
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    info: &ConnInfo,
) -> Response<RespBody> {
    let received = Instant::now();
    // Two Host headers: the dyno might read the other one than the router routed by.
    if too_long(&req) || req.headers().get_all(HOST).iter().nth(1).is_some() {
        return page::bad_request();
    }
    let Some(host) = host_of(&req) else {
        return page::no_such_app();
    };
    let Some(mut route) = route_for(&shared, &host) else {
        return page::no_such_app();
    };
    let settings = route.settings.clone();
    let start_ms = now_ms();
    let request_id = request_id(&req);
    let fwd = forwarded_for(
        req.headers().get("x-forwarded-for").map(|v| v.as_bytes()),
        &info.ip,
    );
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut flight = InFlight {
        shared: shared.clone(),
        app_id: route.app_id.clone(),
        line: Some(LogFields {
            method: req.method().clone(),
            path,
            host: host.into(),
            request_id,
            fwd,
            protocol: if info.https { "https" } else { "http" },
            ..LogFields::default()
        }),
        started: received,
        dyno: None,
    };
    if settings.maintenance {
        return flight.fail(Code::H80, &settings);
    }
    if settings.https_redirect && !info.https {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let status = if matches!(*req.method(), Method::GET | Method::HEAD) {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::PERMANENT_REDIRECT
        };
        let mut r = page::html(status, "");
        let host = &flight.line().host;
        if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{pq}")) {
            r.headers_mut().insert(LOCATION, v);
        }
        flight.line = None;
        return r;
    }
    let (response_timeout, idle) = settings.timeouts.for_path(flight.line().path.as_str());
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    // The request as the dyno gets it.
    let to_h2 = settings.http2_to_dyno && !upgrade;
    let (mut parts, body) = req.into_parts();
    let client_h2 = parts.version == Version::HTTP_2;
    let start = start_ms.to_string();
    let via = via(
        parts.headers.get(http::header::VIA).map(|v| v.as_bytes()),
        client_h2,
    );
    let fast = !to_h2 && !upgrade;
    let is_head = parts.method == Method::HEAD;
    let has_body = !body.is_end_stream();
    // A body of unknown length goes chunked.
    let chunked = has_body && !to_h2 && !parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let head = {
        let line = flight.line.as_ref();
        let extra = h1::Extra {
            request_id: line.map_or("", |l| l.request_id.as_str()),
            fwd: line.map_or("", |l| l.fwd.as_str()),
            proto: if info.https { "https" } else { "http" },
            port: &info.port_str,
            start: &start,
            via: &via,
            host: line.map_or("", |l| &*l.host),
            chunked,
        };
        if fast {
            // The hot path writes the dyno's request head straight from the client's headers.
            Some(h1::encode_head(
                &parts.method,
                parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                &parts.headers,
                &extra,
            ))
        } else {
            let headers = &mut parts.headers;
            if !upgrade {
                // gRPC needs `te: trailers`, the one value HTTP/2 allows.
                let trailers = headers
                    .get(http::header::TE)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
                strip_hop_by_hop(headers);
                if trailers && to_h2 {
                    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
                }
            } else {
                for n in ["keep-alive", "proxy-connection"] {
                    headers.remove(n);
                }
            }
            extra.apply(headers);
            None
        }
    };
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let host: Arc<str> = if fast {
        "".into()
    } else {
        flight.line().host.clone()
    };
    let headers = &mut parts.headers;
    if to_h2 {
        headers.remove(HOST);
        headers.remove(http::header::TRANSFER_ENCODING);
        let mut u = http::uri::Parts::default();
        u.scheme = Some(Scheme::HTTP);
        u.authority = Authority::try_from(&*host).ok();
        u.path_and_query = Some(pq);
        parts.version = Version::HTTP_2;
        parts.uri = match Uri::from_parts(u) {
            Ok(u) => u,
            Err(_) => return page::bad_request(),
        };
    } else if !fast {
        if !headers.contains_key(HOST) {
            if let Ok(v) = HeaderValue::from_str(&host) {
                headers.insert(HOST, v);
            }
        }
        let mut u = http::uri::Parts::default();
        u.path_and_query = Some(pq);
        parts.version = Version::HTTP_11;
        parts.uri = match Uri::from_parts(u) {
            Ok(u) => u,
            Err(_) => return page::bad_request(),
        };
    }
    let body = ReqBody::new(body, idle);
    let client_idle = body.client_idle.clone();
    let mut req = Some(Request::from_parts(parts, body));

    // Affinity: the client's key, and whether its cookie must be (re)set.
    let cookie = settings
        .session_affinity
        .then(|| affinity_cookie(req.as_ref().map_or(&HeaderMap::new(), |r| r.headers())))
        .map(|c| match c {
            Some((key, gen)) => (key, Some(gen)),
            None => (rand::thread_rng().gen(), None),
        });

    let mut tried: Vec<usize> = Vec::new();
    let mut last: Option<Code> = None;
    let mut fresh_connection = false;
    let boot_deadline = received + BOOT_WAIT;
    loop {
        if route.dynos.is_empty() {
            match route.web {
                WebStatus::Starting => {
                    // Wait for a dyno to come up, or for the formation to change.
                    let changed = shared.table.changed.notified();
                    let current = route_for(&shared, &flight.line().host);
                    match current {
                        Some(r) if !r.dynos.is_empty() || r.web != WebStatus::Starting => {
                            route = r;
                            continue;
                        }
                        Some(_) => {}
                        None => return flight.fail(Code::H14, &settings),
                    }
                    if tokio::time::timeout_at(boot_deadline, changed)
                        .await
                        .is_err()
                    {
                        return flight.fail(Code::H20, &settings);
                    }
                    let current = route_for(&shared, &flight.line().host);
                    match current {
                        Some(r) => route = r,
                        None => return flight.fail(Code::H14, &settings),
                    }
                    continue;
                }
                WebStatus::Crashed => return flight.fail(Code::H10, &settings),
                _ => return flight.fail(last.unwrap_or(Code::H14), &settings),
            }
        }
        let Some(i) = pick(&route, &tried, cookie.map(|c| c.0)) else {
            return flight.fail(last.unwrap_or(Code::H21), &settings);
        };
        let dyno = route.dynos[i].clone();
        flight.line().dyno = dyno.name.clone();

        let via = if to_h2 {
            dyno.h2().await.map(Via::H2)
        } else if upgrade {
            dyno.connect_upgradable().await.map(Via::Upgrade)
        } else {
            match (!fresh_connection).then(|| dyno.idle()).flatten() {
                Some(c) => Ok(Via::H1(c)),
                None => dyno.connect_h1().await.map(Via::H1),
            }
        };
        let via = match via {
            Ok(v) => v,
            Err(e) => match connect_failed(&dyno, e) {
                Ok(code) => {
                    tried.push(i);
                    last = Some(code);
                    continue;
                }
                Err(code) => return flight.fail(code, &settings),
            },
        };
        flight.count(&dyno);
        let connected = Instant::now();
        flight.line().connect = Some(connected.duration_since(received));
        let Some(mut request) = req.take() else {
            return flight.fail(Code::H99, &settings);
        };
        let client_failed = |client_idle: &AtomicBool| {
            if client_idle.load(Ordering::Relaxed) {
                Code::H28
            } else {
                Code::H27
            }
        };
        let (status, mut out_headers, from) = match via {
            Via::H1(mut conn) => {
                let head = head.as_deref().unwrap_or_default();
                let body = has_body.then(|| (request.body_mut(), chunked));
                match h1::write_request(&mut conn, head, body).await {
                    Ok(()) => {}
                    Err(SendError::NotSent) => {
                        // A kept-alive connection the dyno had closed took nothing: again, on a
                        // new connection.
                        req = Some(request);
                        if fresh_connection {
                            tried.push(i);
                        }
                        fresh_connection = true;
                        flight.uncount();
                        continue;
                    }
                    Err(SendError::Body) => {
                        let code = client_failed(&client_idle);
                        return flight.fail(code, &settings);
                    }
                    Err(_) => return flight.fail(Code::H13, &settings),
                }
                let sent = if has_body { Instant::now() } else { connected };
                match tokio::time::timeout_at(
                    sent + response_timeout,
                    h1::read_head(&mut conn, is_head),
                )
                .await
                {
                    Err(_) => {
                        flight.line().service = Some(response_timeout);
                        return flight.fail(Code::H12, &settings);
                    }
                    Ok(Err(SendError::Stale)) if !has_body && !fresh_connection => {
                        req = Some(request);
                        fresh_connection = true;
                        flight.uncount();
                        continue;
                    }
                    Ok(Err(SendError::Invalid)) => {
                        flight.line().service = Some(sent.elapsed());
                        return flight.fail(Code::H17, &settings);
                    }
                    Ok(Err(_)) => {
                        flight.line().service = Some(sent.elapsed());
                        return flight.fail(Code::H13, &settings);
                    }
                    Ok(Ok(mut resp)) => {
                        flight.line().service = Some(sent.elapsed());
                        let headers = std::mem::take(&mut resp.headers);
                        (resp.status, headers, From::H1(resp.into_body(conn)))
                    }
                }
            }
            via => {
                let sent = Instant::now();
                let result = match via {
                    Via::H2(mut s) => {
                        tokio::time::timeout(response_timeout, s.try_send_request(request)).await
                    }
                    Via::Upgrade(mut s) => {
                        tokio::time::timeout(response_timeout, s.try_send_request(request)).await
                    }
                    Via::H1(_) => unreachable!("handled above"),
                };
                match result {
                    Err(_) => {
                        flight.line().service = Some(response_timeout);
                        return flight.fail(Code::H12, &settings);
                    }
                    Ok(Err(mut e)) => match e.take_message() {
                        Some(back) if !fresh_connection => {
                            req = Some(back);
                            fresh_connection = true;
                            flight.uncount();
                            continue;
                        }
                        _ => {
                            flight.line().service = Some(sent.elapsed());
                            let code = if client_idle.load(Ordering::Relaxed) {
                                Code::H28
                            } else {
                                Code::H13
                            };
                            return flight.fail(code, &settings);
                        }
                    },
                    Ok(Ok(mut resp)) => {
                        flight.line().service = Some(sent.elapsed());
                        let headers = std::mem::take(resp.headers_mut());
                        (resp.status(), headers, From::Hyper(resp, sent))
                    }
                }
            }
        };
        flight.line().status = status.as_u16();
        let generation = route.generation;
        if let Some((key, gen)) = cookie {
            if gen != Some(generation) {
                let c = format!(
                    "{AFFINITY_COOKIE}={key:016x}.{generation:08x}; Max-Age=86400; Path=/; HttpOnly"
                );
                if let Ok(v) = HeaderValue::from_str(&c) {
                    out_headers.append(SET_COOKIE, v);
                }
            }
        }
        let mut finish = || {
            Finish::new(
                shared.clone(),
                route.app_id.clone(),
                flight.disarm(),
                dyno.clone(),
                Some(client_idle.clone()),
            )
        };
        return match from {
            From::Hyper(mut resp, sent) if status == StatusCode::SWITCHING_PROTOCOLS && upgrade => {
                let dyno_upgrade = hyper::upgrade::on(&mut resp);
                let line = flight.disarm();
                let mut r = Response::new(RespBody::empty());
                *r.status_mut() = status;
                *r.headers_mut() = out_headers;
                if let Some(client_upgrade) = client_upgrade {
                    tokio::spawn(tunnel(
                        shared.clone(),
                        route.app_id.clone(),
                        line,
                        dyno.clone(),
                        client_upgrade,
                        dyno_upgrade,
                        idle,
                        sent,
                    ));
                }
                r
            }
            From::Hyper(resp, _) => {
                strip_hop_by_hop(&mut out_headers);
                out_headers.remove(http::header::TRANSFER_ENCODING);
                let mut r = Response::new(RespBody::proxied(resp.into_body(), idle, finish()));
                *r.status_mut() = status;
                *r.headers_mut() = out_headers;
                r
            }
            From::H1(reader) => {
                let mut r = Response::new(RespBody::proxied_h1(reader, idle, finish()));
                *r.status_mut() = status;
                *r.headers_mut() = out_headers;
                r
            }
        };
    }
}

/// Copies one direction until end of file; `Err(())` if nothing came for `idle`.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    idle: Duration,
) -> Result<u64, u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = match tokio::time::timeout(idle, from.read(&mut buf)).await {
            Err(_) => return Err(total),
            Ok(Ok(0)) | Ok(Err(_)) => {
                let _ = to.shutdown().await;
                return Ok(total);
            }
            Ok(Ok(n)) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// A WebSocket (or other upgraded) session: bytes both ways, each way with its own idle window
/// (H28 for the client, H15 for the dyno); one log line when it ends, `status=101` and the whole
/// session as `service`.
#[allow(clippy::too_many_arguments)]
async fn tunnel(
    shared: Arc<Shared>,
    app_id: Arc<str>,
    mut line: LogFields,
    dyno: Arc<Dyno>,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
    sent: Instant,
) {
    let done = |line: &mut LogFields, bytes: u64, code: Option<Code>| {
        dyno.outstanding.fetch_sub(1, Ordering::Relaxed);
        line.service = Some(sent.elapsed());
        line.bytes = Some(bytes);
        match code {
            None => shared.log(&app_id, &line.info()),
            Some(c) => shared.log(&app_id, &line.error(c)),
        }
    };
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(_) => return done(&mut line, 0, Some(Code::H18Client)),
    };
    let (cr, cw) = tokio::io::split(hyper_util::rt::TokioIo::new(client));
    let (ur, uw) = tokio::io::split(hyper_util::rt::TokioIo::new(upstream));
    let up = pump(cr, uw, idle);
    let down = pump(ur, cw, idle);
    tokio::pin!(up, down);
    let (mut up_done, mut down_bytes) = (None::<Result<u64, u64>>, None::<Result<u64, u64>>);
    let code = loop {
        tokio::select! {
            r = &mut up, if up_done.is_none() => {
                if r.is_err() { break Some(Code::H28); }
                up_done = Some(r);
            }
            r = &mut down, if down_bytes.is_none() => {
                if let Err(b) = r { down_bytes = Some(Ok(b)); break Some(Code::H15); }
                down_bytes = Some(r);
            }
        }
        if up_done.is_some() && down_bytes.is_some() {
            break None;
        }
    };
    let bytes = match down_bytes {
        Some(Ok(b)) | Some(Err(b)) => b,
        None => 0,
    };
    done(&mut line, bytes, code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_v4_uuids() {
        let id = new_request_id();
        let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.hyphenated().to_string(), id);
        assert!(valid_request_id(&id));
        assert_ne!(new_request_id(), id);
    }

    #[test]
    fn host_without_port() {
        let req = |h: &str| Request::builder().header(HOST, h).body(()).unwrap();
        assert_eq!(
            host_of(&req("Demo.Example.com:8080")).as_deref(),
            Some("demo.example.com")
        );
        assert_eq!(
            host_of(&req("demo.localhost")).as_deref(),
            Some("demo.localhost")
        );
    }

    #[test]
    fn affinity_cookie_parses() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=b; heroku-session-affinity=00000000000000ff.0000000a; c=d"),
        );
        assert_eq!(affinity_cookie(&h), Some((255, 10)));
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("heroku-session-affinity=zz"),
        );
        assert_eq!(affinity_cookie(&h), None);
    }

    #[test]
    fn long_lines_refused() {
        let ok = Request::builder()
            .uri("/".to_string() + &"a".repeat(8000))
            .body(())
            .unwrap();
        assert!(!too_long(&ok));
        let long = Request::builder()
            .uri("/".to_string() + &"a".repeat(8200))
            .body(())
            .unwrap();
        assert!(too_long(&long));
        let header = Request::builder()
            .header("x-big", "v".repeat(8191))
            .body(())
            .unwrap();
        assert!(too_long(&header));
    }
}
