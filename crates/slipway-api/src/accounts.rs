//! The server's accounts (`/accounts`): the admin, the first account, lists them and adds
//! others, each with an API key shown once.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use slipway_store::AccountRow;

use crate::auth::{generate_key, hash_key, Auth};
use crate::error::{parse_json, ApiError, ApiResult};
use crate::AppState;

fn account_json(a: &AccountRow) -> Value {
    json!({
        "id": a.id,
        "email": a.email,
        "name": a.name,
        "admin": a.admin,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
    })
}

fn admin_only(who: &AccountRow) -> ApiResult<()> {
    if who.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only the server's admin account can manage accounts.",
        ))
    }
}

/// An address-like email: one `@`, something on both sides, no spaces or controls.
fn valid_email(e: &str) -> bool {
    let Some((user, domain)) = e.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `GET /accounts` (admin).
pub async fn list(State(s): State<AppState>, Auth(who): Auth) -> ApiResult<Json<Vec<Value>>> {
    admin_only(&who)?;
    Ok(Json(
        s.store.accounts().await?.iter().map(account_json).collect(),
    ))
}

#[derive(Deserialize)]
struct CreateBody {
    email: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /accounts` with `{"email", "name"?}` (admin): the new account and its API key.
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Response> {
    admin_only(&who)?;
    let b: CreateBody = parse_json(&body)?;
    let email = b.email.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return Err(ApiError::invalid(format!(
            "{:?} is not an email address.",
            b.email
        )));
    }
    let name = b.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let account = s.store.create_account(&email, name).await?;
    let key = generate_key();
    s.store
        .add_api_key(&account.id, &hash_key(&key), "created by the admin")
        .await?;
    let mut out = account_json(&account);
    out["api_key"] = json!(key);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.com"] {
            assert!(super::valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "@b.co", "a@b", "a@.co", "a b@c.co", "a@b@c.co", "a@b.co.",
        ] {
            assert!(!super::valid_email(bad), "{bad}");
        }
    }
}

// ---- OAuth authorizations (`heroku login -i`, `heroku logout`) ----------------------------

/// Keys made through `/oauth/authorizations` carry this in their description; only they are
/// revoked when a client logs out.
const OAUTH: &str = "oauth: ";

fn authorization_json(
    id: &str,
    desc: &str,
    at: chrono::DateTime<chrono::Utc>,
    who: &AccountRow,
    token: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "access_token": token.map(|t| json!({"id": id, "token": t, "expires_in": null})),
        "client": null,
        "created_at": at,
        "description": desc.strip_prefix(OAUTH).unwrap_or(desc),
        "grant": null,
        "refresh_token": null,
        "scope": ["global"],
        "session": null,
        "updated_at": at,
        "user": {"id": who.id, "email": who.email, "full_name": who.name},
    })
}

/// An authorization's id: the start of its key's hash, as a UUID.
fn authorization_id(key_hash: &str) -> String {
    let h = &key_hash[..32.min(key_hash.len())];
    if h.len() < 32 {
        return h.to_string();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Deserialize, Default)]
struct AuthorizationBody {
    #[serde(default)]
    description: Option<String>,
}

/// `POST /oauth/authorizations`: a new API key for the caller, who proves who they are with an
/// existing key, as Bearer or as the password of Basic `email:key` (what `heroku login -i`
/// sends; Slipway accounts have keys, not passwords).
pub async fn create_authorization(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let b: AuthorizationBody = parse_json(&body)?;
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key = crate::auth::key_from_header(value)
        .filter(|k| !k.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let who = s
        .store
        .account_by_key_hash(&hash_key(&key))
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    // Basic auth names the account too; it must be the key's.
    if let Some(email) = basic_user(value) {
        if !email.is_empty() && !email.eq_ignore_ascii_case(&who.email) {
            return Err(ApiError::unauthorized());
        }
    }
    let desc = b
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("API client");
    let desc = format!("{OAUTH}{}", desc.chars().take(200).collect::<String>());
    let token = generate_key();
    let key_hash = hash_key(&token);
    s.store.add_api_key(&who.id, &key_hash, &desc).await?;
    let out = authorization_json(
        &authorization_id(&key_hash),
        &desc,
        chrono::Utc::now(),
        &who,
        Some(&token),
    );
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn basic_user(value: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    Some(decoded.split_once(':')?.0.to_string())
}

/// `GET /oauth/authorizations`: the caller's keys (never their tokens).
pub async fn list_authorizations(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> ApiResult<Json<Vec<Value>>> {
    let keys = s.store.api_keys(&who.id).await?;
    Ok(Json(
        keys.iter()
            .map(|(h, d, at)| authorization_json(&authorization_id(h), d, *at, &who, None))
            .collect(),
    ))
}

/// `GET /oauth/authorizations/{id}`; `~` is not kept apart from other keys here.
pub async fn authorization_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    let keys = s.store.api_keys(&who.id).await?;
    keys.iter()
        .find(|(h, _, _)| authorization_id(h) == id)
        .map(|(h, d, at)| Json(authorization_json(&authorization_id(h), d, *at, &who, None)))
        .ok_or_else(|| ApiError::not_found("authorization", "Couldn't find that authorization."))
}

/// `DELETE /oauth/authorizations/{id}`: revokes one of the caller's keys.
pub async fn delete_authorization(
    State(s): State<AppState>,
    Auth(who): Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    let keys = s.store.api_keys(&who.id).await?;
    let (h, d, at) = keys
        .iter()
        .find(|(h, _, _)| authorization_id(h) == id)
        .ok_or_else(|| ApiError::not_found("authorization", "Couldn't find that authorization."))?;
    s.store.delete_api_key(h).await?;
    Ok(Json(authorization_json(
        &authorization_id(h),
        d,
        *at,
        &who,
        None,
    )))
}

/// `DELETE /oauth/sessions/~` (`heroku logout`): revokes the key of the request when it was
/// made by a login; other keys (the owner's key file, keys the admin gave) stay.
pub async fn delete_session(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Json<Value>> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::key_from_header)
        .ok_or_else(ApiError::unauthorized)?;
    let key_hash = hash_key(&key);
    let who = s
        .store
        .account_by_key_hash(&key_hash)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let keys = s.store.api_keys(&who.id).await?;
    match keys
        .iter()
        .find(|(h, d, _)| *h == key_hash && d.starts_with(OAUTH))
    {
        Some((h, d, at)) => {
            s.store.delete_api_key(h).await?;
            Ok(Json(authorization_json(
                &authorization_id(h),
                d,
                *at,
                &who,
                None,
            )))
        }
        None => Err(ApiError::not_found(
            "session",
            "This key is not a login session.",
        )),
    }
}
