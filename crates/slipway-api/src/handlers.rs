//! Platform API handlers: account, apps, config vars, releases, formation, dynos, buildpacks.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use slipway_logs::Source;
use slipway_manager::{DynoStatus, RestartTarget};
use slipway_runtime::{DynoStdio, TtySize};
use slipway_store::{AccountRow, AppRow, NewRelease, ReleaseConfig, ReleaseRow, ReleaseSlug};
use slipway_types::*;

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::{range, AppState};

use slipway_build::BUILTIN_BUILDPACKS;

/// How the client reached the API, for URLs in answers: `http://host:port`, or `https://...`
/// over the TLS listener. A `X-Forwarded-Proto` header (from `slipway proxy`, whose own side is
/// plain HTTP on loopback) says which scheme the client itself used.
pub struct ApiHost(pub String);

/// Marks requests that came through the API's TLS listener.
#[derive(Clone, Copy, Debug)]
pub struct ViaTls;

impl FromRequestParts<AppState> for ApiHost {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("127.0.0.1:5050");
        let forwarded = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .map(str::trim);
        let scheme = match forwarded {
            Some("http") => "http",
            Some("https") => "https",
            _ if parts.extensions.get::<ViaTls>().is_some() => "https",
            _ => "http",
        };
        Ok(ApiHost(format!("{scheme}://{host}")))
    }
}

impl AppState {
    pub(crate) fn web_url(&self, app_name: &str) -> String {
        let port = self.config.router_port;
        let port = if port == 80 {
            String::new()
        } else {
            format!(":{port}")
        };
        format!("http://{app_name}.{}{port}/", self.config.base_domain)
    }

    pub(crate) async fn app_json(&self, app: &AppRow, host: &str) -> ApiResult<App> {
        let released_at = self
            .store
            .current_release(&app.id)
            .await?
            .map(|r| r.created_at);
        let stack = NamedRef {
            id: app.stack.clone(),
            name: app.stack.clone(),
        };
        Ok(App {
            id: app.id.clone(),
            name: app.name.clone(),
            owner: UserRef {
                id: app.owner_id.clone(),
                email: app.owner_email.clone(),
            },
            region: NamedRef {
                id: "local".into(),
                name: "local".into(),
            },
            stack: stack.clone(),
            build_stack: stack,
            web_url: self.web_url(&app.name),
            git_url: format!("{host}/{}.git", app.name),
            maintenance: app.maintenance,
            acm: false,
            archived_at: None,
            buildpack_provided_description: None,
            internal_routing: None,
            organization: None,
            team: None,
            space: None,
            repo_size: None,
            slug_size: None,
            created_at: app.created_at,
            released_at,
            updated_at: app.updated_at,
            boot_timeout: app.boot_timeout,
            dyno_cycling: Some(app.cycling.clone()),
            generation: slipway_types::cedar(),
        })
    }

    /// Whether `who` may use the app: its owner or a collaborator.
    pub(crate) async fn may_use(&self, who: &AccountRow, app: &AppRow) -> ApiResult<bool> {
        Ok(app.owner_id == who.id || self.store.is_collaborator(&app.id, &who.id).await?)
    }

    /// Loads an app the caller may use, by name or id; 404 otherwise.
    pub(crate) async fn load_app(&self, who: &AccountRow, name_or_id: &str) -> ApiResult<AppRow> {
        match self.store.app(name_or_id).await? {
            Some(app) if self.may_use(who, &app).await? => Ok(app),
            _ => Err(ApiError::app_not_found()),
        }
    }

