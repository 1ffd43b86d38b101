//! The Platform API v3 and git-over-HTTP endpoint, and the wiring between components.
//!
//! [`router`] builds the axum app. Handlers authenticate with [`auth::Auth`], read and write the
//! [`Store`], ask the [`Manager`] to reconcile dynos, and answer in Heroku's wire format
//! (`slipway_types`), with every error turned into `{"id","message"}` by [`error::ApiError`].
//! `git push` arrives at `/<app>.git/...`, is served by the real `git http-backend`, and the
//! repository's pre-receive hook streams the pushed tree back to `/internal/builds/...`, where the
//! [`Builder`] turns it into a slug and a new release.
//!
//! Custom domains (`domains`), SNI certificates (`sni`) and router timeouts (`router_settings`)
//! are stored here and pushed to the [`RouteTable`], with the app's features, page config vars
//! and maintenance flag, by [`AppState::refresh_routes`]. Log drains (`drains`) are stored here
//! and started or stopped in [`Drains`].

mod accounts;
mod addons;
pub mod auth;
mod collaborators;
mod dataclips;
mod domains;
mod drains;
pub mod error;
mod git;
mod handlers;
mod log_retention;
mod logsession;
mod pg_backups;
pub mod range;
pub mod rendezvous;
mod router_settings;
mod sni;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use slipway_build::Builder;
use slipway_drains::Drains;
use slipway_logs::LogRouter;
use slipway_manager::Manager;
use slipway_router::RouteTable;
use slipway_store::Store;

pub use git::{install_hook_script, STATUS_MARKER};
pub use handlers::ViaTls;
pub use logsession::ApiConn;

/// Settings the API needs from the server's configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Apps are served at `<app>.<base_domain>`.
    pub base_domain: String,
    /// Custom domains get a DNS target `<adjective>-<noun>-<6 hex>.<dns_target_domain>` to point
    /// a CNAME at; the operator makes that name resolve to the router.
    pub dns_target_domain: String,
    /// Port of the router's HTTP listener, for `web_url`.
    pub router_port: u16,
    /// Where the apps' bare git repositories live.
    pub repos_dir: PathBuf,
    /// Base URL the git hook uses to reach this server (loopback).
    pub internal_url: String,
    /// Path of the `slipway` binary, run by the git hook.
    pub slipway_exe: PathBuf,
    /// Stack name reported for apps and exported to builds.
    pub stack: String,
    /// Why dyno sizes cannot be enforced on this host, if they cannot (then size changes are
    /// refused rather than silently ignored).
    pub sizes_unenforceable: Option<String>,
    /// Where stacks are installed (`<name>/rootfs`).
    pub stacks_dir: PathBuf,
}

/// A push waiting for its build: created when `git-receive-pack` starts.
#[derive(Debug, Clone)]
struct PendingPush {
    app_id: String,
    account_id: String,
}

/// Everything handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub logs: LogRouter,
    /// The senders of the apps' log drains.
    pub drains: Drains,
    pub manager: Manager,
    pub builder: Arc<Builder>,
    pub routes: RouteTable,
    pub config: Arc<ApiConfig>,
    /// Where attached one-off dynos are reached; `None` when the server has no TLS listener.
    pub rendezvous: Option<rendezvous::Rendezvous>,
    /// The add-on providers; `None` when add-ons are not enabled.
    pub addons: Option<slipway_addons::Addons>,
    pushes: Arc<Mutex<HashMap<String, PendingPush>>>,
    /// Serialises [`AppState::refresh_routes`].
    refresh_lock: Arc<tokio::sync::Mutex<()>>,
    /// Serialises formation changes, which are read, computed (`web+1`) and written.
    pub(crate) formation_lock: Arc<tokio::sync::Mutex<()>>,
    /// Names of apps being destroyed: their repository and route still go by the name until
    /// the destroy is done, so a new app may not take it before.
    pub(crate) destroying: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Dataclip runs per client address.
    clip_limiter: Arc<dataclips::RateLimiter>,
}

impl AppState {
    pub fn new(
        store: Store,
        logs: LogRouter,
        drains: Drains,
        manager: Manager,
        builder: Arc<Builder>,
        routes: RouteTable,
        config: ApiConfig,
    ) -> Self {
        AppState {
            store,
            logs,
            drains,
            manager,
            builder,
            routes,
            config: Arc::new(config),
            rendezvous: None,
            addons: None,
            pushes: Arc::default(),
            refresh_lock: Arc::default(),
            formation_lock: Arc::default(),
            destroying: Arc::default(),
            clip_limiter: Arc::default(),
        }
    }

    /// Offers add-ons through `addons`.
    pub fn with_addons(mut self, addons: slipway_addons::Addons) -> Self {
        self.addons = Some(addons);
        self
    }

    /// Serves attached one-off dynos through `rendezvous`.
    pub fn with_rendezvous(mut self, rendezvous: rendezvous::Rendezvous) -> Self {
        self.rendezvous = Some(rendezvous);
        self
    }
}

