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