    /// Loads an app only its owner may change this way (destroy, rename, collaborators).
    pub(crate) async fn owned_app(
        &self,
        who: &AccountRow,
        name_or_id: &str,
        what: &str,
    ) -> ApiResult<AppRow> {
        let app = self.load_app(who, name_or_id).await?;
        if app.owner_id != who.id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "Only {}'s owner ({}) can {what}.",
                    app.name, app.owner_email
                ),
            ));
        }
        Ok(app)
    }

    pub(crate) fn api_log(&self, app_id: &str, message: &str) {
        self.logs.emit(app_id, Source::Heroku, "api", message);
    }

    /// Creates a release and logs it; the caller runs [`Self::finish_release`].
    pub(crate) async fn create_release(
        &self,
        app: &AppRow,
        new: NewRelease,
    ) -> ApiResult<ReleaseRow> {
        let r = self.store.create_release(&app.id, new).await?;
        self.api_log(
            &app.id,
            &format!("Release v{} created by {}", r.version, r.user_email),
        );
        Ok(r)
    }

    /// Creates a release and, in the background, runs its release phase (if its slug has a
    /// `release` process) and moves the dynos to it.
    ///
    /// The router learns config var changes (`ERROR_PAGE_URL`...) at once when the release
    /// needs no release phase, else when it passes.
    pub(crate) async fn release(&self, app: &AppRow, new: NewRelease) -> ApiResult<ReleaseRow> {
        let r = self.create_release(app, new).await?;
        if let Err(e) = self.refresh_routes(app).await {
            tracing::warn!(app = %app.name, error = %e.message, "Could not refresh the app's router settings.");
        }
        let (this, app_id, id) = (self.clone(), app.id.clone(), r.id.clone());
        tokio::spawn(async move {
            let _ = this.finish_release(&app_id, &id, None).await;
        });
        Ok(r)
    }

    /// Runs a release's release phase and moves the dynos to it if it passes; logs a failure.
    /// Either way the router is then told the current release's config.
    pub(crate) async fn finish_release(
        &self,
        app_id: &str,
        release_id: &str,
        output: Option<slipway_runtime::OutputSink>,
    ) -> bool {
        let ok = self.run_release(app_id, release_id, output).await;
        if let Ok(Some(app)) = self.store.app(app_id).await {
            if let Err(e) = self.refresh_routes(&app).await {
                tracing::warn!(app = %app.name, error = %e.message, "Could not refresh the app's router settings.");
            }
        }
        ok
    }

    async fn run_release(
        &self,
        app_id: &str,
        release_id: &str,
        output: Option<slipway_runtime::OutputSink>,
    ) -> bool {
        match self
            .manager
            .finish_release(app_id, release_id, output)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                let version = self
                    .store
                    .release(app_id, release_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.version)
                    .unwrap_or(0);
                self.api_log(
                    app_id,
                    &format!("Release v{version} failed: its release command did not exit 0; the previous release keeps running"),
                );
                false
            }
            Err(error) => {
                tracing::warn!(%error, "Release phase could not run.");
                self.api_log(app_id, &format!("Release failed: {error}"));
                let _ = self.store.set_release_status(release_id, "failed").await;
                false
            }
        }
    }

    async fn release_json(&self, app: &AppRow, r: &ReleaseRow, current: i64) -> Release {
        Release {
            id: r.id.clone(),
            version: r.version,
            description: r.description.clone(),
            status: r.status.clone(),
            current: r.version == current,
            eligible_for_rollback: r.status == "succeeded",
            app: AppRef {
                id: app.id.clone(),
                name: app.name.clone(),
            },
            user: UserRef {
                id: r.user_id.clone(),
                email: r.user_email.clone(),
            },
            slug: r.slug_id.clone().map(|id| IdRef { id }),
            artifacts: r
                .slug_id
                .iter()
                .map(|id| slipway_types::Artifact {
                    kind: "slug".into(),
                    id: id.clone(),
                })
                .collect(),
            addon_plan_names: vec![],
            output_stream_url: None,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }

    async fn current_version(&self, app: &AppRow) -> ApiResult<i64> {
        Ok(self
            .store
            .current_release(&app.id)
            .await?
            .map(|r| r.version)
            .unwrap_or(0))
    }

    /// The process types of the current release's slug (empty before the first deploy).
    async fn process_types(&self, app: &AppRow) -> ApiResult<BTreeMap<String, String>> {
        let Some(release) = self.store.current_release(&app.id).await? else {
            return Ok(BTreeMap::new());
        };
        let Some(slug_id) = release.slug_id else {
            return Ok(BTreeMap::new());
        };
        Ok(self
            .store
            .slug(&slug_id)
            .await?
            .map(|s| s.process_types)
            .unwrap_or_default())
    }

    async fn formation_json(&self, app: &AppRow) -> ApiResult<Vec<Formation>> {
        let types = self.process_types(app).await?;
        let rows = self.store.formation(&app.id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|f| {
                let command = types.get(&f.process_type)?.clone();
                Some(Formation {
                    id: f.id,
                    app: AppRef {
                        id: app.id.clone(),
                        name: app.name.clone(),
                    },
                    process_type: f.process_type,
                    quantity: f.quantity,
                    dyno_size: Some(NamedRef {
                        id: slipway_types::sizes::size_id(&f.size),
                        name: f.size.clone(),
                    }),
                    size: f.size,
                    command,
                    created_at: f.created_at,
                    updated_at: f.updated_at,
                })
            })
            .collect())
    }

    fn dyno_json(&self, app: &AppRow, d: DynoStatus) -> Dyno {
        Dyno {
            id: d.id,
            name: d.name,
            process_type: d.process_type,
            size: d.size,
            state: d.state.as_str().to_string(),
            command: d.command,
            app: AppRef {
                id: app.id.clone(),
                name: app.name.clone(),
            },
            release: ReleaseRef {
                id: d.release_id,
                version: d.release_version,
            },
            attach_url: None,
            created_at: d.created_at,
            updated_at: d.updated_at,
            restart_at: d.restart_at,
        }
    }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This method is not allowed on this path. See the Platform API v3 reference.",
    )
}

pub async fn not_found() -> ApiError {
    ApiError::not_found(
        "path",
        "Not found: no such API path. See the Platform API v3 reference.",
    )
}

// ---- account ------------------------------------------------------------------------------

pub async fn account(Auth(who): Auth) -> Json<Account> {
    Json(Account::new(
        who.id,
        who.email,
        who.name,
        who.created_at,
        who.updated_at,
    ))
}

pub async fn rate_limits(Auth(_): Auth) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "remaining": 4500 }))
}

// ---- stacks -------------------------------------------------------------------------------

/// The stacks this server has: the configured default first, then installed ones by name.
fn stacks(s: &AppState) -> Vec<serde_json::Value> {
    let mut names = vec![s.config.stack.clone()];
    if let Ok(dir) = std::fs::read_dir(&s.config.stacks_dir) {
        let mut more: Vec<String> = dir
            .flatten()
            .filter(|e| e.path().join("rootfs").is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| *n != s.config.stack)
            .collect();
        more.sort();
        names.extend(more);
    }
    names
        .into_iter()
        .map(|name| {
            let created = std::fs::metadata(s.config.stacks_dir.join(&name))
                .and_then(|m| m.modified())
                .map(chrono::DateTime::<chrono::Utc>::from)
                .unwrap_or_else(|_| chrono::Utc::now());
            serde_json::json!({
                "id": name,
                "name": name,
                "state": "active",
                "default": name == s.config.stack,
                "created_at": created,
                "updated_at": created,
            })
        })
        .collect()
}

