//! What the router knows of an app besides its dynos, and Slipway's per-app router timeouts.
//!
//! [`AppState::refresh_routes`] is the one place that reads an app's domains, certificates,
//! features, page config vars, maintenance flag and timeouts from the store and hands them to
//! the router as an [`AppSettings`]; every handler that changes one of them calls it.
//! `/apps/{app}/router-timeouts` reads and changes the timeouts (Heroku has no such endpoint).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use slipway_router::{AppSettings, Balance, CertPair, PathTimeouts, Timeouts};
use slipway_store::{AppRow, RouterTimeoutRow};
use slipway_types::RouterTimeout;

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::AppState;

/// Longest router timeout one can set, in seconds.
pub const MAX_TIMEOUT_SECS: u32 = 3600;
/// Most path prefixes an app may give timeouts of their own.
const MAX_PATHS: usize = 100;
/// Longest path prefix.
const MAX_PATH_LEN: usize = 256;

/// The router's defaults (Heroku's 30 s and 55 s), in seconds.
fn defaults() -> (u32, u32) {
    let t = Timeouts::default();
    (t.response.as_secs() as u32, t.idle.as_secs() as u32)
}

/// Stored rows resolved into what applies: `/` first (the defaults where unset), then every
/// other prefix by path (the `/` values where unset).
fn resolve(rows: &[RouterTimeoutRow]) -> Vec<RouterTimeout> {
    let (response, idle) = defaults();
    let root = rows.iter().find(|r| r.path == "/");
    let root = RouterTimeout {
        path: "/".into(),
        response_timeout: root.and_then(|r| r.response_secs).unwrap_or(response),
        idle_timeout: root.and_then(|r| r.idle_secs).unwrap_or(idle),
    };
    let mut out = vec![root.clone()];
    let mut others: Vec<&RouterTimeoutRow> = rows.iter().filter(|r| r.path != "/").collect();
    others.sort_by(|a, b| a.path.cmp(&b.path));
    out.extend(others.into_iter().map(|r| RouterTimeout {
        path: r.path.clone(),
        response_timeout: r.response_secs.unwrap_or(root.response_timeout),
        idle_timeout: r.idle_secs.unwrap_or(root.idle_timeout),
    }));
    out
}

/// The router's form of resolved timeouts.
fn router_timeouts(resolved: &[RouterTimeout]) -> Timeouts {
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let mut t = Timeouts::default();
    for r in resolved {
        if r.path == "/" {
            t.response = secs(r.response_timeout);
            t.idle = secs(r.idle_timeout);
        } else {
            t.paths.push(PathTimeouts {
                prefix: r.path.clone(),
                response: secs(r.response_timeout),
                idle: secs(r.idle_timeout),
            });
        }
    }
    t
}

impl AppState {
    /// Loads everything the router knows of an app besides its dynos from the store and hands it
    /// to the router. Refreshes run one at a time, so the last one to run read the newest state.
    pub async fn refresh_routes(&self, app: &AppRow) -> ApiResult<()> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        // The caller's row may predate the change (maintenance, a rename): read it again.
        let Some(app) = self.store.app(&app.id).await? else {
            return Ok(());
        };
        let domains = self
            .store
            .domains(&app.id)
            .await?
            .into_iter()
            .map(|d| d.hostname)
            .collect();
        let certs = self
            .store
            .sni_endpoints(&app.id)
            .await?
            .into_iter()
            .map(|e| CertPair {
                chain_pem: e.certificate_chain,
                key_pem: e.private_key,
            })
            .collect();
        let features: Vec<String> = self
            .store
            .features(&app.id)
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let on = |name: &str| features.iter().any(|f| f == name);
        let config = self
            .store
            .current_release(&app.id)
            .await?
            .map(|r| r.config)
            .unwrap_or_default();
        let page = |key: &str| {
            config
                .get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let timeouts = router_timeouts(&resolve(&self.store.router_timeouts(&app.id).await?));
        let settings = AppSettings {
            domains,
            maintenance: app.maintenance,
            session_affinity: on("http-session-affinity"),
            balance: if on("http-least-outstanding") {
                Balance::LeastOutstanding
            } else {
                Balance::Random
            },
            http2_to_dyno: on("http2-to-dyno"),
            https_redirect: on("http-to-https-redirect"),
            error_page_url: page("ERROR_PAGE_URL"),
            maintenance_page_url: page("MAINTENANCE_PAGE_URL"),
            timeouts,
            certs,
        };
        self.routes.configure(&app.id, &app.name, settings);
        Ok(())
    }
}

/// `GET /apps/{app}/router-timeouts`: `/` (always there) then every path with its own.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<RouterTimeout>>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(resolve(&s.store.router_timeouts(&app.id).await?)))
}

#[derive(Deserialize)]
struct SetTimeouts {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    response_timeout: Option<serde_json::Value>,
    #[serde(default)]
    idle_timeout: Option<serde_json::Value>,
}

/// A path prefix as given: starts with `/`, printable, no query or fragment.
fn check_path(path: &str) -> ApiResult<()> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_PATH_LEN
        && path
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '?' && c != '#');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid path {path:?}: give a path prefix that starts with / (such as /reports), up to {MAX_PATH_LEN} characters, without spaces, ? or #."
        )))
    }
}