/// Every response carries a `Request-Id`, as Heroku's do. The span names the matched route
/// (`/log-sessions/{token}`), never the raw path, so tokens stay out of the server's log.
async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let span =
        tracing::debug_span!("api", request_id = %id, method = %req.method(), route = %route);
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// axum answers a request it cannot take apart (a query string, a path segment, a body over
/// the limit) in plain text; the API answers every error in Heroku's JSON. Git's own routes
/// keep git's answers.
async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let git = ["/info/refs", "/git-receive-pack", "/git-upload-pack"]
        .iter()
        .any(|end| path.ends_with(end))
        || path.starts_with("/internal/");
    let resp = next.run(req).await;
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if git || !resp.status().is_client_error() || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let id = match parts.status.as_u16() {
        413 => "request_too_large",
        415 => "unsupported_media_type",
        _ => "bad_request",
    };
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = parts
            .status
            .canonical_reason()
            .unwrap_or("Bad request")
            .to_string();
    }
    if !message.ends_with('.') {
        message.push('.');
    }
    let mut out = axum::response::IntoResponse::into_response(error::ApiError::new(
        parts.status,
        id,
        message,
    ));
    if let Some(v) = parts.headers.get("request-id") {
        out.headers_mut().insert("request-id", v.clone());
    }
    out
}