pub async fn list_stacks(State(s): State<AppState>, Auth(_): Auth) -> Json<Vec<serde_json::Value>> {
    Json(stacks(&s))
}

pub async fn stack_info(
    State(s): State<AppState>,
    Auth(_): Auth,
    Path(stack): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    stacks(&s)
        .into_iter()
        .find(|v| v["name"] == stack.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found("stack", format!("Couldn't find that stack ({stack}).")))
}

// ---- apps ---------------------------------------------------------------------------------

pub async fn list_apps(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mut out = Vec::new();
    let collaborated = s.store.collaborated_app_ids(&who.id).await?;
    for app in s
        .store
        .apps()
        .await?
        .into_iter()
        .filter(|a| a.owner_id == who.id || collaborated.contains(&a.id))
    {
        out.push(s.app_json(&app, &host).await?);
    }
    Ok(range::respond(
        &headers,
        "id",
        out,
        |a, f| match f {
            "name" => a.name.clone(),
            "created_at" => a.created_at.to_rfc3339(),
            _ => a.id.clone(),
        },
        |_| false,
    ))
}

#[derive(Deserialize, Default)]
struct CreateApp {
    #[serde(default)]
    name: Option<String>,
}

pub async fn create_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CreateApp = parse_json(&body)?;
    let app = match req.name {
        Some(name) => {
            validate_app_name(&name).map_err(ApiError::invalid)?;
            if s.destroying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&name)
            {
                return Err(ApiError::invalid(format!(
                    "Name {name} belongs to an app still being destroyed; try again in a moment."
                )));
            }
            let app = match s.store.create_app(&name, &who).await {
                Err(slipway_store::StoreError::Conflict(_)) => {
                    return Err(ApiError::invalid(format!("Name {name} is already taken")))
                }
                other => other?,
            };
            // A destroy that took the name between the check above and the insert: it marks
            // the name before it frees it, so it is seen here.
            if s.destroying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&name)
            {
                s.store.delete_app(&app.id).await?;
                return Err(ApiError::invalid(format!(
                    "Name {name} belongs to an app still being destroyed; try again in a moment."
                )));
            }
            app
        }
        None => {
            let mut tries = 0;
            loop {
                match s.store.create_app(&generate_app_name(), &who).await {
                    Err(slipway_store::StoreError::Conflict(_)) if tries < 20 => tries += 1,
                    other => break other?,
                }
            }
        }
    };
    crate::git::init_repo(&s, &app.name).await?;
    s.routes_register(&app).await;
    s.api_log(&app.id, &format!("Release v1 created by {}", who.email));
    Ok((StatusCode::CREATED, Json(s.app_json(&app, &host).await?)).into_response())
}

impl AppState {
    /// Makes the router know an app (with no dynos yet), so its host answers 503 H14, not 404,
    /// with its domains, certificates, features and timeouts. Used at app creation and server
    /// start; a store failure is logged, and the app is still routed with default settings.
    pub async fn routes_register(&self, app: &AppRow) {
        use slipway_types::RouteSink;
        if self.routes.backends(&app.name).is_none() {
            self.routes.set_backends(&app.id, &app.name, vec![]);
        }
        if let Err(e) = self.refresh_routes(app).await {
            tracing::warn!(app = %app.name, error = %e.message, "Could not load the app's router settings.");
        }
    }
}

pub async fn app_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path(app): Path<String>,
) -> ApiResult<Json<App>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(s.app_json(&app, &host).await?))
}

#[derive(Deserialize)]
struct UpdateApp {
    #[serde(default)]
    build_stack: Option<serde_json::Value>,
    #[serde(default)]
    maintenance: Option<bool>,
    /// Present with `null` resets to the server's default.
    #[serde(default, deserialize_with = "present")]
    boot_timeout: Option<Option<serde_json::Value>>,
    #[serde(default)]
    dyno_cycling: Option<String>,
}

/// Tells a field sent as `null` (Some(None)) from one not sent (None).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<serde_json::Value>>, D::Error> {
    Ok(Some(Option::<serde_json::Value>::deserialize(d)?))
}

