//! Collaborators (`access`, `access:add`, `access:remove`): accounts that may use an app besides
//! its owner, in Heroku's shape. The list includes the owner (role `owner`). Only the owner adds
//! or removes collaborators; a collaborator may remove itself. A removed collaborator loses the
//! app's dataclips shared with it too.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use slipway_store::{AppRow, CollaboratorRow};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::AppState;

fn collaborator_json(app: &AppRow, c: &CollaboratorRow) -> Value {
    json!({
        "app": {"id": app.id, "name": app.name},
        "created_at": c.created_at,
        "id": c.id,
        "permissions": [],
        "role": "collaborator",
        "updated_at": c.updated_at,
        "user": {"email": c.account.email, "federated": false, "id": c.account.id},
    })
}

fn owner_json(app: &AppRow) -> Value {
    json!({
        "app": {"id": app.id, "name": app.name},
        "created_at": app.created_at,
        "id": app.owner_id,
        "permissions": [],
        "role": "owner",
        "updated_at": app.updated_at,
        "user": {"email": app.owner_email, "federated": false, "id": app.owner_id},
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "collaborator",
        "Couldn't find that collaborator. See slipway access.",
    )
}

/// `GET /apps/{app}/collaborators`.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let app = s.load_app(&who, &app).await?;
    let mut out = vec![owner_json(&app)];
    for c in s.store.collaborators(&app.id).await? {
        out.push(collaborator_json(&app, &c));
    }
    Ok(Json(out))
}

/// `GET /apps/{app}/collaborators/{id or email}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    if which == app.owner_id || which.eq_ignore_ascii_case(&app.owner_email) {
        return Ok(Json(owner_json(&app)));
    }
    let c = s
        .store
        .collaborator(&app.id, which.trim())
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(collaborator_json(&app, &c)))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UserRef {
    Email(String),
    Object {
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        id: Option<String>,
    },
}

#[derive(Deserialize)]
struct CreateBody {
    user: UserRef,
    #[serde(default)]
    #[allow(dead_code)]
    silent: Option<bool>,
}

/// `POST /apps/{app}/collaborators` with `{"user": EMAIL}` (owner only).
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let b: CreateBody = parse_json(&body)?;
    let app = s.owned_app(&who, &app, "add collaborators").await?;
    let which = match &b.user {
        UserRef::Email(e) => e.clone(),
        UserRef::Object { email, id } => email.clone().or(id.clone()).unwrap_or_default(),
    };
    let which = which.trim().to_ascii_lowercase();
    if which.is_empty() {
        return Err(ApiError::invalid("Give the collaborator's email."));
    }
    let account = match s.store.account_by_email(&which).await? {
        Some(a) => Some(a),
        None => s.store.account(&which).await?,
    };
    let Some(account) = account else {
        return Err(ApiError::not_found(
            "user",
            format!(
                "There is no account {which} on this server. The server's admin can add one with \
                 slipway accounts:add {which}."
            ),
        ));
    };
    if account.id == app.owner_id {
        return Err(ApiError::invalid(format!(
            "{} owns {}; owners need no access.",
            account.email, app.name
        )));
    }
    let c = s
        .store
        .add_collaborator(&app.id, &account.id)
        .await
        .map_err(|e| match e {
            slipway_store::StoreError::Conflict(_) => ApiError::invalid(format!(
                "{} is already a collaborator on {}.",
                account.email, app.name
            )),
            other => other.into(),
        })?;
    s.api_log(
        &app.id,
        &format!("{} added as a collaborator by {}", account.email, who.email),
    );
    Ok((StatusCode::CREATED, Json(collaborator_json(&app, &c))).into_response())
}

/// `DELETE /apps/{app}/collaborators/{id or email}`: the owner removes anyone; a collaborator
/// may remove itself.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let c = s
        .store
        .collaborator(&app.id, which.trim())
        .await?
        .ok_or_else(not_found)?;
    if app.owner_id != who.id && c.account.id != who.id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "Only {}'s owner ({}) can remove other collaborators.",
                app.name, app.owner_email
            ),
        ));
    }
    s.store.remove_collaborator(&c.id).await?;
    // What it shared with itself while it could goes too.
    s.store
        .unshare_app_dataclips(&app.id, &c.account.id)
        .await?;
    s.api_log(
        &app.id,
        &format!(
            "{} removed as a collaborator by {}",
            c.account.email, who.email
        ),
    );
    Ok(Json(collaborator_json(&app, &c)))
}
