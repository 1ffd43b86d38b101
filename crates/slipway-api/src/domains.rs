//! Custom domains (`domains:add`), in Heroku's shape: `/apps/{app}/domains[/{id-or-hostname}]`.
//!
//! Every app has the `heroku` domain `<app>.<base-domain>`, made up on the fly and never
//! stored; custom ones live in the store with a random DNS target under the server's
//! `dns_target_domain`. Any change reconfigures the router through
//! [`AppState::refresh_routes`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use slipway_store::{AppRow, DomainRow};
use slipway_types::{generate_dns_target_label, AppRef, Domain, NamedRef};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::sni::AppCert;
use crate::{range, AppState};

/// Checks a custom host name and returns it in lower case: a DNS name of at least two labels
/// (each 1–63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`; 253 in all),
/// optionally with one leading `*.`, and not under the server's base domain.
pub fn validate_hostname(raw: &str, base_domain: &str) -> Result<String, String> {
    let host = raw.trim().to_ascii_lowercase();
    // `www.example.com.` is the same name written as a fully qualified one.
    let host = host.strip_suffix('.').unwrap_or(&host).to_string();
    if host.is_empty() {
        return Err("Hostname can't be blank. Give a domain name such as www.example.com.".into());
    }
    let bad = |why: &str| {
        Err(format!(
            "{raw:?} is not a valid domain name: {why}. Give a name such as www.example.com or *.example.com."
        ))
    };
    if host.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let base = base_domain.to_ascii_lowercase();
    if name == base || name.ends_with(&format!(".{base}")) {
        return Err(format!(
            "{host} is under this server's base domain {base}, whose names belong to Slipway (every app already answers at <app>.{base}). Add a domain of your own."
        ));
    }
    if name.contains('*') {
        return bad("a wildcard is only allowed as the whole first label (*.)");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return bad("it needs at least two labels");
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return bad("each label must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("labels may only hold letters, digits and dashes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with a dash");
        }
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("an IP address is not a domain name");
    }
    Ok(host)
}

impl AppState {
    /// The app's `<app>.<base-domain>` host name.
    pub(crate) fn heroku_hostname(&self, app: &AppRow) -> String {
        format!("{}.{}", app.name, self.config.base_domain)
    }

    /// The `heroku` domain of an app, with an id derived from the app's so it is stable.
    fn heroku_domain(&self, app: &AppRow) -> Domain {
        Domain {
            id: stable_uuid("heroku-domain", &app.id),
            hostname: self.heroku_hostname(app),
            kind: "heroku".into(),
            cname: None,
            status: "none".into(),
            acm_status: None,
            acm_status_reason: None,
            app: app_ref(app),
            sni_endpoint: None,
            created_at: app.created_at,
            updated_at: app.created_at,
        }
    }

    /// The Heroku shape of a custom domain; `certs` are the app's, to find the one covering it.
    fn domain_json(&self, app: &AppRow, d: &DomainRow, certs: &[AppCert]) -> Domain {
        Domain {
            id: d.id.clone(),
            hostname: d.hostname.clone(),
            kind: d.kind.clone(),
            cname: d.cname.clone(),
            // Slipway does not look the name up in DNS: a custom domain counts as set up once
            // added, and the router answers for it as soon as requests arrive.
            status: "succeeded".into(),
            acm_status: None,
            acm_status_reason: None,
            app: app_ref(app),
            sni_endpoint: crate::sni::covering(certs, &d.hostname).map(|c| NamedRef {
                id: c.row.id.clone(),
                name: c.row.name.clone(),
            }),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }

    /// Every domain of an app: the heroku one first, then the custom ones by host name.
    async fn domains_json(&self, app: &AppRow) -> ApiResult<Vec<Domain>> {
        let certs = self.app_certs(app).await?;
        let mut out = vec![self.heroku_domain(app)];
        for d in self.store.domains(&app.id).await? {
            out.push(self.domain_json(app, &d, &certs));
        }
        Ok(out)
    }

    /// One domain by id or host name (the heroku one included).
    async fn find_domain(&self, app: &AppRow, which: &str) -> ApiResult<Found> {
        let heroku = self.heroku_domain(app);
        if which == heroku.id || which.eq_ignore_ascii_case(&heroku.hostname) {
            return Ok(Found::Heroku(heroku));
        }
        let which = which.trim_end_matches('.');
        self.store
            .domain(&app.id, which)
            .await?
            .map(Found::Custom)
            .ok_or_else(|| {
                ApiError::not_found(
                    "domain",
                    format!("Couldn't find that domain ({which}). See slipway domains."),
                )
            })
    }
}

enum Found {
    Heroku(Domain),
    Custom(DomainRow),
}

fn app_ref(app: &AppRow) -> AppRef {
    AppRef {
        id: app.id.clone(),
        name: app.name.clone(),
    }
}

/// A UUID-shaped id derived from `seed`, the same every time.
pub(crate) fn stable_uuid(kind: &str, seed: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{kind}:{seed}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// `GET /apps/{app}/domains`.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let out = s.domains_json(&app).await?;
    // The heroku domain stays first and the custom ones in host name order, whatever field the
    // range names: the range key is each domain's position.
    let position: std::collections::HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    Ok(range::respond(
        &headers,
        "id",
        out,
        |d, _| format!("{:06}", position.get(&d.id).copied().unwrap_or(0)),
        |_| false,
    ))
}

/// `GET /apps/{app}/domains/{id-or-hostname}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Domain>> {
    let app = s.load_app(&who, &app).await?;
    match s.find_domain(&app, &which).await? {
        Found::Heroku(d) => Ok(Json(d)),
        Found::Custom(d) => {
            let certs = s.app_certs(&app).await?;
            Ok(Json(s.domain_json(&app, &d, &certs)))
        }
    }
}