/// `PATCH /apps/{app}`: `build_stack` (a name, or `{"name": ...}`) sets the stack of the next
/// build; `maintenance` turns maintenance mode on or off; Slipway's `boot_timeout` (seconds,
/// 1–120, `null` for the default) and `dyno_cycling` (`daily`, `off`, `HH:MM` UTC) set how the
/// app's dynos are managed.
pub async fn update_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<App>> {
    let app = s.load_app(&who, &app).await?;
    let req: UpdateApp = parse_json(&body)?;
    if let Some(stack) = req.build_stack {
        let name = match &stack {
            serde_json::Value::String(n) => n.clone(),
            serde_json::Value::Object(o) => o
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        if !stacks(&s).iter().any(|st| st["name"] == name.as_str()) {
            return Err(ApiError::invalid(format!(
                "Stack {name:?} is not installed on this server. See slipway stacks; install one with slipway stacks:install debian-12 (as root, on the server)."
            )));
        }
        s.store.set_stack(&app.id, &name).await?;
        s.api_log(&app.id, &format!("Set stack to {name} by {}", who.email));
    }
    let max = slipway_manager::MAX_BOOT_TIMEOUT;
    let boot_timeout = match req.boot_timeout {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => match v.as_u64().or_else(|| {
            v.as_str()
                .and_then(|s| s.trim_end_matches('s').parse().ok())
        }) {
            Some(n) if (1..=u64::from(max)).contains(&n) => Some(Some(n as u32)),
            _ => {
                return Err(ApiError::invalid(format!(
                    "boot_timeout must be a number of seconds from 1 to {max}."
                )))
            }
        },
    };
    let cycling = match &req.dyno_cycling {
        Some(c) => Some(
            slipway_manager::Cycling::parse(c)
                .map_err(ApiError::invalid)?
                .as_setting(),
        ),
        None => None,
    };
    if let Some(secs) = boot_timeout {
        s.store.set_boot_timeout(&app.id, secs).await?;
        let shown = secs.map_or("the default".to_string(), |s| format!("{s} seconds"));
        s.api_log(
            &app.id,
            &format!("Set boot timeout to {shown} by {}", who.email),
        );
        s.manager.schedule(&app.id);
    }
    if let Some(c) = cycling {
        s.store.set_cycling(&app.id, &c).await?;
        s.api_log(
            &app.id,
            &format!("Set dyno cycling to {c} by {}", who.email),
        );
        s.manager.schedule(&app.id);
    }
    if let Some(on) = req.maintenance {
        if on != app.maintenance {
            s.store.set_maintenance(&app.id, on).await?;
            s.refresh_routes(&app).await?;
            let what = if on { "Enable" } else { "Disable" };
            s.api_log(
                &app.id,
                &format!("{what} Maintenance mode by {}", who.email),
            );
        }
    }
    let app = s.load_app(&who, &app.id).await?;
    Ok(Json(s.app_json(&app, &host).await?))
}

pub async fn delete_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path(app): Path<String>,
) -> ApiResult<Json<App>> {
    let app = s.owned_app(&who, &app, "destroy it").await?;
    let json = s.app_json(&app, &host).await?;
    // Its add-ons go with it (detached from other apps first); add-ons it only uses stay.
    if s.addons.is_some() {
        for addon in s.store.addons_billed_to(&app.id).await? {
            s.destroy_addon(&addon, &who).await?;
        }
    }
    // The name stays taken until its repository and route are gone (they go by the name).
    struct Destroying<'a>(&'a AppState, String);
    impl Drop for Destroying<'_> {
        fn drop(&mut self) {
            self.0
                .destroying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.1);
        }
    }
    s.destroying
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(app.name.clone());
    let _destroying = Destroying(&s, app.name.clone());
    // The row goes first, so a reconcile that runs meanwhile finds no app to start dynos for.
    s.store.delete_app(&app.id).await?;
    s.manager.remove_app(&app.id, &app.name).await;
    s.logs.remove_app(&app.id);
    crate::git::remove_repo(&s, &app.name).await;
    // Its build cache too, once a build still running for it has stopped.
    let builder = s.builder.clone();
    let app_id = app.id.clone();
    tokio::spawn(async move {
        if let Err(error) = builder.purge_cache(&app_id).await {
            tracing::warn!(app_id = %app_id, %error, "Could not remove a destroyed app's build cache.");
        }
    });
    Ok(Json(json))
}

// ---- config vars --------------------------------------------------------------------------

pub async fn get_config(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<ConfigVars>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(
        s.store
            .current_release(&app.id)
            .await?
            .map(|r| r.config)
            .unwrap_or_default(),
    ))
}

pub async fn patch_config(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<ConfigVars>> {
    let app = s.load_app(&who, &app).await?;
    let changes: BTreeMap<String, serde_json::Value> = parse_json(&body)?;
    // What is a change is judged against what the new release will be built on: the newest
    // one not failed, which may still be in its release phase (an unset of a var set there
    // is a change, not a no-op).
    let current = s
        .store
        .newest_release(&app.id)
        .await?
        .ok_or_else(|| ApiError::internal("app has no release"))?;
    let config = current.config;
    let (mut set, mut removed) = (Vec::new(), Vec::new());
    let mut patch = BTreeMap::new();
    let owned = s.attachment_vars(&app.id).await?;
    let clashing: Vec<&str> = changes
        .keys()
        .filter(|k| owned.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !clashing.is_empty() {
        return Err(ApiError::invalid(format!(
            "Cannot overwrite attachment values {}. They belong to add-ons (slipway addons); \
             detach the add-on to remove them.",
            clashing.join(", ")
        )));
    }
    for (key, value) in changes {
        validate_config_key(&key).map_err(ApiError::invalid)?;
        match value {
            serde_json::Value::Null => {
                if config.contains_key(&key) {
                    removed.push(key.clone());
                    patch.insert(key, None);
                }
            }
            serde_json::Value::String(v) if v.contains('\0') => {
                return Err(ApiError::invalid(format!(
                    "Invalid value for config var {key}: values cannot contain NUL characters."
                )))
            }
            serde_json::Value::String(v) => {
                if config.get(&key) != Some(&v) {
                    set.push(key.clone());
                    patch.insert(key, Some(v));
                }
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid value for config var {key}: {other}. Values must be strings, or null to unset."
                )))
            }
        }
    }
    if set.is_empty() && removed.is_empty() {
        return Ok(Json(config));
    }
    let description = match (set.is_empty(), removed.is_empty()) {
        (false, true) => format!("Set {} config vars", set.join(", ")),
        (true, false) => format!("Remove {} config vars", removed.join(", ")),
        _ => format!(
            "Set {} and remove {} config vars",
            set.join(", "),
            removed.join(", ")
        ),
    };
    s.api_log(&app.id, &format!("{description} by {}", who.email));
    let r = s
        .release(
            &app,
            NewRelease {
                slug: ReleaseSlug::Inherit,
                config: ReleaseConfig::Patch(patch),
                description,
                user_email: who.email.clone(),
                user_id: who.id.clone(),
            },
        )
        .await?;
    Ok(Json(r.config))
}

