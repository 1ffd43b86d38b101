//! Dataclips: saved read-only queries on an app's Postgres add-on, and their results behind a
//! secret link.
//!
//! Managed by the app's owner under `/apps/{app}/dataclips[/{clip}[/actions/{rotate|revoke}|
//! /shares/{email}|/result]]`; `/dataclips` lists those shared with the caller. The link,
//! `/dataclips/{token}` (an HTML table), `.csv` (plain, for spreadsheets' `IMPORTDATA`) and
//! `.json`, works for anyone when the clip is shared with everyone holding it, else for the
//! accounts it is shared with (Basic or Bearer auth with their API key). Only the 256-bit token's
//! hash is stored: the link is shown when it is made, and rotating or revoking it ends the old
//! one at once. Runs through the link are limited per client IP address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use slipway_addons::dataclips::ClipResult;
use slipway_store::{AccountRow, AppRow, DataclipRow, NewDataclip};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::handlers::ApiHost;
use crate::{ApiConn, AppState};

/// Runs allowed per client IP address in [`RATE_WINDOW`].
const RATE_LIMIT: usize = 30;
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Addresses followed at once; past this, requests from new addresses are refused until old
/// ones age out.
const RATE_ADDRESSES: usize = 50_000;

/// Requests per client address over the last minute. IPv6 clients count per /64, the block one
/// client usually has.
#[derive(Default)]
pub struct RateLimiter {
    hits: Mutex<Hits>,
}

#[derive(Default)]
struct Hits {
    by_addr: HashMap<IpAddr, VecDeque<Instant>>,
    pruned: Option<Instant>,
}

fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(s.into())
        }
        v4 => v4,
    }
}

impl RateLimiter {
    /// Counts a request from `ip`; when over the limit, how long until the next is allowed.
    pub fn hit(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let ip = bucket(ip);
        let mut guard = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        let hits = &mut *guard;
        // Forget quiet addresses, at most once a second.
        if hits.by_addr.len() > 1_000
            && hits.pruned.is_none_or(|t| now - t > Duration::from_secs(1))
        {
            hits.by_addr
                .retain(|_, q| q.back().is_some_and(|t| now - *t < RATE_WINDOW));
            hits.pruned = Some(now);
        }
        if !hits.by_addr.contains_key(&ip) && hits.by_addr.len() >= RATE_ADDRESSES {
            return Err(RATE_WINDOW);
        }
        let q = hits.by_addr.entry(ip).or_default();
        while q.front().is_some_and(|t| now - *t >= RATE_WINDOW) {
            q.pop_front();
        }
        if q.len() >= RATE_LIMIT {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(RATE_WINDOW.saturating_sub(now - oldest));
        }
        q.push_back(now);
        Ok(())
    }
}

fn client_ip(conn: &Option<Extension<ConnectInfo<ApiConn>>>) -> IpAddr {
    conn.as_ref()
        .and_then(|Extension(ConnectInfo(c))| c.peer_ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn rate_limited(wait: Duration) -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit",
        format!(
            "Dataclips allow {RATE_LIMIT} requests a minute from one address; try again in {} s.",
            wait.as_secs().max(1)
        ),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn clip_json(d: &DataclipRow, url: Option<String>) -> Value {
    json!({
        "id": d.id,
        "title": d.title,
        "sql": d.sql,
        "app": {"id": d.app_id, "name": d.app_name},
        "addon": {"id": d.addon_id, "name": d.addon_name},
        "database": d.source,
        "creator": {"id": d.creator_id, "email": d.creator_email},
        "everyone": d.everyone,
        "link": d.link,
        "shared_with": d.shared_with,
        "url": url,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    })
}

fn result_json(title: &str, r: &ClipResult) -> Value {
    json!({
        "title": title,
        "fields": r.fields,
        "values": r.values,
        "row_count": r.values.len(),
        "truncated": r.truncated,
        "source": r.source,
        "ran_at": chrono::Utc::now(),
        "duration_ms": r.duration_ms,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "dataclip",
        "Couldn't find that dataclip. See slipway dataclips.",
    )
}

fn check_title(title: &str) -> ApiResult<&str> {
    let t = title.trim();
    if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "A dataclip needs a title of 1 to 200 characters, on one line.",
        ));
    }
    Ok(t)
}

fn check_sql(sql: &str) -> ApiResult<&str> {
    let q = sql.trim();
    if q.is_empty() {
        return Err(ApiError::invalid("A dataclip needs a query (--sql)."));
    }
    if q.len() > 100_000 {
        return Err(ApiError::invalid(
            "A dataclip's query may be at most 100,000 characters.",
        ));
    }
    Ok(q)
}

