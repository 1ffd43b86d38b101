//! API errors and their one translation into Heroku's `{"id","message"}` body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use slipway_types::ErrorBody;

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: &'static str,
    pub message: String,
    pub resource: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            id,
            message: message.into(),
            resource: None,
        }
    }

    pub fn not_found(resource: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            resource: Some(resource),
            ..Self::new(StatusCode::NOT_FOUND, "not_found", message)
        }
    }

    pub fn app_not_found() -> Self {
        Self::not_found("app", "Couldn't find that app.")
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided. Run `slipway login`, or set SLIPWAY_API_KEY.",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            message,
        )
    }
}

impl From<slipway_store::StoreError> for ApiError {
    fn from(e: slipway_store::StoreError) -> Self {
        match e {
            slipway_store::StoreError::Conflict(what) => {
                ApiError::invalid(format!("{what} already exists"))
            }
            other => {
                tracing::error!(error = %other, "Store error.");
                ApiError::internal(
                    "Internal server error: the state store failed. Check the server log.",
                )
            }
        }
    }
}

impl From<slipway_manager::ManagerError> for ApiError {
    fn from(e: slipway_manager::ManagerError) -> Self {
        tracing::error!(error = %e, "Dyno manager error.");
        ApiError::internal(format!("Internal server error: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            id: self.id.to_string(),
            message: self.message,
            resource: self.resource.map(String::from),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"Slipway\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON request body, answering 400 with Heroku's error body when it is malformed.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON in request body: {e}.")))
}