// ---- releases -----------------------------------------------------------------------------

pub async fn list_releases(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let current = s.current_version(&app).await?;
    let mut out = Vec::new();
    for r in s.store.releases(&app.id).await? {
        out.push(s.release_json(&app, &r, current).await);
    }
    Ok(range::respond(
        &headers,
        "version",
        out,
        |r, f| match f {
            "id" => r.id.clone(),
            "created_at" => r.created_at.to_rfc3339(),
            _ => r.version.to_string(),
        },
        |f| f == "version",
    ))
}

async fn find_release(s: &AppState, app: &AppRow, which: &str) -> ApiResult<ReleaseRow> {
    s.store.release(&app.id, which).await?.ok_or_else(|| {
        ApiError::not_found("release", format!("Couldn't find that release ({which})."))
    })
}

pub async fn release_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, release)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    let app = s.load_app(&who, &app).await?;
    let r = find_release(&s, &app, &release).await?;
    let current = s.current_version(&app).await?;
    Ok(Json(s.release_json(&app, &r, current).await))
}

pub async fn release_config(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, release)): Path<(String, String)>,
) -> ApiResult<Json<ConfigVars>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(find_release(&s, &app, &release).await?.config))
}

#[derive(Deserialize)]
struct RollbackBody {
    release: serde_json::Value,
}

pub async fn rollback(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: RollbackBody = parse_json(&body)?;
    let which = match req.release {
        serde_json::Value::String(v) => v,
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(ApiError::invalid(
                "Give the release to roll back to as an id or a version number.",
            ))
        }
    };
    let target = find_release(&s, &app, &which).await?;
    if target.status != "succeeded" {
        return Err(ApiError::invalid(format!(
            "Release v{} failed and cannot be rolled back to.",
            target.version
        )));
    }
    let description = format!("Rollback to v{}", target.version);
    s.api_log(&app.id, &format!("{description} by {}", who.email));
    // Add-on config vars stay as they are now: a rollback never brings back a rotated password
    // or a destroyed database's URL, nor drops an add-on attached since.
    let mut config = target.config.clone();
    config.extend(s.attachment_vars(&app.id).await?);
    let r = s
        .release(
            &app,
            NewRelease {
                slug: ReleaseSlug::Exactly(target.slug_id.clone()),
                config: ReleaseConfig::Exactly(config),
                description,
                user_email: who.email.clone(),
                user_id: who.id.clone(),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(s.release_json(&app, &r, r.version).await),
    )
        .into_response())
}

// ---- formation ----------------------------------------------------------------------------

pub async fn list_formation(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let out = s.formation_json(&app).await?;
    Ok(range::respond(
        &headers,
        "type",
        out,
        |f, fld| {
            if fld == "id" {
                f.id.clone()
            } else {
                f.process_type.clone()
            }
        },
        |_| false,
    ))
}

pub async fn formation_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, ptype)): Path<(String, String)>,
) -> ApiResult<Json<Formation>> {
    let app = s.load_app(&who, &app).await?;
    s.formation_json(&app)
        .await?
        .into_iter()
        .find(|f| f.process_type == ptype)
        .map(Json)
        .ok_or_else(|| no_such_type(&ptype))
}

fn no_such_type(ptype: &str) -> ApiError {
    ApiError::not_found(
        "formation",
        format!("Couldn't find that process type ({ptype})."),
    )
}

#[derive(Deserialize)]
struct FormationUpdate {
    #[serde(rename = "type", default)]
    process_type: Option<String>,
    #[serde(default)]
    quantity: Option<serde_json::Value>,
    #[serde(default)]
    size: Option<String>,
}

#[derive(Deserialize)]
struct BatchUpdate {
    updates: Vec<FormationUpdate>,
}

