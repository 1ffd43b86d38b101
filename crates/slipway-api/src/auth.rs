//! API keys: generation, hashing, and the extractor that authenticates every request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};
use slipway_store::AccountRow;

use crate::error::ApiError;
use crate::AppState;

/// A new random API key (64 hex characters).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The form keys are stored in.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

/// The key in an `Authorization` header: `Bearer KEY`, or `Basic` with the key as password
/// (any user name).
pub fn key_from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_string()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (_, password) = decoded.split_once(':')?;
            Some(password.to_string())
        }
        _ => None,
    }
}

/// The account whose key a request's `Authorization` header carries; 401 otherwise.
pub(crate) async fn account_of(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<AccountRow, ApiError> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(key_from_header)
        .filter(|k| !k.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    state
        .store
        .account_by_key_hash(&hash_key(&key))
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// The authenticated account of a request.
pub struct Auth(pub AccountRow);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Auth(account_of(state, &parts.headers).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_headers() {
        assert_eq!(key_from_header("Bearer abc").as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode(":abc");
        assert_eq!(
            key_from_header(&format!("Basic {basic}")).as_deref(),
            Some("abc")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("git:abc");
        assert_eq!(
            key_from_header(&format!("basic {basic}")).as_deref(),
            Some("abc")
        );
        assert_eq!(key_from_header("Token abc"), None);
        assert_eq!(key_from_header("Basic !!!"), None);
    }
}