/// The link of a dataclip, with a new token.
fn link(host: &str, token: &str) -> String {
    format!("{host}/dataclips/{token}")
}

impl AppState {
    async fn owned_clip(
        &self,
        who: &AccountRow,
        app: &str,
        clip: &str,
    ) -> ApiResult<(AppRow, DataclipRow)> {
        let app = self.load_app(who, app).await?;
        let d = self
            .store
            .dataclip(&app.id, clip.trim())
            .await?
            .ok_or_else(not_found)?;
        Ok((app, d))
    }
}

/// `GET /apps/{app}/dataclips`.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let app = s.load_app(&who, &app).await?;
    let clips = s.store.dataclips_of_app(&app.id).await?;
    Ok(Json(clips.iter().map(|d| clip_json(d, None)).collect()))
}

/// `GET /dataclips`: the dataclips shared with the caller.
pub async fn shared_with_me(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<Json<Vec<Value>>> {
    let clips = s.store.dataclips_shared_with(&who.id).await?;
    Ok(Json(clips.iter().map(|d| clip_json(d, None)).collect()))
}

#[derive(Deserialize)]
struct CreateBody {
    title: String,
    sql: String,
    #[serde(default)]
    database: Option<String>,
}

/// `POST /apps/{app}/dataclips` with `{"title", "sql", "database"?}`: checks the query parses as
/// one statement on the database, and answers with the link (shown this once).
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let b: CreateBody = parse_json(&body)?;
    let app = s.load_app(&who, &app).await?;
    let title = check_title(&b.title)?;
    let sql = check_sql(&b.sql)?;
    let (source, addon) = s.app_database(&app, b.database.as_deref()).await?;
    s.addons()?.check_clip(&addon, sql).await?;
    let token = new_token();
    let d = s
        .store
        .create_dataclip(&NewDataclip {
            app_id: &app.id,
            addon_id: &addon.id,
            source: &source,
            title,
            sql,
            creator_id: &who.id,
            token_hash: &hash(&token),
        })
        .await?;
    s.api_log(
        &app.id,
        &format!("Dataclip {} created by {}", d.title, who.email),
    );
    Ok((
        StatusCode::CREATED,
        Json(clip_json(&d, Some(link(&host, &token)))),
    )
        .into_response())
}

/// `GET /apps/{app}/dataclips/{clip}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, d) = s.owned_clip(&who, &app, &clip).await?;
    Ok(Json(clip_json(&d, None)))
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    everyone: Option<bool>,
}

/// `PATCH /apps/{app}/dataclips/{clip}` with any of `{"title", "sql", "everyone"}`.
pub async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let b: UpdateBody = parse_json(&body)?;
    let (app, d) = s.owned_clip(&who, &app, &clip).await?;
    let title = b.title.as_deref().map(check_title).transpose()?;
    let sql = b.sql.as_deref().map(check_sql).transpose()?;
    if let Some(q) = sql {
        let addon = clip_addon(&s, &d).await?;
        s.addons()?.check_clip(&addon, q).await?;
    }
    s.store
        .update_dataclip(&d.id, title, sql, b.everyone, None)
        .await?;
    if let Some(everyone) = b.everyone {
        s.api_log(
            &app.id,
            &format!(
                "Dataclip {} {} by {}",
                d.title,
                if everyone {
                    "shared with everyone holding its link"
                } else {
                    "no longer shared with everyone holding its link"
                },
                who.email
            ),
        );
    }
    let d = s
        .store
        .dataclip(&app.id, &d.id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(clip_json(&d, None)))
}

/// `DELETE /apps/{app}/dataclips/{clip}`.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (app, d) = s.owned_clip(&who, &app, &clip).await?;
    s.store.delete_dataclip(&d.id).await?;
    s.api_log(
        &app.id,
        &format!("Dataclip {} destroyed by {}", d.title, who.email),
    );
    Ok(Json(clip_json(&d, None)))
}