/// Validates and applies formation updates; returns the changed types.
async fn apply_formation(
    s: &AppState,
    who: &AccountRow,
    app: &AppRow,
    updates: Vec<FormationUpdate>,
) -> ApiResult<Vec<String>> {
    let types = s.process_types(app).await?;
    // One change at a time: two `web+1` at once make 2 more, not 1, and a size change does not
    // write back a quantity another change has just replaced.
    let _serial = s.formation_lock.lock().await;
    let current = s.store.formation(&app.id).await?;
    let mut rows = Vec::new();
    for u in updates {
        let ptype = u
            .process_type
            .ok_or_else(|| ApiError::invalid("Each formation update needs a \"type\"."))?;
        if !types.contains_key(&ptype) {
            return Err(no_such_type(&ptype));
        }
        if let Some(size) = &u.size {
            if let Some(reason) = &s.config.sizes_unenforceable {
                return Err(ApiError::invalid(format!(
                    "Cannot change dyno sizes on this host: {reason}. Run the server as root on a host with cgroups to use sizes."
                )));
            }
            if dyno_size(size).is_none() {
                let names: Vec<&str> = DYNO_SIZES.iter().map(|s| s.name).collect();
                return Err(ApiError::invalid(format!(
                    "Invalid dyno size {size}. Choose one of: {}.",
                    names.join(", ")
                )));
            }
        }
        let row = current.iter().find(|f| f.process_type == ptype);
        let quantity = match &u.quantity {
            Some(q) => QuantityChange::from_json(q)
                .map_err(ApiError::invalid)?
                .apply(row.map_or(0, |r| r.quantity)),
            None => row.map_or(0, |r| r.quantity),
        };
        if quantity > 100 {
            return Err(ApiError::invalid(
                "Cannot scale a process type above 100 dynos.",
            ));
        }
        rows.push((ptype, quantity, u.size.map(|s| s.to_ascii_lowercase())));
    }
    s.store.update_formation(&app.id, &rows).await?;
    let after = s.store.formation(&app.id).await?;
    let desc: Vec<String> = rows
        .iter()
        .filter_map(|(t, _, _)| after.iter().find(|f| &f.process_type == t))
        .map(|f| format!("{}@{}:{}", f.process_type, f.quantity, f.size))
        .collect();
    s.api_log(
        &app.id,
        &format!("Scaled to {} by user {}", desc.join(", "), who.email),
    );
    s.manager.schedule(&app.id);
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn batch_formation(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Vec<Formation>>> {
    let app = s.load_app(&who, &app).await?;
    let req: BatchUpdate = parse_json(&body)?;
    apply_formation(&s, &who, &app, req.updates).await?;
    Ok(Json(s.formation_json(&app).await?))
}

pub async fn update_formation(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, ptype)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Formation>> {
    let app = s.load_app(&who, &app).await?;
    let mut u: FormationUpdate = parse_json(&body)?;
    u.process_type = Some(ptype.clone());
    apply_formation(&s, &who, &app, vec![u]).await?;
    s.formation_json(&app)
        .await?
        .into_iter()
        .find(|f| f.process_type == ptype)
        .map(Json)
        .ok_or_else(|| no_such_type(&ptype))
}

// ---- dynos --------------------------------------------------------------------------------

pub async fn list_dynos(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let out: Vec<Dyno> = s
        .manager
        .dynos(&app.id)
        .into_iter()
        .map(|d| s.dyno_json(&app, d))
        .collect();
    Ok(range::respond(
        &headers,
        "name",
        out,
        |d, f| {
            if f == "id" {
                d.id.clone()
            } else {
                d.name.clone()
            }
        },
        |_| false,
    ))
}

#[derive(Deserialize)]
struct CreateDyno {
    command: Option<String>,
    #[serde(default)]
    attach: Option<bool>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    force_no_tty: Option<bool>,
}

/// `POST /apps/{app}/dynos`: a one-off dyno (`run.N`); attached (`attach: true`) it runs in a
/// terminal (pipes with `force_no_tty`) reached through the `attach_url`.
pub async fn create_dyno(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    headers: HeaderMap,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: CreateDyno = parse_json(&body)?;
    let command = req
        .command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Give a command to run."))?;
    let attach = req.attach == Some(true);
    let rendezvous = match (attach, &s.rendezvous) {
        (false, _) => None,
        (true, Some(r)) => Some(r.clone()),
        (true, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_available",
                "This server has no rendezvous listener for attached dynos; use run:detached and read the output with logs.",
            ))
        }
    };
    let size = req.size.unwrap_or_else(|| "basic".into());
    if dyno_size(&size).is_none() {
        return Err(ApiError::invalid(format!("Invalid dyno size {size}.")));
    }
    let mut env = BTreeMap::new();
    for (k, v) in req.env.unwrap_or_default() {
        validate_config_key(&k).map_err(ApiError::invalid)?;
        let v = match v {
            serde_json::Value::String(v) => v,
            other => other.to_string(),
        };
        env.insert(k, v);
    }
    let stdio = if !attach {
        DynoStdio::Logs
    } else if req.force_no_tty == Some(true) {
        DynoStdio::Pipes
    } else {
        let dim = |k: &str, d: u16| {
            env.get(k)
                .and_then(|v| v.trim().parse::<u16>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(d)
        };
        DynoStdio::Tty(TtySize {
            cols: dim("COLUMNS", 80),
            rows: dim("LINES", 24),
        })
    };
    let (dyno, attached) = match s
        .manager
        .run_oneoff(
            &app.id,
            &command,
            &size.to_ascii_lowercase(),
            env,
            &who.email,
            stdio,
        )
        .await
    {
        Err(slipway_manager::ManagerError::NotDeployed) => {
            return Err(ApiError::invalid(
                "This app has no release to run yet: deploy it with git push first.",
            ))
        }
        other => other?,
    };
    s.api_log(
        &app.id,
        &format!(
            "Starting process with command `{command}` by user {}",
            who.email
        ),
    );
    let mut body = s.dyno_json(&app, dyno);
    if let (Some(r), Some(attached)) = (rendezvous, attached) {
        let secret = r.register(&app.id, &body.name, attached);
        // Through `slipway proxy` the client sees the API on loopback; the rendezvous endpoint
        // is reached directly, on the host the proxy connects to.
        let remote = headers
            .get("x-slipway-remote-host")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            });
        let host = host.split_once("://").map_or(host.as_str(), |(_, h)| h);
        body.attach_url = Some(format!(
            "rendezvous://{}:{}/{secret}",
            remote.unwrap_or_else(|| host_name(host)),
            r.port
        ));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The host part of a `Host` header (`[::1]:5050` → `[::1]`, `localhost:5050` → `localhost`).
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && (host.starts_with('[') || !host[..i].contains(':')) =>
        {
            &host[..i]
        }
        _ => host,
    }
}

