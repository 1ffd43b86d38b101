//! The pages the router serves itself: no such app, application error, maintenance, and the
//! owner's replacements (`ERROR_PAGE_URL`, `MAINTENANCE_PAGE_URL`), shown in a full-window frame
//! as Heroku does so the address bar keeps the app's URL.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::RespBody;

pub(crate) const NO_SUCH_APP: &str = "<!DOCTYPE html><html><head><title>No such app</title></head><body>\
<h1>There is no app here</h1><p>No Slipway app is configured for this host name. Check the name, or \
create the app with <code>slipway apps:create</code> and add the name with <code>slipway domains:add</code>.</p></body></html>\n";
pub(crate) const MAINTENANCE: &str =
    "<!DOCTYPE html><html><head><title>Offline for Maintenance</title></head><body>\
<h1>Offline for maintenance</h1><p>This app is undergoing maintenance right now. Please check back \
later.</p></body></html>\n";
pub(crate) const APP_ERROR: &str = "<!DOCTYPE html><html><head><title>Application Error</title></head><body>\
<h1>Application error</h1><p>An error occurred in the application and your page could not be served. \
If you are the application owner, check your logs for details: <code>slipway logs --tail</code>.</p></body></html>\n";
const BAD_REQUEST: &str = "<!DOCTYPE html><html><head><title>Bad Request</title></head><body>\
<h1>Bad request</h1><p>The request line or a header line is longer than 8192 bytes, or the request \
is malformed.</p></body></html>\n";

fn escape(url: &str) -> String {
    url.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A page in a frame showing `url`.
fn framed(title: &str, url: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>html,body,iframe{{margin:0;padding:0;border:0;width:100%;height:100%;overflow:hidden}}</style>\
</head><body><iframe src=\"{}\"></iframe></body></html>\n",
        escape(url)
    )
}

pub(crate) fn html(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    resp
}

pub(crate) fn no_such_app() -> Response<RespBody> {
    html(StatusCode::NOT_FOUND, NO_SUCH_APP)
}

pub(crate) fn bad_request() -> Response<RespBody> {
    let mut r = html(StatusCode::BAD_REQUEST, BAD_REQUEST);
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub(crate) fn error(status: StatusCode, custom: Option<&str>) -> Response<RespBody> {
    match custom {
        Some(url) => html(status, framed("Application Error", url)),
        None => html(status, APP_ERROR),
    }
}

pub(crate) fn maintenance(status: StatusCode, custom: Option<&str>) -> Response<RespBody> {
    let mut r = match custom {
        Some(url) => html(status, framed("Offline for Maintenance", url)),
        None => html(status, MAINTENANCE),
    };
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("60"));
    r
}
