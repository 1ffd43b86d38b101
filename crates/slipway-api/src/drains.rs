//! Log drains (`drains:add`), in Heroku's shape: `/apps/{app}/log-drains[/{id-or-url-or-token}]`.
//!
//! Drains live in the store; each change starts or stops the drain's sender in
//! [`slipway_drains::Drains`]. A drain URL may hold a password: it is answered back as given
//! (as Heroku does) but only ever logged without its credentials.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use slipway_drains::{parse_url, MAX_DRAINS_PER_APP};
use slipway_store::{AppRow, LogDrainRow};
use slipway_types::{AppRef, LogDrain};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::{range, AppState};

fn drain_json(app: &AppRow, d: &LogDrainRow) -> LogDrain {
    LogDrain {
        id: d.id.clone(),
        url: d.url.clone(),
        token: d.token.clone(),
        addon: None,
        app: AppRef {
            id: app.id.clone(),
            name: app.name.clone(),
        },
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// The drain URL without its credentials, for the app's log.
fn shown(url: &str) -> String {
    parse_url(url).map_or_else(|_| "a drain".to_string(), |t| t.to_string())
}

impl AppState {
    async fn find_drain(&self, app: &AppRow, which: &str) -> ApiResult<LogDrainRow> {
        self.store
            .log_drain(&app.id, which.trim())
            .await?
            .ok_or_else(|| {
                ApiError::not_found(
                    "log-drain",
                    "Couldn't find that log drain. See slipway drains.",
                )
            })
    }
}

/// `GET /apps/{app}/log-drains`.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let out: Vec<LogDrain> = s
        .store
        .log_drains(&app.id)
        .await?
        .iter()
        .map(|d| drain_json(&app, d))
        .collect();
    Ok(range::respond(
        &headers,
        "id",
        out,
        |d, _| format!("{}{}", d.created_at.to_rfc3339(), d.id),
        |_| false,
    ))
}

/// `GET /apps/{app}/log-drains/{id-or-url-or-token}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<LogDrain>> {
    let app = s.load_app(&who, &app).await?;
    let d = s.find_drain(&app, &which).await?;
    Ok(Json(drain_json(&app, &d)))
}

#[derive(Deserialize)]
struct CreateDrain {
    url: Option<String>,
}

/// `POST /apps/{app}/log-drains` with `{"url": "syslog://host:port"}`.
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: CreateDrain = parse_json(&body)?;
    let url = req
        .url
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::invalid("Give the drain URL to add as \"url\"."))?;
    let target = s
        .drains
        .check_url(&url)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let existing = s.store.log_drains(&app.id).await?;
    let duplicate = || ApiError::invalid("This drain URL is already added to this app.");
    if existing.iter().any(|d| d.url == url) {
        return Err(duplicate());
    }
    if existing.len() >= MAX_DRAINS_PER_APP {
        return Err(ApiError::invalid(format!(
            "An app may have at most {MAX_DRAINS_PER_APP} log drains. Remove one first (slipway drains:remove)."
        )));
    }
    let d = match s.store.create_log_drain(&app.id, &url).await {
        Err(slipway_store::StoreError::Conflict(_)) => return Err(duplicate()),
        other => other?,
    };
    if let Err(e) = s.drains.add(&app.id, &d.id, &d.url, &d.token) {
        let _ = s.store.delete_log_drain(&d.id).await;
        return Err(ApiError::invalid(e.to_string()));
    }
    s.api_log(
        &app.id,
        &format!("Add drain {target} ({}) by user {}", d.token, who.email),
    );
    Ok((StatusCode::CREATED, Json(drain_json(&app, &d))).into_response())
}

/// `DELETE /apps/{app}/log-drains/{id-or-url-or-token}`.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<LogDrain>> {
    let app = s.load_app(&who, &app).await?;
    let d = s.find_drain(&app, &which).await?;
    s.store.delete_log_drain(&d.id).await?;
    s.drains.remove(&app.id, &d.id);
    s.api_log(
        &app.id,
        &format!(
            "Remove drain {} ({}) by user {}",
            shown(&d.url),
            d.token,
            who.email
        ),
    );
    Ok(Json(drain_json(&app, &d)))
}
