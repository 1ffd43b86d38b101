//! A small Platform API v3 client: sends the Heroku headers, follows `Next-Range` on lists, and
//! turns transport failures and `{"id","message"}` error bodies into one-line errors.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{ACCEPT, RANGE};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The `Accept` header of Platform API v3.
pub const ACCEPT_V3: &str = "application/vnd.heroku+json; version=3";

/// A client bound to one API base URL and key.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    /// Headers sent with every request besides the standard ones (`Accept-Expansion`).
    extra: Vec<(&'static str, String)>,
    /// How long a request may take in all; none by default (only connecting is bounded).
    timeout: Option<Duration>,
}

/// A non-2xx answer: the status and the server's `{"id","message"}`. Displays as the message, so
/// it reaches the user as one line; callers downcast it to react to a status (a 404 that a
/// fallback lookup can recover from).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// The body's `id` (`not_found`, `confirmation_required`...), when it had one.
    pub id: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Whether `e` is the API's answer with this status.
pub fn is_status(e: &anyhow::Error, status: StatusCode) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == status)
}

impl Api {
    /// A client for `base` (an `http://` URL) that authenticates with `key` when given.
    pub fn new(base: &str, key: Option<&str>) -> Result<Api> {
        if base.starts_with("https://") {
            bail!(
                "{base} uses https, which this CLI does not speak. Point SLIPWAY_API_URL at an \
                 http:// address (for a remote server, an SSH tunnel to its API port)."
            );
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("slipway-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("Cannot set up the HTTP client")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.map(str::to_owned),
            extra: Vec::new(),
            timeout: None,
        })
    }

    /// The same client, also sending `Accept-Expansion: what` (e.g. `plan` or
    /// `addon_service,plan`), which asks for full nested objects instead of `{id, name}` refs.
    pub fn expanding(&self, what: &str) -> Api {
        let mut api = self.clone();
        api.extra.retain(|(k, _)| *k != "Accept-Expansion");
        api.extra.push(("Accept-Expansion", what.to_owned()));
        api
    }

    /// The same client, giving up on a request (and its answer) after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Api {
        let mut api = self.clone();
        api.timeout = Some(timeout);
        api
    }

    /// Sends one request and returns the response when its status is 2xx.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        range: Option<&str>,
    ) -> Result<Response> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(ACCEPT, ACCEPT_V3);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(range) = range {
            req = req.header(RANGE, range);
        }
        for (name, value) in &self.extra {
            req = req.header(*name, value);
        }
        if let Some(timeout) = self.timeout {
            req = req.timeout(timeout);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        check_status(resp).await
    }

    /// Sends a request and parses the answer as JSON (`null` when the body is empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let resp = self.send(method.clone(), path, body, None).await?;
        self.read_json(resp, &method, path).await
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// `GET path` of a list. With `follow`, a `206` answer's `Next-Range` is requested in turn
    /// until the server has no more; without it only the first page is read.
    pub async fn list(&self, path: &str, range: Option<&str>, follow: bool) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut range = range.map(str::to_owned);
        // A bound on pages keeps a server that always answers 206 from looping forever.
        for _ in 0..10_000 {
            let resp = self.send(Method::GET, path, None, range.as_deref()).await?;
            let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
            let next = resp
                .headers()
                .get("next-range")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match self.read_json(resp, &Method::GET, path).await? {
                Value::Array(page) => items.extend(page),
                _ => bail!("Slipway answered GET {path} with something other than a list."),
            }
            match next {
                Some(next) if follow && partial => range = Some(next),
                _ => break,
            }
        }
        Ok(items)
    }

    /// `GET url` of a log stream (no key: the URL carries its own token), as plain text.
    pub async fn stream(&self, url: &str) -> Result<Response> {
        let resp = self
            .http
            .get(url)
            .header(ACCEPT, "text/plain")
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        check_status(resp).await
    }

    /// `GET url` of a file the server handed out a URL for (a backup's public URL), without the
    /// key: such URLs carry their own token, and may point elsewhere than the API.
    pub async fn download(&self, url: &str) -> Result<Response> {
        let resp = self
            .http
            .get(url)
            .header(ACCEPT, "application/octet-stream, */*")
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        check_status(resp).await
    }

    /// The base URL requests go to (`http://127.0.0.1:5050`).
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn read_json(&self, resp: Response, method: &Method, path: &str) -> Result<Value> {
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| anyhow!("Slipway answered {method} {path} with a body that is not JSON."))
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let base = &self.base;
        if e.is_connect() {
            if is_refused(&e) {
                return anyhow!(
                    "Cannot reach Slipway at {base}: connection refused. Is `slipway server` running?"
                );
            }
            return anyhow!("Cannot reach Slipway at {base}: {}.", root_cause(&e));
        }
        if e.is_timeout() {
            return anyhow!("Slipway at {base} did not answer in time.");
        }
        anyhow!("Request to Slipway at {base} failed: {}.", root_cause(&e))
    }
}

/// Turns a non-2xx response into an error carrying the server's `message` (a 401 also says how to
/// log in).
async fn check_status(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    let id = parsed
        .as_ref()
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let server_message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|m| !m.is_empty());
    let mut message = server_message.unwrap_or_else(|| {
        let snippet: String = body
            .trim()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        if snippet.is_empty() {
            format!("Slipway answered {status}.")
        } else {
            format!("Slipway answered {status}: {snippet}")
        }
    });
    if status == StatusCode::UNAUTHORIZED {
        message.push_str(" Run slipway login, or set SLIPWAY_API_KEY.");
    }
    Err(ApiError {
        status,
        id,
        message,
    }
    .into())
}

fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string().trim_end_matches('.').to_owned()
}

/// Decodes a JSON value into a wire type, naming what was expected when it does not fit.
pub fn decode<T: DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| anyhow!("Slipway sent {what} this CLI cannot read: {e}."))
}

/// Decodes every item of a list.
pub fn decode_all<T: DeserializeOwned>(values: Vec<Value>, what: &str) -> Result<Vec<T>> {
    values.into_iter().map(|v| decode(v, what)).collect()
}

/// Percent-encodes one URL path segment (app names, dyno names, versions).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("web.1"), "web.1");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