/// The API's routes.
pub fn router(state: AppState) -> axum::Router {
    use handlers::*;
    axum::Router::new()
        .route("/account", get(account))
        .route("/users/~", get(account))
        .route("/account/rate-limits", get(rate_limits))
        .route("/stacks", get(list_stacks))
        .route("/stacks/{stack}", get(stack_info))
        .route("/apps", get(list_apps).post(create_app))
        .route("/users/~/apps", get(list_apps))
        .route(
            "/apps/{app}",
            get(app_info).patch(update_app).delete(delete_app),
        )
        .route(
            "/apps/{app}/config-vars",
            get(get_config).patch(patch_config),
        )
        .route("/apps/{app}/releases", get(list_releases).post(rollback))
        .route("/apps/{app}/releases/{release}", get(release_info))
        .route(
            "/apps/{app}/releases/{release}/config-vars",
            get(release_config),
        )
        .route(
            "/apps/{app}/formation",
            get(list_formation).patch(batch_formation),
        )
        .route(
            "/apps/{app}/formation/{ptype}",
            get(formation_info).patch(update_formation),
        )
        .route(
            "/apps/{app}/formations/{ptype}",
            axum::routing::delete(restart_type),
        )
        .route(
            "/apps/{app}/dynos",
            get(list_dynos).delete(restart_all).post(create_dyno),
        )
        .route("/apps/{app}/dynos/{dyno}/actions/stop", post(stop_dyno))
        .route(
            "/apps/{app}/formations/{ptype}/actions/stop",
            post(stop_formation),
        )
        .route("/apps/{app}/features", get(list_features))
        .route(
            "/apps/{app}/features/{feature}",
            get(feature_info).patch(update_feature),
        )
        .route(
            "/apps/{app}/dynos/{dyno}",
            get(dyno_info).delete(restart_dyno),
        )
        .route(
            "/apps/{app}/buildpack-installations",
            get(list_buildpacks).put(set_buildpacks),
        )
        .route(
            "/apps/{app}/domains",
            get(domains::list).post(domains::create),
        )
        .route(
            "/apps/{app}/domains/{domain}",
            get(domains::info)
                .patch(domains::update)
                .delete(domains::delete),
        )
        .route(
            "/apps/{app}/sni-endpoints",
            get(sni::list).post(sni::create),
        )
        .route(
            "/apps/{app}/sni-endpoints/{endpoint}",
            get(sni::info).patch(sni::update).delete(sni::delete),
        )
        .route(
            "/apps/{app}/router-timeouts",
            get(router_settings::list)
                .put(router_settings::set)
                .delete(router_settings::unset),
        )
        .route(
            "/apps/{app}/log-drains",
            get(drains::list).post(drains::create),
        )
        .route(
            "/apps/{app}/log-drains/{drain}",
            get(drains::info).delete(drains::delete),
        )
        .route("/addon-services", get(addons::services))
        .route("/addon-services/{service}", get(addons::service_info))
        .route("/addon-services/{service}/plans", get(addons::plans))
        .route(
            "/addon-services/{service}/plans/{plan}",
            get(addons::plan_info),
        )
        .route("/addons", get(addons::list_all))
        .route("/addons/{addon}", get(addons::info))
        .route(
            "/addons/{addon}/addon-attachments",
            get(addons::attachments_of_addon),
        )
        .route(
            "/addons/{addon}/redis",
            get(addons::redis_info).patch(addons::redis_update),
        )
        .route("/addons/{addon}/postgres", get(addons::pg_info))
        .route(
            "/addons/{addon}/postgres/activity",
            get(addons::pg_activity),
        )
        .route(
            "/addons/{addon}/postgres/activity/{pid}/actions/{action}",
            post(addons::pg_kill),
        )
        .route(
            "/addons/{addon}/postgres/actions/terminate-all",
            post(addons::pg_killall),
        )
        .route("/addons/{addon}/postgres/locks", get(addons::pg_locks))
        .route(
            "/addons/{addon}/postgres/actions/unfollow",
            post(addons::pg_unfollow),
        )
        .route(
            "/addons/{addon}/postgres/diagnose",
            post(addons::pg_diagnose),
        )
        .route("/pg-diagnose/{id}", get(addons::pg_diagnose_report))
        .route("/addons/{addon}/postgres/bloat", get(addons::pg_bloat))
        .route(
            "/addons/{addon}/postgres/index-usage",
            get(addons::pg_index_usage),
        )
        .route(
            "/addons/{addon}/postgres/cache-hit",
            get(addons::pg_cache_hit),
        )
        .route("/addons/{addon}/postgres/explain", post(addons::pg_explain))
        .route(
            "/addons/{addon}/postgres/outliers",
            get(addons::pg_outliers).delete(addons::pg_outliers_reset),
        )
        .route(
            "/addons/{addon}/postgres/credentials",
            get(addons::pg_credentials),
        )
        .route(
            "/addons/{addon}/postgres/credentials/{name}/actions/rotate",
            post(addons::pg_rotate),
        )
        .route(
            "/apps/{app}/addons",
            get(addons::list_for_app).post(addons::create),
        )
        .route(
            "/apps/{app}/addons/{addon}",
            get(addons::info_for_app)
                .patch(addons::update)
                .delete(addons::delete),
        )
        .route(
            "/apps/{app}/addon-attachments",
            get(addons::attachments_of_app),
        )
        .route(
            "/apps/{app}/addon-attachments/{attachment}",
            get(addons::attachment_of_app),
        )
        .route(
            "/addon-attachments",
            get(addons::attachments_all).post(addons::attach),
        )
        .route(
            "/addon-attachments/{attachment}",
            get(addons::attachment_info).delete(addons::detach),
        )
        .route(
            "/apps/{app}/pg-backups",
            get(pg_backups::list).post(pg_backups::capture),
        )
        .route(
            "/apps/{app}/pg-backups/{backup}",
            get(pg_backups::info).delete(pg_backups::delete),
        )
        .route(
            "/apps/{app}/pg-backups/{backup}/actions/public-url",
            post(pg_backups::public_url),
        )
        .route(
            "/apps/{app}/pg-backups/{backup}/actions/restore",
            post(pg_backups::restore),
        )
        .route(
            "/apps/{app}/pg-backup-schedules",
            get(pg_backups::schedules),
        )
        .route(
            "/apps/{app}/pg-backup-schedules/{database}",
            axum::routing::put(pg_backups::schedule).delete(pg_backups::unschedule),
        )
        .route("/pg-backups/{token}", get(pg_backups::download))
        .route(
            "/apps/{app}/dataclips",
            get(dataclips::list).post(dataclips::create),
        )
        .route(
            "/apps/{app}/dataclips/{clip}",
            get(dataclips::info)
                .patch(dataclips::update)
                .delete(dataclips::delete),
        )
        .route(
            "/apps/{app}/dataclips/{clip}/actions/rotate",
            post(dataclips::rotate),
        )
        .route(
            "/apps/{app}/dataclips/{clip}/actions/revoke",
            post(dataclips::revoke),
        )
        .route(
            "/apps/{app}/dataclips/{clip}/shares/{email}",
            axum::routing::put(dataclips::share).delete(dataclips::unshare),
        )
        .route(
            "/apps/{app}/dataclips/{clip}/result",
            get(dataclips::result),
        )
        .route("/dataclips", get(dataclips::shared_with_me))
        .route("/dataclips/{file}", get(dataclips::by_link))
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/oauth/authorizations",
            get(accounts::list_authorizations).post(accounts::create_authorization),
        )
        .route(
            "/oauth/authorizations/{id}",
            get(accounts::authorization_info).delete(accounts::delete_authorization),
        )
        .route(
            "/oauth/sessions/~",
            axum::routing::delete(accounts::delete_session),
        )
        .route(
            "/apps/{app}/collaborators",
            get(collaborators::list).post(collaborators::create),
        )
        .route(
            "/apps/{app}/collaborators/{collaborator}",
            get(collaborators::info).delete(collaborators::delete),
        )
        .route("/actions/addons/resolve", post(addons::resolve_addon))
        .route(
            "/actions/addon-attachments/resolve",
            post(addons::resolve_attachment),
        )
        .route("/apps/{app}/log-sessions", post(logsession::create))
        .route(
            "/apps/{app}/log-retention",
            get(log_retention::show).put(log_retention::set),
        )
        .route("/log-sessions/{token}", get(logsession::stream))
        .route("/internal/builds/{token}", post(git::internal_build))
        .route("/{repo}/info/refs", get(git::git_http))
        .route("/{repo}/git-receive-pack", post(git::git_http))
        .route("/{repo}/git-upload-pack", post(git::git_http))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}
