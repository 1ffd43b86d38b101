//! SNI endpoints (`certs:add`): the certificates an app's custom domains are served with, in
//! Heroku's shape at `/apps/{app}/sni-endpoints[/{id-or-name}]`.
//!
//! A chain and key are checked with [`slipway_tls::inspect`] before they are stored; the
//! private key is stored for the router and never sent back or logged.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use slipway_store::{AppRow, SniEndpointRow};
use slipway_tls::CertInfo;
use slipway_types::{generate_sni_endpoint_name, AppRef, SniEndpoint, SslCert};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::{range, AppState};

/// One of an app's certificates with what it says (`None` if it can no longer be read).
pub(crate) struct AppCert {
    pub row: SniEndpointRow,
    pub info: Option<CertInfo>,
}

/// The certificate a host name is served with: one naming it exactly before a wildcard one,
/// then the oldest.
pub(crate) fn covering<'a>(certs: &'a [AppCert], hostname: &str) -> Option<&'a AppCert> {
    let covers = |c: &&AppCert| c.info.as_ref().is_some_and(|i| i.covers(hostname));
    let exact = |c: &&AppCert| {
        c.info
            .as_ref()
            .is_some_and(|i| i.names.iter().any(|n| n == hostname))
    };
    certs
        .iter()
        .filter(covers)
        .find(exact)
        .or_else(|| certs.iter().find(covers))
}

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Turns a [`slipway_tls`] error into a sentence that says what to send instead.
fn invalid_pem(e: slipway_tls::TlsError) -> ApiError {
    let text = e.to_string();
    let mut chars = text.chars();
    let text: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => text,
    };
    ApiError::invalid(format!(
        "{text}. Send the PEM certificate chain (the certificate first, then intermediates) and the PEM private key it was issued for."
    ))
}

impl AppState {
    /// The app's certificates, oldest first, each read once.
    pub(crate) async fn app_certs(&self, app: &AppRow) -> ApiResult<Vec<AppCert>> {
        Ok(self
            .store
            .sni_endpoints(&app.id)
            .await?
            .into_iter()
            .map(|row| {
                let info = match slipway_tls::inspect(&row.certificate_chain, &row.private_key) {
                    Ok(i) => Some(i),
                    Err(error) => {
                        tracing::warn!(app = %app.name, endpoint = %row.name, %error, "A stored certificate cannot be read.");
                        None
                    }
                };
                AppCert { row, info }
            })
            .collect())
    }

    /// The Heroku shape of a certificate; `hostnames` are the app's custom domains.
    fn sni_json(&self, app: &AppRow, c: &AppCert, hostnames: &[String]) -> SniEndpoint {
        let ssl_cert = c.info.as_ref().map(|i| SslCert {
            id: crate::domains::stable_uuid("ssl-cert", &c.row.certificate_chain),
            ca_signed: !i.self_signed,
            cert_domains: i.names.clone(),
            expires_at: time(i.not_after),
            issuer: i.issuer.clone(),
            self_signed: i.self_signed,
            starts_at: time(i.not_before),
            subject: i.subject.clone(),
        });
        let domains = hostnames
            .iter()
            .filter(|h| c.info.as_ref().is_some_and(|i| i.covers(h)))
            .cloned()
            .collect();
        SniEndpoint {
            id: c.row.id.clone(),
            name: c.row.name.clone(),
            display_name: None,
            certificate_chain: c.row.certificate_chain.clone(),
            app: AppRef {
                id: app.id.clone(),
                name: app.name.clone(),
            },
            domains,
            ssl_cert,
            created_at: c.row.created_at,
            updated_at: c.row.updated_at,
        }
    }

    async fn custom_hostnames(&self, app: &AppRow) -> ApiResult<Vec<String>> {
        Ok(self
            .store
            .domains(&app.id)
            .await?
            .into_iter()
            .map(|d| d.hostname)
            .collect())
    }