/// `POST /apps/{app}/dynos/{dyno}/actions/stop`.
pub async fn stop_dyno(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    if !s.manager.dynos(&app.id).iter().any(|d| d.name == dyno) {
        return Err(ApiError::not_found(
            "dyno",
            format!("Couldn't find that dyno ({dyno})."),
        ));
    }
    s.api_log(&app.id, &format!("Stop {dyno} by user {}", who.email));
    let (m, id) = (s.manager.clone(), app.id.clone());
    tokio::spawn(async move {
        if let Err(error) = m.stop_dyno(&id, &dyno).await {
            tracing::warn!(%error, "Stop failed.");
        }
    });
    Ok(Json(serde_json::json!({})))
}

pub async fn dyno_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Json<Dyno>> {
    let app = s.load_app(&who, &app).await?;
    s.manager
        .dynos(&app.id)
        .into_iter()
        .find(|d| d.name == dyno || d.id == dyno)
        .map(|d| Json(s.dyno_json(&app, d)))
        .ok_or_else(|| ApiError::not_found("dyno", format!("Couldn't find that dyno ({dyno}).")))
}

async fn restart(
    s: &AppState,
    who: &AccountRow,
    app: &AppRow,
    target: RestartTarget,
) -> Json<serde_json::Value> {
    s.api_log(&app.id, &format!("Restart by user {}", who.email));
    let (m, id) = (s.manager.clone(), app.id.clone());
    tokio::spawn(async move {
        if let Err(error) = m.restart(&id, target).await {
            tracing::warn!(%error, "Restart failed.");
        }
    });
    Json(serde_json::json!({}))
}

pub async fn restart_all(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    Ok(restart(&s, &who, &app, RestartTarget::All).await)
}

pub async fn restart_type(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, ptype)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    if !s.process_types(&app).await?.contains_key(&ptype) {
        return Err(no_such_type(&ptype));
    }
    Ok(restart(&s, &who, &app, RestartTarget::Type(ptype)).await)
}

pub async fn restart_dyno(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    // A dyno that is being replaced (after a deploy or config change) is still a valid name.
    let running = s.manager.dynos(&app.id).iter().any(|d| d.name == dyno);
    let in_formation = match dyno.rsplit_once('.') {
        Some((ptype, n)) => match n.parse::<u32>() {
            Ok(n) if n >= 1 => s
                .formation_json(&app)
                .await?
                .iter()
                .any(|f| f.process_type == ptype && f.quantity >= n),
            _ => false,
        },
        None => false,
    };
    if !running && !in_formation {
        // A process type in the dyno's place restarts all of its dynos, as Heroku's API does
        // for the CLI's older `ps:restart web`.
        let is_type = !dyno.contains('.')
            && s.formation_json(&app)
                .await?
                .iter()
                .any(|f| f.process_type == dyno && f.quantity > 0);
        if is_type {
            return Ok(restart(&s, &who, &app, RestartTarget::Type(dyno)).await);
        }
        return Err(ApiError::not_found(
            "dyno",
            format!("Couldn't find that dyno ({dyno})."),
        ));
    }
    Ok(restart(&s, &who, &app, RestartTarget::Dyno(dyno)).await)
}

// ---- buildpacks ---------------------------------------------------------------------------

fn buildpack_json(list: &[String]) -> Vec<BuildpackInstallation> {
    list.iter()
        .enumerate()
        .map(|(i, b)| BuildpackInstallation {
            ordinal: i as u32,
            buildpack: BuildpackRef {
                url: b.clone(),
                name: b.clone(),
            },
        })
        .collect()
}

pub async fn list_buildpacks(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<BuildpackInstallation>>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(buildpack_json(&app.buildpacks)))
}

#[derive(Deserialize)]
struct BuildpackUpdate {
    buildpack: String,
}

#[derive(Deserialize)]
struct BuildpackUpdates {
    updates: Vec<BuildpackUpdate>,
}

/// Checks a buildpack reference: a built-in name (also as `heroku/<name>`), an absolute path, or
/// a git URL. Returns its normal form.
pub fn normalize_buildpack(b: &str) -> Result<String, String> {
    let b = b.trim();
    let short = b.strip_prefix("heroku/").unwrap_or(b);
    let short = if short == "node" || short == "nodejs" {
        "nodejs"
    } else {
        short
    };
    if BUILTIN_BUILDPACKS.contains(&short) {
        return Ok(short.to_string());
    }
    if b.starts_with('/')
        || ["https://", "http://", "git://", "file://"]
            .iter()
            .any(|p| b.starts_with(p))
    {
        return Ok(b.to_string());
    }
    Err(format!(
        "Invalid buildpack {b:?}: use a built-in one ({}), an absolute path, or a git URL.",
        BUILTIN_BUILDPACKS.join(", ")
    ))
}