/// Seconds given as a number (`120`) or a string (`"120"`, `"120s"`), 1 to 3600.
fn seconds(field: &str, v: &serde_json::Value) -> ApiResult<u32> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().trim_end_matches('s').parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (1..=u64::from(MAX_TIMEOUT_SECS)).contains(&n) => Ok(n as u32),
        _ => Err(ApiError::invalid(format!(
            "{field} must be a number of seconds from 1 to {MAX_TIMEOUT_SECS}, not {v}."
        ))),
    }
}

/// `PUT /apps/{app}/router-timeouts` with `{"path": "/reports", "response_timeout": 120,
/// "idle_timeout": 55}`. `path` defaults to `/`. A field left out keeps what the path had, and
/// a path new to the app inherits it from `/` (or `/` from the defaults). Answers the whole list.
pub async fn set(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Vec<RouterTimeout>>> {
    let app = s.load_app(&who, &app).await?;
    let req: SetTimeouts = parse_json(&body)?;
    let path = req.path.unwrap_or_else(|| "/".into());
    check_path(&path)?;
    let response = req
        .response_timeout
        .filter(|v| !v.is_null())
        .map(|v| seconds("response_timeout", &v))
        .transpose()?;
    let idle = req
        .idle_timeout
        .filter(|v| !v.is_null())
        .map(|v| seconds("idle_timeout", &v))
        .transpose()?;
    if response.is_none() && idle.is_none() {
        return Err(ApiError::invalid(
            "Give response_timeout or idle_timeout (seconds, 1 to 3600), or both.",
        ));
    }
    let rows = s.store.router_timeouts(&app.id).await?;
    let current = rows.iter().find(|r| r.path == path);
    if current.is_none()
        && path != "/"
        && rows.iter().filter(|r| r.path != "/").count() >= MAX_PATHS
    {
        return Err(ApiError::invalid(format!(
            "An app can have its own timeouts for at most {MAX_PATHS} paths. Unset some with slipway router:timeouts:unset --path PATH."
        )));
    }
    let row = RouterTimeoutRow {
        path: path.clone(),
        response_secs: response.or(current.and_then(|c| c.response_secs)),
        idle_secs: idle.or(current.and_then(|c| c.idle_secs)),
    };
    s.store.set_router_timeout(&app.id, &row).await?;
    let shown = |v: Option<u32>, name: &str| v.map(|v| format!(" {name}={v}s"));
    s.api_log(
        &app.id,
        &format!(
            "Set router timeouts for {path}:{}{} by user {}",
            shown(response, "response").unwrap_or_default(),
            shown(idle, "idle").unwrap_or_default(),
            who.email
        ),
    );
    s.refresh_routes(&app).await?;
    Ok(Json(resolve(&s.store.router_timeouts(&app.id).await?)))
}

/// `DELETE /apps/{app}/router-timeouts?path=/reports`: the path inherits again (`/` goes back
/// to the defaults). Answers the whole list.
pub async fn unset(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Vec<RouterTimeout>>> {
    let app = s.load_app(&who, &app).await?;
    let path = query.get("path").cloned().ok_or_else(|| {
        ApiError::invalid("Give the path whose timeouts to unset: ?path=/reports.")
    })?;
    check_path(&path)?;
    let removed = s.store.delete_router_timeout(&app.id, &path).await?;
    if !removed && path != "/" {
        return Err(ApiError::not_found(
            "router-timeouts",
            format!("{path} has no router timeouts of its own. See slipway router:timeouts."),
        ));
    }
    s.api_log(
        &app.id,
        &format!("Unset router timeouts for {path} by user {}", who.email),
    );
    s.refresh_routes(&app).await?;
    Ok(Json(resolve(&s.store.router_timeouts(&app.id).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, r: Option<u32>, i: Option<u32>) -> RouterTimeoutRow {
        RouterTimeoutRow {
            path: path.into(),
            response_secs: r,
            idle_secs: i,
        }
    }

    #[test]
    fn unset_values_inherit() {
        let t = |p: &str, r, i| RouterTimeout {
            path: p.into(),
            response_timeout: r,
            idle_timeout: i,
        };
        assert_eq!(resolve(&[]), vec![t("/", 30, 55)]);
        let rows = [
            row("/reports", Some(120), None),
            row("/", None, Some(70)),
            row("/api", None, Some(5)),
        ];
        let resolved = resolve(&rows);
        assert_eq!(
            resolved,
            vec![t("/", 30, 70), t("/api", 30, 5), t("/reports", 120, 70)]
        );
        let r = router_timeouts(&resolved);
        assert_eq!(
            r.for_path("/reports/1"),
            (Duration::from_secs(120), Duration::from_secs(70))
        );
        assert_eq!(
            r.for_path("/x"),
            (Duration::from_secs(30), Duration::from_secs(70))
        );
    }

    #[test]
    fn values_and_paths() {
        use serde_json::json;
        assert_eq!(seconds("x", &json!(120)).unwrap(), 120);
        assert_eq!(seconds("x", &json!("90s")).unwrap(), 90);
        for bad in [json!(0), json!(3601), json!(-1), json!("soon"), json!(1.5)] {
            assert!(seconds("x", &bad).is_err(), "{bad}");
        }
        assert!(check_path("/reports").is_ok());
        for bad in ["reports", "", "/a b", "/a?b", "/#x"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
