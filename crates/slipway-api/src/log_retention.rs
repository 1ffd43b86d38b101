//! `/apps/{app}/log-retention`: how much of an app's log history Slipway keeps on disk (Heroku
//! keeps 1500 lines and has no such setting).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use slipway_logs::history::Retention;
use slipway_store::AppRow;

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::AppState;

const MB: u64 = 1024 * 1024;
const DAY: u64 = 86_400;
/// Most an app may keep: 100 GB, a year.
const MAX_MB: u64 = 100_000;
const MAX_DAYS: u64 = 365;

/// What an app keeps.
#[derive(Debug, Serialize)]
pub struct LogRetention {
    pub max_size_mb: u64,
    pub max_age_days: u64,
    /// Whether these are the server's defaults.
    pub default: bool,
}

fn effective(bytes: Option<u64>, secs: Option<u64>) -> (Retention, LogRetention) {
    let d = Retention::default();
    let r = Retention {
        max_bytes: bytes.unwrap_or(d.max_bytes),
        max_age: secs.map_or(d.max_age, std::time::Duration::from_secs),
    };
    let shown = LogRetention {
        max_size_mb: r.max_bytes / MB,
        max_age_days: r.max_age.as_secs() / DAY,
        default: bytes.is_none() && secs.is_none(),
    };
    (r, shown)
}

impl AppState {
    /// Hands an app's stored limits to the log history.
    pub async fn apply_log_retention(&self, app: &AppRow) -> ApiResult<LogRetention> {
        let (bytes, secs) = self.store.log_retention(&app.id).await?;
        let (r, shown) = effective(bytes, secs);
        if let Some(h) = self.logs.history() {
            h.set_retention(&app.id, r);
        }
        Ok(shown)
    }
}

/// `GET /apps/{app}/log-retention`.
pub async fn show(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<LogRetention>> {
    let app = s.load_app(&who, &app).await?;
    let (bytes, secs) = s.store.log_retention(&app.id).await?;
    Ok(Json(effective(bytes, secs).1))
}

/// A whole number in `1..=max`, `Ok(None)` for `null`.
fn number(field: &str, v: &serde_json::Value, max: u64) -> ApiResult<Option<u64>> {
    if v.is_null() {
        return Ok(None);
    }
    match v.as_u64() {
        Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::invalid(format!(
            "{field} must be a whole number from 1 to {max} (or null for the default)."
        ))),
    }
}

/// `PUT /apps/{app}/log-retention`: a field left out keeps its value, `null` resets it.
pub async fn set(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<LogRetention>> {
    let app = s.load_app(&who, &app).await?;
    // A field left out keeps its value; `null` (present) resets it.
    let req: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    let (size, age) = (req.get("max_size_mb"), req.get("max_age_days"));
    if size.is_none() && age.is_none() {
        return Err(ApiError::invalid(
            "Give max_size_mb (1 to 100000) or max_age_days (1 to 365), or both.",
        ));
    }
    let (mut bytes, mut secs) = s.store.log_retention(&app.id).await?;
    if let Some(v) = size {
        bytes = number("max_size_mb", v, MAX_MB)?.map(|n| n * MB);
    }
    if let Some(v) = age {
        secs = number("max_age_days", v, MAX_DAYS)?.map(|n| n * DAY);
    }
    s.store.set_log_retention(&app.id, bytes, secs).await?;
    Ok(Json(s.apply_log_retention(&app).await?))
}