pub async fn set_buildpacks(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Vec<BuildpackInstallation>>> {
    let app = s.load_app(&who, &app).await?;
    let req: BuildpackUpdates = parse_json(&body)?;
    let list = req
        .updates
        .iter()
        .map(|u| normalize_buildpack(&u.buildpack))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::invalid)?;
    for b in &list {
        s.builder
            .check_buildpack(b)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    s.store.set_buildpacks(&app.id, &list).await?;
    Ok(Json(buildpack_json(&list)))
}

/// `POST /apps/{app}/formations/{type}/actions/stop`: stops every dyno of a type (`ps:stop web`);
/// formation dynos start again.
pub async fn stop_formation(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, ptype)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    if !s
        .manager
        .dynos(&app.id)
        .iter()
        .any(|d| d.process_type == ptype)
    {
        return Err(ApiError::not_found(
            "dyno",
            format!("Couldn't find any {ptype} dynos."),
        ));
    }
    s.api_log(
        &app.id,
        &format!("Stop {ptype} dynos by user {}", who.email),
    );
    let (m, id) = (s.manager.clone(), app.id.clone());
    tokio::spawn(async move {
        if let Err(error) = m.stop_type(&id, &ptype).await {
            tracing::warn!(%error, "Stop failed.");
        }
    });
    Ok(Json(serde_json::json!({})))
}

// ---- features -----------------------------------------------------------------------------

/// The app features Slipway has: (name, stable id, display name, description).
const FEATURES: &[(&str, &str, &str, &str)] = &[
    (
        "preboot",
        "3c1a1d4e-6f0b-4d52-9a1e-5b7f0c2d8e01",
        "Preboot",
        "New web dynos start and must be up before the router switches to them; the old ones then get SIGTERM and finish their requests.",
    ),
    (
        "http-session-affinity",
        "6a0f3c52-1d7e-4b8a-9c31-2e5d7f4a8b02",
        "HTTP Session Affinity",
        "The router pins each client to one web dyno with the heroku-session-affinity cookie; clients are re-pointed when the formation changes.",
    ),
    (
        "http-least-outstanding",
        "8d2b6e14-3f9a-4c75-b0e8-7a1c5d9f3e03",
        "HTTP Least Outstanding Requests",
        "The router picks two web dynos at random and sends the request to the one with fewer requests in flight, instead of to one at random.",
    ),
    (
        "http2-to-dyno",
        "b47e9a21-5c3d-4e86-a1f2-9d0b3c6e7f04",
        "HTTP/2 to Dynos",
        "End-to-end HTTP/2 to web dynos (for gRPC): the app must speak HTTP/2 cleartext with prior knowledge on $PORT.",
    ),
    (
        "http-to-https-redirect",
        "e5c81f37-9a2b-4d64-8e17-4b3f6a0d2c05",
        "HTTP to HTTPS Redirect",
        "Plain HTTP requests are redirected to HTTPS: 301 for GET and HEAD, 308 for other methods.",
    ),
];

fn feature_json(
    (name, id, display, description): (&str, &str, &str, &str),
    enabled_at: Option<chrono::DateTime<chrono::Utc>>,
    app: &AppRow,
) -> serde_json::Value {
    let at = enabled_at.unwrap_or(app.created_at);
    serde_json::json!({
        "id": id,
        "name": name,
        "display_name": display,
        "description": description,
        "doc_url": "",
        "enabled": enabled_at.is_some(),
        "state": "general",
        "feedback_email": "",
        "created_at": at,
        "updated_at": at,
    })
}

async fn find_feature(s: &AppState, app: &AppRow, name: &str) -> ApiResult<serde_json::Value> {
    let f = FEATURES
        .iter()
        .find(|f| f.0 == name || f.1 == name)
        .ok_or_else(|| {
            ApiError::not_found(
                "app-feature",
                format!(
                    "Couldn't find that feature ({name}). Features: {}.",
                    FEATURES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
    let on = s.store.features(&app.id).await?;
    let at = on.iter().find(|(n, _)| n == f.0).map(|(_, t)| *t);
    Ok(feature_json(*f, at, app))
}

/// `GET /apps/{app}/features`.
pub async fn list_features(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let app = s.load_app(&who, &app).await?;
    let on = s.store.features(&app.id).await?;
    Ok(Json(
        FEATURES
            .iter()
            .map(|f| {
                let at = on.iter().find(|(n, _)| n == f.0).map(|(_, t)| *t);
                feature_json(*f, at, &app)
            })
            .collect(),
    ))
}

/// `GET /apps/{app}/features/{feature}`.
pub async fn feature_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, feature)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(find_feature(&s, &app, &feature).await?))
}

#[derive(Deserialize)]
struct UpdateFeature {
    enabled: Option<bool>,
}

/// `PATCH /apps/{app}/features/{feature}` with `{"enabled": true|false}`.
pub async fn update_feature(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, feature)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let app = s.load_app(&who, &app).await?;
    let req: UpdateFeature = parse_json(&body)?;
    let enabled = req
        .enabled
        .ok_or_else(|| ApiError::invalid("Send {\"enabled\": true} or {\"enabled\": false}."))?;
    let current = find_feature(&s, &app, &feature).await?;
    let name = current["name"].as_str().unwrap_or_default().to_string();
    if current["enabled"] != enabled {
        s.store.set_feature(&app.id, &name, enabled).await?;
        let what = if enabled { "Enable" } else { "Disable" };
        s.api_log(&app.id, &format!("{what} {name} feature by {}", who.email));
        s.refresh_routes(&app).await?;
    }
    Ok(Json(find_feature(&s, &app, &name).await?))
}