#[derive(Deserialize)]
struct CreateDomain {
    hostname: Option<String>,
    #[serde(default)]
    sni_endpoint: Option<String>,
}

/// `POST /apps/{app}/domains` with `{"hostname": "www.example.com", "sni_endpoint": null}`.
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: CreateDomain = parse_json(&body)?;
    let raw = req
        .hostname
        .ok_or_else(|| ApiError::invalid("Give the domain to add as \"hostname\"."))?;
    let hostname = validate_hostname(&raw, &s.config.base_domain).map_err(ApiError::invalid)?;
    let certs = s.app_certs(&app).await?;
    if let Some(e) = &req.sni_endpoint {
        check_endpoint(&certs, e, &hostname)?;
    }
    let in_use = |d: Option<DomainRow>| {
        match d {
        Some(d) if d.app_id == app.id => ApiError::invalid("Domain already added to this app."),
        _ => ApiError::invalid(format!(
            "{hostname} is currently in use by another app. Remove it there first (slipway domains:remove {hostname} -a <that app>)."
        )),
    }
    };
    if let Some(d) = s.store.domain_by_hostname(&hostname).await? {
        return Err(in_use(Some(d)));
    }
    let cname = format!(
        "{}.{}",
        generate_dns_target_label(),
        s.config.dns_target_domain
    );
    let d = match s.store.create_domain(&app.id, &hostname, &cname).await {
        // Added by someone else between the check and the insert.
        Err(slipway_store::StoreError::Conflict(_)) => {
            return Err(in_use(s.store.domain_by_hostname(&hostname).await?))
        }
        other => other?,
    };
    s.api_log(
        &app.id,
        &format!("Add domain {hostname} by user {}", who.email),
    );
    s.refresh_routes(&app).await?;
    Ok((StatusCode::CREATED, Json(s.domain_json(&app, &d, &certs))).into_response())
}

/// The app's certificate `which` (id or name) must exist and cover `hostname`.
fn check_endpoint(certs: &[AppCert], which: &str, hostname: &str) -> ApiResult<()> {
    let cert = certs
        .iter()
        .find(|c| c.row.id == which || c.row.name == which)
        .ok_or_else(|| {
            ApiError::not_found(
                "sni-endpoint",
                format!("Couldn't find that SNI endpoint ({which}). See slipway certs."),
            )
        })?;
    if !cert.info.as_ref().is_some_and(|i| i.covers(hostname)) {
        return Err(ApiError::invalid(format!(
            "The certificate {} does not cover {hostname}. Add one that does with slipway certs:add.",
            cert.row.name
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct UpdateDomain {
    #[serde(default)]
    sni_endpoint: Option<String>,
}

/// `PATCH /apps/{app}/domains/{id-or-hostname}` with `{"sni_endpoint": "name" | null}`. The
/// certificate a domain is served with is the app's one that covers it, so this only checks
/// that the named one does.
pub async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Domain>> {
    let app = s.load_app(&who, &app).await?;
    let req: UpdateDomain = parse_json(&body)?;
    let d = match s.find_domain(&app, &which).await? {
        Found::Heroku(d) => {
            return Err(ApiError::invalid(format!(
                "{} is the app's default domain and cannot be changed.",
                d.hostname
            )))
        }
        Found::Custom(d) => d,
    };
    let certs = s.app_certs(&app).await?;
    if let Some(e) = &req.sni_endpoint {
        check_endpoint(&certs, e, &d.hostname)?;
    }
    s.store.touch_domain(&d.id).await?;
    let d = s.store.domain(&app.id, &d.id).await?.unwrap_or(d);
    Ok(Json(s.domain_json(&app, &d, &certs)))
}

/// `DELETE /apps/{app}/domains/{id-or-hostname}`.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Domain>> {
    let app = s.load_app(&who, &app).await?;
    let d = match s.find_domain(&app, &which).await? {
        Found::Heroku(d) => {
            return Err(ApiError::invalid(format!(
                "{} is the app's default domain and cannot be removed.",
                d.hostname
            )))
        }
        Found::Custom(d) => d,
    };
    let certs = s.app_certs(&app).await?;
    let json = s.domain_json(&app, &d, &certs);
    s.store.delete_domain(&d.id).await?;
    s.api_log(
        &app.id,
        &format!("Remove domain {} by user {}", d.hostname, who.email),
    );
    s.refresh_routes(&app).await?;
    Ok(Json(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let ok = |h: &str| validate_hostname(h, "localhost");
        assert_eq!(ok("WWW.Example.com").unwrap(), "www.example.com");
        assert_eq!(ok("www.example.com.").unwrap(), "www.example.com");
        assert_eq!(ok("*.example.com").unwrap(), "*.example.com");
        assert_eq!(ok("a-1.b2.example").unwrap(), "a-1.b2.example");
        for bad in [
            "",
            "example",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "a_b.example.com",
            "*.com",
            "www.*.example.com",
            "**.example.com",
            "1.2.3.4",
            "demo.localhost",
            "*.localhost",
            "localhost.",
            "exa mple.com",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(ok(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(ok(&format!("{}.com", "a".repeat(63))).is_ok());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(long.len() > 253 && ok(&long).is_err());
        assert!(validate_hostname("api.apps.example.com", "apps.example.com").is_err());
        assert!(validate_hostname("myapps.example.com", "apps.example.com").is_ok());
    }
}