    async fn one_sni_json(&self, app: &AppRow, row: SniEndpointRow) -> ApiResult<SniEndpoint> {
        let info = slipway_tls::inspect(&row.certificate_chain, &row.private_key).ok();
        let hostnames = self.custom_hostnames(app).await?;
        Ok(self.sni_json(app, &AppCert { row, info }, &hostnames))
    }

    async fn find_sni(&self, app: &AppRow, which: &str) -> ApiResult<SniEndpointRow> {
        self.store
            .sni_endpoint(&app.id, which)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(
                    "sni-endpoint",
                    format!("Couldn't find that SNI endpoint ({which}). See slipway certs."),
                )
            })
    }
}

/// `GET /apps/{app}/sni-endpoints`.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let hostnames = s.custom_hostnames(&app).await?;
    let out: Vec<SniEndpoint> = s
        .app_certs(&app)
        .await?
        .iter()
        .map(|c| s.sni_json(&app, c, &hostnames))
        .collect();
    Ok(range::respond(
        &headers,
        "id",
        out,
        |e, f| match f {
            "name" => e.name.clone(),
            "created_at" => e.created_at.to_rfc3339(),
            _ => e.id.clone(),
        },
        |_| false,
    ))
}

/// `GET /apps/{app}/sni-endpoints/{id-or-name}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<SniEndpoint>> {
    let app = s.load_app(&who, &app).await?;
    let row = s.find_sni(&app, &which).await?;
    Ok(Json(s.one_sni_json(&app, row).await?))
}

#[derive(Deserialize)]
struct CertBody {
    certificate_chain: Option<String>,
    private_key: Option<String>,
}

/// The chain and key of a request body, checked.
fn checked(body: &Bytes) -> ApiResult<(String, String)> {
    let req: CertBody = parse_json(body)?;
    let (Some(chain), Some(key)) = (req.certificate_chain, req.private_key) else {
        return Err(ApiError::invalid(
            "Send \"certificate_chain\" and \"private_key\", both PEM.",
        ));
    };
    slipway_tls::inspect(&chain, &key).map_err(invalid_pem)?;
    Ok((chain, key))
}

/// `POST /apps/{app}/sni-endpoints` with `{"certificate_chain": PEM, "private_key": PEM}`.
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let (chain, key) = checked(&body)?;
    let mut tries = 0;
    let row = loop {
        let name = generate_sni_endpoint_name();
        match s
            .store
            .create_sni_endpoint(&app.id, &name, &chain, &key)
            .await
        {
            Err(slipway_store::StoreError::Conflict(_)) if tries < 20 => tries += 1,
            other => break other?,
        }
    };
    s.api_log(
        &app.id,
        &format!("Add SNI endpoint {} by user {}", row.name, who.email),
    );
    s.refresh_routes(&app).await?;
    Ok((StatusCode::CREATED, Json(s.one_sni_json(&app, row).await?)).into_response())
}

/// `PATCH /apps/{app}/sni-endpoints/{id-or-name}` with a new chain and key.
pub async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<SniEndpoint>> {
    let app = s.load_app(&who, &app).await?;
    let row = s.find_sni(&app, &which).await?;
    let (chain, key) = checked(&body)?;
    s.store.update_sni_endpoint(&row.id, &chain, &key).await?;
    s.api_log(
        &app.id,
        &format!("Update SNI endpoint {} by user {}", row.name, who.email),
    );
    s.refresh_routes(&app).await?;
    let row = s.find_sni(&app, &row.id).await?;
    Ok(Json(s.one_sni_json(&app, row).await?))
}

/// `DELETE /apps/{app}/sni-endpoints/{id-or-name}`.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<SniEndpoint>> {
    let app = s.load_app(&who, &app).await?;
    let row = s.find_sni(&app, &which).await?;
    let (id, name) = (row.id.clone(), row.name.clone());
    let json = s.one_sni_json(&app, row).await?;
    s.store.delete_sni_endpoint(&id).await?;
    s.api_log(
        &app.id,
        &format!("Remove SNI endpoint {name} by user {}", who.email),
    );
    s.refresh_routes(&app).await?;
    Ok(Json(json))
}