/// `POST /apps/{app}/dataclips/{clip}/actions/rotate`: a new link; the old one fails at once.
pub async fn rotate(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path((app, clip)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (app, d) = s.owned_clip(&who, &app, &clip).await?;
    let token = new_token();
    s.store
        .update_dataclip(&d.id, None, None, None, Some(Some(&hash(&token))))
        .await?;
    s.api_log(
        &app.id,
        &format!("Dataclip {} link rotated by {}", d.title, who.email),
    );
    let d = s
        .store
        .dataclip(&app.id, &d.id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(clip_json(&d, Some(link(&host, &token)))))
}

/// `POST /apps/{app}/dataclips/{clip}/actions/revoke`: no link works any more.
pub async fn revoke(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (app, d) = s.owned_clip(&who, &app, &clip).await?;
    s.store
        .update_dataclip(&d.id, None, None, None, Some(None))
        .await?;
    s.api_log(
        &app.id,
        &format!("Dataclip {} link revoked by {}", d.title, who.email),
    );
    let d = s
        .store
        .dataclip(&app.id, &d.id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(clip_json(&d, None)))
}

async fn share_target(s: &AppState, email: &str) -> ApiResult<AccountRow> {
    s.store
        .account_by_email(email.trim())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "account",
                format!(
                    "There is no account {email} on this server. The server's admin can add one \
                     with slipway accounts:add."
                ),
            )
        })
}

/// `PUT /apps/{app}/dataclips/{clip}/shares/{email}`.
pub async fn share(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip, email)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    set_share(&s, &who, &app, &clip, &email, true).await
}

/// `DELETE /apps/{app}/dataclips/{clip}/shares/{email}`.
pub async fn unshare(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip, email)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    set_share(&s, &who, &app, &clip, &email, false).await
}

async fn set_share(
    s: &AppState,
    who: &AccountRow,
    app: &str,
    clip: &str,
    email: &str,
    shared: bool,
) -> ApiResult<Json<Value>> {
    let (app, d) = s.owned_clip(who, app, clip).await?;
    let account = share_target(s, email).await?;
    if shared {
        s.store.share_dataclip(&d.id, &account.id).await?;
    } else {
        s.store.unshare_dataclip(&d.id, &account.id).await?;
    }
    s.api_log(
        &app.id,
        &format!(
            "Dataclip {} {} {} by {}",
            d.title,
            if shared {
                "shared with"
            } else {
                "no longer shared with"
            },
            account.email,
            who.email
        ),
    );
    let d = s
        .store
        .dataclip(&app.id, &d.id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(clip_json(&d, None)))
}

/// The database a clip reads, while it is still attached to the clip's app: a detached
/// database is no longer the app's to read.
async fn clip_addon(s: &AppState, d: &DataclipRow) -> ApiResult<slipway_store::AddonRow> {
    let attached = s
        .store
        .attachments_of_app(&d.app_id)
        .await?
        .iter()
        .any(|a| a.addon_id == d.addon_id);
    if !attached {
        return Err(ApiError::not_found(
            "add_on",
            format!(
                "{} is no longer attached to {}; this dataclip cannot run. Destroy it, or \
                 attach the database again.",
                d.addon_name, d.app_name
            ),
        ));
    }
    s.store.addon(&d.addon_id).await?.ok_or_else(not_found)
}

async fn run(s: &AppState, d: &DataclipRow) -> ApiResult<ClipResult> {
    let addon = clip_addon(s, d).await?;
    Ok(s.addons()?.run_clip(&addon, &d.sql).await?)
}

/// `GET /apps/{app}/dataclips/{clip}/result`: runs it now, for the app's people (who are
/// known, so not rate limited; the clip role's connection limit bounds what they can load).
pub async fn result(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, clip)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, d) = s.owned_clip(&who, &app, &clip).await?;
    let r = run(&s, &d).await?;
    Ok(Json(result_json(&d.title, &r)).into_response())
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Html,
    Csv,
    Json,
}

/// Headers every answer through a link carries: never cached, never passed on as a referrer.
fn private(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /dataclips/{token}[.csv|.json]`: the result, to whoever the clip is shared with.
pub async fn by_link(
    State(s): State<AppState>,
    conn: Option<Extension<ConnectInfo<ApiConn>>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let (token, format) = if let Some(t) = file.strip_suffix(".csv") {
        (t, Format::Csv)
    } else if let Some(t) = file.strip_suffix(".json") {
        (t, Format::Json)
    } else {
        (file.as_str(), Format::Html)
    };
    // Guesses are counted too.
    if let Err(wait) = s.clip_limiter.hit(client_ip(&conn)) {
        return private(rate_limited(wait));
    }
    let answer = async {
        let d = s
            .store
            .dataclip_for_link(&hash(token))
            .await?
            .ok_or_else(|| {
                ApiError::not_found(
                    "dataclip",
                    "This dataclip link does not exist, or was revoked or replaced. Ask the \
                     clip's owner for its current link.",
                )
            })?;
        if !d.everyone {
            let who = crate::auth::account_of(&s, &headers).await?;
            let allowed = match s.store.app(&d.app_id).await? {
                Some(app) => s.may_use(&who, &app).await?,
                None => false,
            } || d.shared_with.iter().any(|e| e == &who.email);
            if !allowed {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "This dataclip is not shared with {}. Ask its owner to share it with you.",
                        who.email
                    ),
                ));
            }
        }
        let r = run(&s, &d).await?;
        Ok::<_, ApiError>((d, r))
    }
    .await;
    let resp = match (answer, format) {
        (Ok((d, r)), Format::Json) => Json(result_json(&d.title, &r)).into_response(),
        (Ok((d, r)), Format::Csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"{}.csv\"", file_name(&d.title)),
                ),
            ],
            csv(&r),
        )
            .into_response(),
        (Ok((d, r)), Format::Html) => {
            html_page(StatusCode::OK, &d.title, &table_html(&d.title, token, &r))
        }
        (Err(e), Format::Html) if e.status != StatusCode::UNAUTHORIZED => {
            let title = if e.status == StatusCode::NOT_FOUND {
                "Dataclip not found"
            } else {
                "Dataclip error"
            };
            html_page(
                e.status,
                title,
                &format!(
                    "<h1>{title}</h1><p class=\"error\">{}</p>",
                    escape(&e.message)
                ),
            )
        }
        (Err(e), _) => e.into_response(),
    };
    private(resp)
}

/// A title as a file name: letters, digits, `-` and `_`.
fn file_name(title: &str) -> String {
    let s: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "dataclip".into()
    } else {
        s
    }
}

/// RFC 4180: values with a comma, quote or line break are quoted; NULL is empty.
fn csv(r: &ClipResult) -> String {
    fn field(out: &mut String, v: &str) {
        if v.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(v);
        }
    }
    let mut out = String::new();
    for (i, f) in r.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, f);
    }
    out.push_str("\r\n");
    for row in &r.values {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, v.as_deref().unwrap_or(""));
        }
        out.push_str("\r\n");
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table_html(title: &str, token: &str, r: &ClipResult) -> String {
    let mut out = format!(
        "<h1>{}</h1>\n<p>{} row{}{} &middot; ran on {} in {} ms &middot; \
         <a href=\"{token}.csv\">CSV</a> &middot; <a href=\"{token}.json\">JSON</a></p>\n",
        escape(title),
        r.values.len(),
        if r.values.len() == 1 { "" } else { "s" },
        if r.truncated {
            " (truncated: only the first rows are shown)"
        } else {
            ""
        },
        escape(&r.source),
        r.duration_ms,
    );
    out.push_str("<table>\n<thead><tr>");
    for f in &r.fields {
        out.push_str(&format!("<th>{}</th>", escape(f)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &r.values {
        out.push_str("<tr>");
        for v in row {
            match v {
                Some(v) => out.push_str(&format!("<td>{}</td>", escape(v))),
                None => out.push_str("<td class=\"null\">NULL</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"robots\" content=\"noindex\"><title>{} &middot; Slipway dataclip</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:.3em .6em;\
         text-align:left;vertical-align:top;white-space:pre-wrap}}th{{background:#f3f3f6}}\
         td.null{{color:#999;font-style:italic}}.error{{color:#a00}}</style></head>\n\
         <body>\n{body}</body></html>\n",
        escape(title)
    );
    let mut resp = (status, page).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it_and_nulls_are_empty() {
        let r = ClipResult {
            fields: vec!["id".into(), "note".into()],
            values: vec![
                vec![Some("1".into()), Some("a, \"b\"\nc".into())],
                vec![Some("2".into()), None],
            ],
            truncated: false,
            source: "x".into(),
            duration_ms: 0,
        };
        assert_eq!(csv(&r), "id,note\r\n1,\"a, \"\"b\"\"\nc\"\r\n2,\r\n");
    }

    #[test]
    fn the_limit_is_per_address_and_says_when_to_come_back() {
        let l = RateLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..RATE_LIMIT {
            assert!(l.hit(a).is_ok());
        }
        let wait = l.hit(a).unwrap_err();
        assert!(wait <= RATE_WINDOW && wait > Duration::from_secs(50));
        assert!(l.hit(b).is_ok());
        // One IPv6 client, many addresses in its /64: one count.
        let v6 =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        for i in 0..RATE_LIMIT as u16 {
            assert!(l.hit(v6(i)).is_ok());
        }
        assert!(l.hit(v6(999)).is_err());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
        assert_eq!(file_name("Active users/2026"), "Active-users-2026");
    }
}
