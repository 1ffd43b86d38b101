//! Add-ons in Heroku's shape: `/addon-services`, `/apps/{app}/addons`, `/addons`,
//! `/addon-attachments`, `/actions/addons/resolve`, `/actions/addon-attachments/resolve`, and
//! Slipway's `/addons/{addon}/redis` for `redis:info` and `redis:maxmemory`.
//!
//! An add-on is billed to one app and attached to one or more; each attachment `NAME` gives its
//! app `NAME_<SUFFIX>` for every value the provider returned (`REDIS_URL`). Every change of
//! attachments makes a release on the app it touches. An add-on is visible to the owner of its
//! billing app or of any app it is attached to; to everyone else it does not exist (404).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use slipway_addons::{AddonError, Addons, Kind, Plan, Service};
use slipway_store::{
    AccountRow, AddonRow, AppRow, AttachmentRow, NewAddon, NewRelease, ReleaseConfig, ReleaseSlug,
};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::{range, AppState};

impl From<AddonError> for ApiError {
    fn from(e: AddonError) -> Self {
        match e {
            AddonError::Refused(m) => ApiError::invalid(m),
            AddonError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", m)
            }
            AddonError::Store(e) => e.into(),
            AddonError::Io(m) => ApiError::internal(m),
        }
    }
}

/// How a new Postgres database is made from another.
#[derive(Debug, Clone, Copy)]
enum Copy {
    Follower,
    Fork,
    Rollback(chrono::DateTime<chrono::Utc>),
}

/// `--to 'TIME'` (RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in UTC) or `--by '3 hours'`.
fn rollback_target(
    to: Option<&String>,
    by: Option<&String>,
) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    match (to, by) {
        (Some(t), None) => {
            let t = t.trim().trim_end_matches(" UTC").trim_end_matches('Z');
            chrono::DateTime::parse_from_rfc3339(&format!("{t}Z"))
                .or_else(|_| chrono::DateTime::parse_from_rfc3339(t))
                .map(|d| d.with_timezone(&chrono::Utc))
                .ok()
                .or_else(|| {
                    [
                        "%Y-%m-%d %H:%M:%S%.f",
                        "%Y-%m-%d %H:%M:%S",
                        "%Y-%m-%d %H:%M",
                    ]
                    .iter()
                    .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
                    .map(|n| n.and_utc())
                })
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "--to {t:?} is not a time such as '2026-11-26 14:00:00 UTC'."
                    ))
                })
        }
        (None, Some(b)) => humantime::parse_duration(&b.replace(' ', ""))
            .map_err(|_| {
                ApiError::invalid(format!("--by {b:?} is not a duration such as '3 hours'."))
            })
            .and_then(|d| {
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
                    .ok_or_else(|| ApiError::invalid("--by is too long."))
            }),
        _ => Err(ApiError::invalid(
            "A rollback needs either --to 'TIME' or --by 'DURATION'.",
        )),
    }
}

fn addon_not_found() -> ApiError {
    ApiError::not_found("add_on", "Couldn't find that add-on.")
}

fn attachment_not_found() -> ApiError {
    ApiError::not_found("add_on attachment", "Couldn't find that add-on attachment.")
}

fn price() -> Value {
    json!({"cents": 0, "contract": false, "unit": "month"})
}

fn service_json(s: &Service) -> Value {
    json!({
        "cli_plugin_name": null,
        "created_at": "2026-01-01T00:00:00Z",
        "human_name": s.human_name,
        "id": s.id(),
        "name": s.name,
        "state": "ga",
        "supports_multiple_installations": true,
        "supports_sharing": true,
        "updated_at": "2026-01-01T00:00:00Z",
        "supported_generations": [{"id": "00000000-0000-4000-8000-000000000001", "name": "cedar"}],
    })
}

fn plan_json(s: &Service, p: &Plan) -> Value {
    json!({
        "addon_service": {"id": s.id(), "name": s.name},
        "compliance": null,
        "created_at": "2026-01-01T00:00:00Z",
        "default": p.default,
        "description": format!("{} {}", s.human_name, p.human_name),
        "human_name": p.human_name,
        "id": s.plan_id(p),
        "installable_inside_private_network": false,
        "installable_outside_private_network": true,
        "name": s.plan_full_name(p),
        "price": price(),
        "space_default": false,
        "state": "public",
        "updated_at": "2026-01-01T00:00:00Z",
        "visible": true,
        "limits": p.limits,
    })
}

/// Config var names an attachment gives its app.
fn vars_of(attachment: &str, addon: &AddonRow) -> Vec<String> {
    addon
        .config
        .keys()
        .map(|k| format!("{attachment}_{k}"))
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Ref {
    Name(String),
    Object {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        id: Option<String>,
    },
}

impl Ref {
    fn value(&self) -> Option<&str> {
        match self {
            Ref::Name(n) => Some(n.as_str()),
            Ref::Object { name, id } => name.as_deref().or(id.as_deref()),
        }
        .map(str::trim)
        .filter(|v| !v.is_empty())
    }
}

impl AppState {
    pub(crate) fn addons(&self) -> ApiResult<&Addons> {
        self.addons.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Add-ons are not enabled on this Slipway server.",
            )
        })
    }

    /// Whether `who` may see the add-on: they own its billing app or an app it is attached to.
    async fn may_see(&self, who: &AccountRow, addon: &AddonRow) -> ApiResult<bool> {
        if let Some(app) = self.store.app(&addon.app_id).await? {
            if self.may_use(who, &app).await? {
                return Ok(true);
            }
        }
        for a in self.store.attachments_of_addon(&addon.id).await? {
            if let Some(app) = self.store.app(&a.app_id).await? {
                if self.may_use(who, &app).await? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Changing an add-on (its plan, credentials, sessions, settings, or sharing it with another
    /// app) is for the people of its own app, not of every app it is attached to.
    pub(crate) async fn must_manage(&self, who: &AccountRow, addon: &AddonRow) -> ApiResult<()> {
        let billing = self.store.app(&addon.app_id).await?;
        match billing {
            Some(app) if self.may_use(who, &app).await? => Ok(()),
            Some(app) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} belongs to {}; only its people can change it or share it with other apps.",
                    addon.name, app.name
                ),
            )),
            None => Err(ApiError::not_found("add_on", "Couldn't find that add-on.")),
        }
    }

    /// An add-on `who` may see, by id or name (or, with `app`, an attachment name on it).
    async fn find_addon(
        &self,
        who: &AccountRow,
        which: &str,
        app: Option<&AppRow>,
    ) -> ApiResult<AddonRow> {
        let which = which.trim();
        let mut found = self.store.addon(which).await?;
        if found.is_none() {
            if let Some(app) = app {
                if let Some(a) = self.store.app_attachment(&app.id, which).await? {
                    found = self.store.addon(&a.addon_id).await?;
                }
            }
        }
        match found {
            Some(a) if self.may_see(who, &a).await? => Ok(a),
            _ => Err(addon_not_found()),
        }
    }

    async fn addon_json(&self, addon: &AddonRow, headers: &HeaderMap) -> ApiResult<Value> {
        let expand = headers
            .get("accept-expansion")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let catalogue = self.addons()?.catalogue();
        let (service, plan) = catalogue
            .resolve(&format!("{}:{}", addon.service, addon.plan))
            .map_err(ApiError::internal)?;
        let mut vars = Vec::new();
        for a in self.store.attachments_of_addon(&addon.id).await? {
            if a.app_id == addon.app_id {
                vars.extend(vars_of(&a.name, addon));
            }
        }
        let service_ref = if expand.contains("addon_service") {
            service_json(service)
        } else {
            json!({"id": service.id(), "name": service.name})
        };
        let plan_ref = if expand.contains("plan") {
            plan_json(service, plan)
        } else {
            json!({"id": service.plan_id(plan), "name": service.plan_full_name(plan)})
        };
        Ok(json!({
            "actions": [],
            "addon_service": service_ref,
            "app": {"id": addon.app_id, "name": addon.app_name},
            "billing_entity": {"id": addon.app_id, "name": addon.app_name, "type": "app"},
            "billed_price": price(),
            "config_vars": vars,
            "created_at": addon.created_at,
            "id": addon.id,
            "name": addon.name,
            "plan": plan_ref,
            "provider_id": addon.provider_id,
            "provision_message": addon.provision_message.clone().unwrap_or_default(),
            "state": addon.state,
            "updated_at": addon.updated_at,
            "web_url": null,
        }))
    }

    /// Makes a release on `app` that sets (`set`) or removes the config vars of an attachment.
    async fn attachment_release(
        &self,
        app: &AppRow,
        who: &AccountRow,
        vars: &BTreeMap<String, String>,
        set: bool,
        description: String,
    ) -> ApiResult<i64> {
        let patch: BTreeMap<String, Option<String>> = vars
            .iter()
            .map(|(k, v)| (k.clone(), set.then(|| v.clone())))
            .collect();
        let r = self
            .release(
                app,
                NewRelease {
                    slug: ReleaseSlug::Inherit,
                    config: ReleaseConfig::Patch(patch),
                    description,
                    user_email: who.email.clone(),
                    user_id: who.id.clone(),
                },
            )
            .await?;
        Ok(r.version)
    }

    /// Brings every app's config in line with its attachments, after a stop that fell between
    /// an add-on's change (provisioned, credentials rotated) and the release that carries it:
    /// the vars an attachment owns get the add-on's current values, one release per app that
    /// needs it. Run at start.
    pub async fn repair_attachment_config(&self) -> ApiResult<()> {
        for app in self.store.apps().await? {
            let Some(current) = self.store.newest_release(&app.id).await? else {
                continue;
            };
            let mut vars = BTreeMap::new();
            let mut names = Vec::new();
            for a in self.store.attachments_of_app(&app.id).await? {
                let Some(addon) = self.store.addon(&a.addon_id).await? else {
                    continue;
                };
                if addon.state != "provisioned" {
                    continue;
                }
                let mut stale = false;
                for (k, v) in &addon.config {
                    let var = format!("{}_{k}", a.name);
                    stale |= current.config.get(&var) != Some(v);
                    vars.insert(var, v.clone());
                }
                if stale {
                    names.push(a.name.clone());
                }
            }
            if names.is_empty() {
                continue;
            }
            let Some(owner) = self.store.account(&app.owner_id).await? else {
                continue;
            };
            tracing::warn!(app = %app.name, attachments = %names.join(", "), "Config of attachments was behind its add-ons; releasing their current values.");
            self.attachment_release(
                &app,
                &owner,
                &vars,
                true,
                format!("Update {} (after an interrupted change)", names.join(", ")),
            )
            .await?;
        }
        Ok(())
    }

    /// Gives every app the add-on is attached to its new config values, one release each.
    async fn release_new_config(
        &self,
        addon: &AddonRow,
        config: &BTreeMap<String, String>,
        who: &AccountRow,
    ) -> ApiResult<()> {
        let mut by_app: BTreeMap<String, (Vec<String>, BTreeMap<String, String>)> = BTreeMap::new();
        for a in self.store.attachments_of_addon(&addon.id).await? {
            let entry = by_app.entry(a.app_id.clone()).or_default();
            entry.0.push(a.name.clone());
            for (k, v) in config {
                entry.1.insert(format!("{}_{k}", a.name), v.clone());
            }
        }
        for (app_id, (names, vars)) in by_app {
            if let Some(app) = self.store.app(&app_id).await? {
                self.attachment_release(
                    &app,
                    who,
                    &vars,
                    true,
                    format!("Update {} by {}", names.join(", "), addon.service),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The config vars the app's attachments own, with their current values.
    pub(crate) async fn attachment_vars(
        &self,
        app_id: &str,
    ) -> ApiResult<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for a in self.store.attachments_of_app(app_id).await? {
            if let Some(addon) = self.store.addon(&a.addon_id).await? {
                for (k, v) in &addon.config {
                    out.insert(format!("{}_{k}", a.name), v.clone());
                }
            }
        }
        Ok(out)
    }

    /// Checks that `name` can be attached on `app`: no attachment and no plain config var uses
    /// it. An attachment of that name is replaced when `confirm` names the app.
    async fn check_attachment_name(
        &self,
        app: &AppRow,
        name: &str,
        addon: Option<&AddonRow>,
        confirm: Option<&str>,
    ) -> ApiResult<Option<AttachmentRow>> {
        if let Some(existing) = self.store.app_attachment(&app.id, name).await? {
            if confirm == Some(app.name.as_str()) {
                return Ok(Some(existing));
            }
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "confirmation_required",
                format!(
                    "{name} is already attached to {} on {}. To replace it, confirm with --confirm {}.",
                    existing.addon_name, app.name, app.name
                ),
            ));
        }
        let config = self
            .store
            .current_release(&app.id)
            .await?
            .map(|r| r.config)
            .unwrap_or_default();
        let suffixes: Vec<String> = match addon {
            Some(a) => a.config.keys().cloned().collect(),
            None => vec!["URL".into()],
        };
        for s in suffixes {
            let var = format!("{name}_{s}");
            if config.contains_key(&var) {
                return Err(ApiError::invalid(format!(
                    "Config var {var} is already set on {}. Unset it (slipway config:unset {var}) \
                     or choose another name with --as.",
                    app.name
                )));
            }
        }
        Ok(None)
    }

    /// Detaches an attachment: removes it and its app's config vars (a release there).
    async fn detach(&self, a: &AttachmentRow, who: &AccountRow) -> ApiResult<i64> {
        let addon = self
            .store
            .addon(&a.addon_id)
            .await?
            .ok_or_else(addon_not_found)?;
        self.store.delete_attachment(&a.id).await?;
        let vars: BTreeMap<String, String> = vars_of(&a.name, &addon)
            .into_iter()
            .map(|v| (v, String::new()))
            .collect();
        let app = self
            .store
            .app(&a.app_id)
            .await?
            .ok_or_else(ApiError::app_not_found)?;
        self.attachment_release(
            &app,
            who,
            &vars,
            false,
            format!("Detach {} (@ref:{})", a.name, addon.name),
        )
        .await
    }

    /// Destroys an add-on: detaches it everywhere, stops its server and removes its data.
    pub(crate) async fn destroy_addon(&self, addon: &AddonRow, who: &AccountRow) -> ApiResult<()> {
        let addons = self.addons()?.clone();
        let _guard = addons.lock(&addon.id).await;
        // As it is now, not as it was before the lock: a provisioning that finished meanwhile
        // gave it what deprovisioning needs (a partner's id, its config).
        let Some(addon) = self.store.addon(&addon.id).await? else {
            return Ok(());
        };
        let addon = &addon;
        for a in self.store.attachments_of_addon(&addon.id).await? {
            self.detach(&a, who).await?;
        }
        addons.deprovision(addon).await?;
        self.store.delete_addon(&addon.id).await?;
        self.api_log(
            &addon.app_id,
            &format!("Destroy {} by user {}", addon.name, who.email),
        );
        Ok(())
    }
}

fn attachment_json(a: &AttachmentRow) -> Value {
    json!({
        "addon": {
            "id": a.addon_id,
            "name": a.addon_name,
            "app": {"id": a.addon_app_id, "name": a.addon_app_name},
        },
        "app": {"id": a.app_id, "name": a.app_name},
        "created_at": a.created_at,
        "id": a.id,
        "name": a.name,
        "namespace": null,
        "updated_at": a.updated_at,
        "web_url": null,
        "log_input_url": null,
    })
}

fn list(headers: &HeaderMap, items: Vec<Value>) -> Response {
    range::respond(
        headers,
        "id",
        items,
        |v, _| v["id"].as_str().unwrap_or("").to_string(),
        |_| false,
    )
}

// ---- services and plans ---------------------------------------------------------------------

/// `GET /addon-services`.
pub async fn services(
    State(s): State<AppState>,
    Auth(_who): Auth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let out = s
        .addons()?
        .catalogue()
        .services()
        .iter()
        .map(service_json)
        .collect();
    Ok(list(&headers, out))
}

fn service<'a>(s: &'a AppState, name: &str) -> ApiResult<&'a Service> {
    s.addons()?.catalogue().service(name).ok_or_else(|| {
        ApiError::not_found(
            "addon-service",
            format!("Couldn't find the add-on service {name}. See slipway addons:services."),
        )
    })
}

/// `GET /addon-services/{service}`.
pub async fn service_info(
    State(s): State<AppState>,
    Auth(_who): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(service_json(service(&s, &name)?)))
}

/// `GET /addon-services/{service}/plans`.
pub async fn plans(
    State(s): State<AppState>,
    Auth(_who): Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let svc = service(&s, &name)?;
    let out = svc.plans.iter().map(|p| plan_json(svc, p)).collect();
    Ok(list(&headers, out))
}

/// `GET /addon-services/{service}/plans/{plan}`.
pub async fn plan_info(
    State(s): State<AppState>,
    Auth(_who): Auth,
    Path((name, plan)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let svc = service(&s, &name)?;
    let plan_name = plan.rsplit(':').next().unwrap_or(&plan);
    let p = svc
        .plan(plan_name)
        .or_else(|| s.addons().ok()?.catalogue().plan_by_id(&plan).map(|x| x.1))
        .ok_or_else(|| ApiError::not_found("plan", format!("Couldn't find the plan {plan}.")))?;
    Ok(Json(plan_json(svc, p)))
}

// ---- add-ons --------------------------------------------------------------------------------

/// `GET /addons`: every add-on the caller can see.
pub async fn list_all(
    State(s): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    s.addons()?;
    let mut out = Vec::new();
    for a in s.store.all_addons().await? {
        if s.may_see(&who, &a).await? {
            out.push(s.addon_json(&a, &headers).await?);
        }
    }
    Ok(list(&headers, out))
}

/// `GET /apps/{app}/addons`: billed to the app or attached to it.
pub async fn list_for_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    s.addons()?;
    let app = s.load_app(&who, &app).await?;
    let mut out = Vec::new();
    for a in s.store.addons_of_app(&app.id).await? {
        out.push(s.addon_json(&a, &headers).await?);
    }
    Ok(list(&headers, out))
}

/// `GET /addons/{addon}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let a = s.find_addon(&who, &which, None).await?;
    Ok(Json(s.addon_json(&a, &headers).await?))
}

/// `GET /apps/{app}/addons/{addon}` (also by the app's attachment name).
pub async fn info_for_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let a = s.find_addon(&who, &which, Some(&app)).await?;
    Ok(Json(s.addon_json(&a, &headers).await?))
}

#[derive(Deserialize)]
struct CreateAddon {
    plan: Option<Ref>,
    name: Option<String>,
    attachment: Option<AttachmentName>,
    confirm: Option<String>,
    #[serde(default)]
    config: Option<BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
struct AttachmentName {
    name: Option<String>,
}

/// `POST /apps/{app}/addons`: provisions and attaches (a release with its config vars).
pub async fn create(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: CreateAddon = parse_json(&body)?;
    let addons = s.addons()?.clone();
    let spec = req.plan.as_ref().and_then(Ref::value).ok_or_else(|| {
        ApiError::invalid("Give the add-on to create as \"plan\" (SERVICE[:PLAN]).")
    })?;
    let (service, plan) = addons
        .catalogue()
        .resolve(spec)
        .map_err(ApiError::invalid)?;
    let (service, plan) = (service.clone(), plan.clone());
    let name = match req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => {
            slipway_types::validate_addon_name(n).map_err(ApiError::invalid)?;
            if s.store.addon(n).await?.is_some() {
                return Err(ApiError::invalid(format!(
                    "The add-on name {n} is already taken. Choose another with --name."
                )));
            }
            n.to_string()
        }
        None => slipway_types::generate_addon_name(&service.name_prefix),
    };
    // Attachment names: the one asked for, else the service's default (when free) and, for
    // Postgres, its colored name too, as Heroku gives both.
    let confirm = req.confirm.as_deref();
    let mut names = Vec::new();
    let asked = req
        .attachment
        .as_ref()
        .and_then(|a| a.name.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let mut replaced = Vec::new();
    match asked {
        Some(n) => {
            let n = slipway_types::normalize_attachment_name(n).map_err(ApiError::invalid)?;
            if let Some(old) = s.check_attachment_name(&app, &n, None, confirm).await? {
                replaced.push(old);
            }
            names.push(n);
        }
        None => {
            let taken: Vec<String> = s
                .store
                .attachments_of_app(&app.id)
                .await?
                .into_iter()
                .map(|a| a.name)
                .collect();
            let default = service.default_attachment.to_string();
            let default_free = !taken.contains(&default)
                && s.check_attachment_name(&app, &default, None, None)
                    .await
                    .is_ok();
            if default_free {
                names.push(default);
            }
            if !default_free || service.kind == Kind::Postgres {
                names.push(slipway_addons::catalogue::colored_name(
                    &service.attachment_prefix,
                    &taken,
                ));
            }
        }
    }
    // Options are checked before anything changes: a refused create leaves the app as it was.
    // Provider options (`addons:create ... -- --key value`): strings, or true for a flag.
    let options: BTreeMap<String, String> = req
        .config
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    // `--follow DATABASE` / `--fork DATABASE`: a copy of one of the app's Postgres databases.
    let copy = match (
        options.get("follow"),
        options.get("fork"),
        options.get("rollback"),
    ) {
        (Some(db), None, None) => Some((Copy::Follower, db.clone())),
        (None, Some(db), None) => Some((Copy::Fork, db.clone())),
        (None, None, Some(db)) => {
            let to = rollback_target(options.get("to"), options.get("by"))?;
            Some((Copy::Rollback(to), db.clone()))
        }
        (None, None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "Give one of --follow, --fork and --rollback.",
            ))
        }
    };
    let source = match &copy {
        Some((_, db)) if service.kind == Kind::Postgres => {
            Some(s.app_database(&app, Some(db.as_str())).await?.1)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "--follow and --fork are for Heroku Postgres databases.",
            ))
        }
        None => None,
    };
    for old in &replaced {
        s.detach(old, &who).await?;
    }
    let (row, _attachments) = match s
        .store
        .create_addon(
            &NewAddon {
                name: name.clone(),
                app_id: app.id.clone(),
                service: service.name.to_string(),
                plan: plan.name.to_string(),
            },
            &names,
        )
        .await
    {
        Err(slipway_store::StoreError::Conflict(what)) => {
            return Err(ApiError::invalid(format!(
                "That {what} is already taken; choose another (--name, --as)."
            )))
        }
        other => other?,
    };
    let guard = addons.lock(&row.id).await;
    let provisioned = match (&copy, &source) {
        (Some((kind, _)), Some(source)) => {
            let made = match kind {
                Copy::Follower => {
                    addons
                        .provision_postgres_copy(&row, source, slipway_addons::CopyKind::Follower)
                        .await
                }
                Copy::Fork => {
                    addons
                        .provision_postgres_copy(&row, source, slipway_addons::CopyKind::Fork)
                        .await
                }
                Copy::Rollback(to) => addons.provision_postgres_rollback(&row, source, *to).await,
            };
            made.map(|config| slipway_addons::partner::Provisioned {
                provider_id: row.id.clone(),
                config,
                message: Some(match kind {
                    Copy::Follower => format!("Following {}.", source.name),
                    Copy::Fork => format!("Forked from {}.", source.name),
                    Copy::Rollback(to) => format!("{} as of {to}.", source.name),
                }),
            })
        }
        _ => addons.provision(&row, &options).await,
    };
    let provisioned = match provisioned {
        Ok(p) => p,
        Err(e) => {
            let _ = addons.deprovision(&row).await;
            let _ = s.store.delete_addon(&row.id).await;
            return Err(e.into());
        }
    };
    s.store
        .set_addon_provisioned(
            &row.id,
            &provisioned.provider_id,
            &provisioned.config,
            provisioned.message.as_deref(),
        )
        .await?;
    drop(guard);
    let row = s.store.addon(&row.id).await?.ok_or_else(addon_not_found)?;
    let mut vars = BTreeMap::new();
    for n in &names {
        for (k, v) in &row.config {
            vars.insert(format!("{n}_{k}"), v.clone());
        }
    }
    s.api_log(
        &app.id,
        &format!(
            "Create {} ({}) by user {}",
            row.name,
            service.plan_full_name(&plan),
            who.email
        ),
    );
    s.attachment_release(
        &app,
        &who,
        &vars,
        true,
        format!("Attach {} (@ref:{})", names.join(", "), row.name),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(s.addon_json(&row, &headers).await?),
    )
        .into_response())
}

#[derive(Deserialize)]
struct UpdateAddon {
    plan: Option<Ref>,
}

/// `PATCH /apps/{app}/addons/{addon}` with `{"plan": ...}`: a plan change that keeps the data.
pub async fn update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let addon = s.find_addon(&who, &which, Some(&app)).await?;
    s.must_manage(&who, &addon).await?;
    let req: UpdateAddon = parse_json(&body)?;
    let addons = s.addons()?.clone();
    let wanted = req
        .plan
        .as_ref()
        .and_then(Ref::value)
        .ok_or_else(|| ApiError::invalid("Give the plan to change to as \"plan\"."))?;
    let spec = if wanted.contains(':') {
        wanted.to_string()
    } else {
        format!("{}:{wanted}", addon.service)
    };
    let (service, plan) = addons
        .catalogue()
        .resolve(&spec)
        .map_err(ApiError::invalid)?;
    if service.name != addon.service {
        return Err(ApiError::invalid(format!(
            "{} is a {} add-on; it cannot change to a plan of {}.",
            addon.name, addon.service, service.name
        )));
    }
    if plan.name == addon.plan {
        return Err(ApiError::invalid(format!(
            "{} is already on the {} plan.",
            addon.name,
            service.plan_full_name(plan)
        )));
    }
    let plan = plan.clone();
    let full = service.plan_full_name(&plan);
    {
        // The releases under the add-on's lock, as for a rotation.
        let _guard = addons.lock(&addon.id).await;
        let new_config = addons.change_plan(&addon, &plan).await?;
        s.store.set_addon_plan(&addon.id, &plan.name).await?;
        if let Some(c) = &new_config {
            s.store.set_addon_config(&addon.id, c).await?;
            s.release_new_config(&addon, c, &who).await?;
        }
    }
    s.api_log(
        &addon.app_id,
        &format!("Upgrade {} to {full} by user {}", addon.name, who.email),
    );
    let addon = s
        .store
        .addon(&addon.id)
        .await?
        .ok_or_else(addon_not_found)?;
    Ok(Json(s.addon_json(&addon, &headers).await?))
}

#[derive(Deserialize, Default)]
struct DeleteAddon {
    #[serde(default)]
    force: bool,
}

/// `DELETE /apps/{app}/addons/{addon}`: refused while attached to other apps unless forced.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let addon = s.find_addon(&who, &which, Some(&app)).await?;
    let req: DeleteAddon = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteAddon::default()
    } else {
        parse_json(&body)?
    };
    if addon.app_id != app.id {
        return Err(ApiError::invalid(format!(
            "{} is billed to {}; destroy it from there (-a {}), or detach it from {} with \
             slipway addons:detach.",
            addon.name, addon.app_name, addon.app_name, app.name
        )));
    }
    let followers = s.addons()?.followers_of(&addon.id).await;
    if !followers.is_empty() {
        return Err(ApiError::invalid(format!(
            "{} has followers ({}). Destroy them, or unfollow them with slipway pg:unfollow, first.",
            addon.name,
            followers.join(", ")
        )));
    }
    let others: Vec<String> = s
        .store
        .attachments_of_addon(&addon.id)
        .await?
        .into_iter()
        .filter(|a| a.app_id != app.id)
        .map(|a| a.app_name)
        .collect();
    if !others.is_empty() && !req.force {
        return Err(ApiError::invalid(format!(
            "{} is attached to other apps ({}). Detach it there first, or destroy it with --force.",
            addon.name,
            others.join(", ")
        )));
    }
    let mut json = s.addon_json(&addon, &headers).await?;
    s.destroy_addon(&addon, &who).await?;
    json["state"] = json!("deprovisioned");
    json["config_vars"] = json!([]);
    Ok(Json(json))
}

// ---- attachments ----------------------------------------------------------------------------

/// `GET /addon-attachments`: attachments on apps the caller owns.
pub async fn attachments_all(
    State(s): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mut out = Vec::new();
    for app in s.store.apps().await? {
        if s.may_use(&who, &app).await? {
            out.extend(
                s.store
                    .attachments_of_app(&app.id)
                    .await?
                    .iter()
                    .map(attachment_json),
            );
        }
    }
    Ok(list(&headers, out))
}

/// `GET /apps/{app}/addon-attachments`.
pub async fn attachments_of_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let out = s
        .store
        .attachments_of_app(&app.id)
        .await?
        .iter()
        .map(attachment_json)
        .collect();
    Ok(list(&headers, out))
}

/// `GET /apps/{app}/addon-attachments/{attachment}` (id or name).
pub async fn attachment_of_app(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let a = s
        .store
        .app_attachment(&app.id, which.trim())
        .await?
        .ok_or_else(attachment_not_found)?;
    Ok(Json(attachment_json(&a)))
}

/// `GET /addons/{addon}/addon-attachments`.
pub async fn attachments_of_addon(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let addon = s.find_addon(&who, &which, None).await?;
    let out = s
        .store
        .attachments_of_addon(&addon.id)
        .await?
        .iter()
        .map(attachment_json)
        .collect();
    Ok(list(&headers, out))
}

/// An attachment on an app the caller owns.
async fn own_attachment(s: &AppState, who: &AccountRow, id: &str) -> ApiResult<AttachmentRow> {
    let a = s
        .store
        .attachment(id.trim())
        .await?
        .ok_or_else(attachment_not_found)?;
    s.load_app(who, &a.app_id)
        .await
        .map_err(|_| attachment_not_found())?;
    Ok(a)
}

/// `GET /addon-attachments/{id}`.
pub async fn attachment_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(attachment_json(&own_attachment(&s, &who, &id).await?)))
}

#[derive(Deserialize)]
struct CreateAttachment {
    addon: Option<Ref>,
    app: Option<Ref>,
    name: Option<String>,
    confirm: Option<String>,
}

/// `POST /addon-attachments`: shares an add-on with an app (a release there).
pub async fn attach(
    State(s): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CreateAttachment = parse_json(&body)?;
    let app = req
        .app
        .as_ref()
        .and_then(Ref::value)
        .ok_or_else(|| ApiError::invalid("Give the app to attach to as \"app\"."))?;
    let app = s.load_app(&who, app).await?;
    let which = req
        .addon
        .as_ref()
        .and_then(Ref::value)
        .ok_or_else(|| ApiError::invalid("Give the add-on to attach as \"addon\"."))?;
    let addon = s.find_addon(&who, which, None).await?;
    s.must_manage(&who, &addon).await?;
    // Under the add-on's lock, and as it is then: a rotation, plan change or destroy running
    // meanwhile finishes first, so the new attachment gets the current values (or none).
    let addons = s.addons()?.clone();
    let _guard = addons.lock(&addon.id).await;
    let addon = s
        .store
        .addon(&addon.id)
        .await?
        .ok_or_else(addon_not_found)?;
    if addon.state != "provisioned" {
        return Err(ApiError::invalid(format!(
            "{} is {}; it can be attached once provisioned.",
            addon.name, addon.state
        )));
    }
    let service = s
        .addons()?
        .catalogue()
        .service(&addon.service)
        .ok_or_else(|| ApiError::internal("unknown service"))?
        .clone();
    let taken: Vec<String> = s
        .store
        .attachments_of_app(&app.id)
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    let name = match req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => slipway_types::normalize_attachment_name(n).map_err(ApiError::invalid)?,
        None => {
            let d = service.default_attachment.to_string();
            if !taken.contains(&d)
                && s.check_attachment_name(&app, &d, Some(&addon), None)
                    .await
                    .is_ok()
            {
                d
            } else {
                slipway_addons::catalogue::colored_name(&service.attachment_prefix, &taken)
            }
        }
    };
    if let Some(old) = s
        .check_attachment_name(&app, &name, Some(&addon), req.confirm.as_deref())
        .await?
    {
        s.detach(&old, &who).await?;
    }
    let a = match s.store.create_attachment(&addon.id, &app.id, &name).await {
        Err(slipway_store::StoreError::Conflict(_)) => {
            return Err(ApiError::invalid(format!(
                "{name} is already attached on {}; choose another name with --as.",
                app.name
            )))
        }
        other => other?,
    };
    let vars: BTreeMap<String, String> = addon
        .config
        .iter()
        .map(|(k, v)| (format!("{name}_{k}"), v.clone()))
        .collect();
    s.attachment_release(
        &app,
        &who,
        &vars,
        true,
        format!("Attach {name} (@ref:{})", addon.name),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(attachment_json(&a))).into_response())
}

/// `DELETE /addon-attachments/{id}`: the app loses the config vars (a release there).
pub async fn detach(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let a = own_attachment(&s, &who, &id).await?;
    if a.app_id == a.addon_app_id {
        let on_billing_app = s
            .store
            .attachments_of_addon(&a.addon_id)
            .await?
            .iter()
            .filter(|x| x.app_id == a.app_id)
            .count();
        if on_billing_app <= 1 {
            return Err(ApiError::invalid(format!(
                "{} is {}'s only attachment to {}, the app it is billed to. Destroy the add-on \
                 instead (slipway addons:destroy {} -a {}).",
                a.name, a.addon_name, a.app_name, a.addon_name, a.app_name
            )));
        }
    }
    s.detach(&a, &who).await?;
    Ok(Json(attachment_json(&a)))
}

// ---- resolve --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ResolveAddon {
    addon: Option<String>,
    app: Option<String>,
    addon_service: Option<String>,
}

/// `POST /actions/addons/resolve`: an add-on by id, name, `app::ATTACHMENT` or an attachment
/// name on `app`; an array, as Heroku answers.
pub async fn resolve_addon(
    State(s): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Vec<Value>>> {
    let req: ResolveAddon = parse_json(&body)?;
    let which = req
        .addon
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("Give the add-on to resolve as \"addon\"."))?;
    let (app, which) = match which.split_once("::") {
        Some((a, w)) => (Some(a.to_string()), w),
        None => (req.app.clone(), which),
    };
    let app = match app.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => Some(s.load_app(&who, a).await?),
        None => None,
    };
    let addon = s.find_addon(&who, which, app.as_ref()).await?;
    if let Some(svc) = req.addon_service.as_deref() {
        let wanted = s
            .addons()?
            .catalogue()
            .service(svc)
            .map(|x| x.name.as_str());
        if wanted != Some(addon.service.as_str()) {
            return Err(addon_not_found());
        }
    }
    Ok(Json(vec![s.addon_json(&addon, &headers).await?]))
}

#[derive(Deserialize)]
struct ResolveAttachment {
    addon_attachment: Option<String>,
    app: Option<String>,
    addon_service: Option<String>,
}

/// `POST /actions/addon-attachments/resolve`: an app's attachments by name or id, or those of
/// an add-on named; an array.
pub async fn resolve_attachment(
    State(s): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Json<Vec<Value>>> {
    let req: ResolveAttachment = parse_json(&body)?;
    let which = req
        .addon_attachment
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("Give the attachment to resolve as \"addon_attachment\".")
        })?;
    let (app, which) = match which.split_once("::") {
        Some((a, w)) => (Some(a.to_string()), w),
        None => (req.app.clone(), which),
    };
    let app = app
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::invalid("Give the app the attachment is on as \"app\"."))?;
    let app = s.load_app(&who, &app).await?;
    let service = match req.addon_service.as_deref() {
        Some(svc) => s.addons()?.catalogue().service(svc).map(|x| x.name.clone()),
        None => None,
    };
    let all = s.store.attachments_of_app(&app.id).await?;
    let upper = which.to_ascii_uppercase();
    let upper = upper.strip_suffix("_URL").unwrap_or(&upper);
    let mut found: Vec<&AttachmentRow> = all
        .iter()
        .filter(|a| a.id == which || a.name == upper)
        .collect();
    if found.is_empty() {
        found = all
            .iter()
            .filter(|a| a.addon_name == which || a.addon_id == which)
            .collect();
    }
    let mut out = Vec::new();
    for a in found {
        if let Some(svc) = &service {
            let addon = s.store.addon(&a.addon_id).await?;
            if addon.map(|x| x.service) != Some(svc.clone()) {
                continue;
            }
        }
        out.push(attachment_json(a));
    }
    if out.is_empty() {
        return Err(attachment_not_found());
    }
    Ok(Json(out))
}

// ---- Redis ----------------------------------------------------------------------------------

async fn redis_addon(s: &AppState, who: &AccountRow, which: &str) -> ApiResult<AddonRow> {
    let addon = s.find_addon(who, which, None).await?;
    if s.addons()?
        .catalogue()
        .service(&addon.service)
        .map(|x| x.kind)
        != Some(Kind::Redis)
    {
        return Err(ApiError::invalid(format!(
            "{} is not a Redis add-on.",
            addon.name
        )));
    }
    Ok(addon)
}

/// `GET /addons/{addon}/redis`: what `redis:info` shows.
pub async fn redis_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = redis_addon(&s, &who, &which).await?;
    let info = s.addons()?.redis_info(&addon).await?;
    let mut vars = Vec::new();
    for a in s.store.attachments_of_addon(&addon.id).await? {
        vars.extend(vars_of(&a.name, &addon));
    }
    vars.sort();
    vars.dedup();
    let mut v = serde_json::to_value(&info).map_err(|e| ApiError::internal(e.to_string()))?;
    v["name"] = json!(addon.name);
    v["plan"] = json!(addon.plan);
    v["created_at"] = json!(addon.created_at);
    v["config_vars"] = json!(vars);
    Ok(Json(v))
}

#[derive(Deserialize)]
struct RedisSettings {
    maxmemory_policy: Option<String>,
}

/// `PATCH /addons/{addon}/redis` with `{"maxmemory_policy": "allkeys-lru"}`.
pub async fn redis_update(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let addon = redis_addon(&s, &who, &which).await?;
    s.must_manage(&who, &addon).await?;
    let req: RedisSettings = parse_json(&body)?;
    let addons = s.addons()?.clone();
    if let Some(p) = req.maxmemory_policy.as_deref() {
        let _guard = addons.lock(&addon.id).await;
        addons.set_redis_policy(&addon, p.trim()).await?;
    }
    let info = addons.redis_info(&addon).await?;
    let mut v = serde_json::to_value(&info).map_err(|e| ApiError::internal(e.to_string()))?;
    v["name"] = json!(addon.name);
    v["plan"] = json!(addon.plan);
    Ok(Json(v))
}

// ---- Postgres -------------------------------------------------------------------------------

async fn postgres_addon(s: &AppState, who: &AccountRow, which: &str) -> ApiResult<AddonRow> {
    let addon = s.find_addon(who, which, None).await?;
    if s.addons()?
        .catalogue()
        .service(&addon.service)
        .map(|x| x.kind)
        != Some(Kind::Postgres)
    {
        return Err(ApiError::invalid(format!(
            "{} is not a Heroku Postgres add-on.",
            addon.name
        )));
    }
    Ok(addon)
}

/// `GET /addons/{addon}/postgres`: what `pg:info` shows.
pub async fn pg_info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    let addons = s.addons()?;
    let mut info = addons.pg_info(&addon).await?;
    if let Some((leader, lag)) = addons.follower_lag(&addon).await {
        info.following = Some(leader);
        info.behind_by_bytes = Some(lag);
    } else if let Some(leader_id) = addons.leader_of(&addon).await {
        info.following = s.store.addon(&leader_id).await?.map(|a| a.name);
    }
    info.followers = addons.followers_of(&addon.id).await;
    let mut vars = Vec::new();
    for a in s.store.attachments_of_addon(&addon.id).await? {
        if a.app_id == addon.app_id {
            vars.extend(vars_of(&a.name, &addon));
        }
    }
    let mut v = serde_json::to_value(&info).map_err(|e| ApiError::internal(e.to_string()))?;
    v["name"] = json!(addon.name);
    v["plan"] = json!(addon.plan);
    v["created_at"] = json!(addon.created_at);
    v["config_vars"] = json!(vars);
    Ok(Json(v))
}

fn table_json(t: slipway_addons::Table) -> Json<Value> {
    Json(json!({"columns": t.columns, "rows": t.rows}))
}

#[derive(Deserialize)]
pub struct ActivityQuery {
    verbose: Option<bool>,
}

/// `GET /addons/{addon}/postgres/activity[?verbose=true]`: `pg:ps`.
pub async fn pg_activity(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ActivityQuery>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    Ok(table_json(
        s.addons()?
            .pg_activity(&addon, q.verbose.unwrap_or(false))
            .await?,
    ))
}

/// `POST /addons/{addon}/postgres/activity/{pid}/actions/{cancel|terminate}`: `pg:kill`.
pub async fn pg_kill(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((which, pid, action)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    s.must_manage(&who, &addon).await?;
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("{pid} is not a process id.")))?;
    let force = match action.as_str() {
        "cancel" => false,
        "terminate" => true,
        _ => return Err(ApiError::not_found("action", "Use cancel or terminate.")),
    };
    let result = s.addons()?.pg_kill(&addon, pid, force).await?;
    Ok(Json(json!({"pid": pid, "result": result})))
}

/// `POST /addons/{addon}/postgres/actions/terminate-all`: `pg:killall`.
pub async fn pg_killall(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    s.must_manage(&who, &addon).await?;
    s.addons()?.pg_killall(&addon).await?;
    Ok(Json(json!({"result": true})))
}

/// `GET /addons/{addon}/postgres/locks`: `pg:locks`.
pub async fn pg_locks(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    Ok(table_json(s.addons()?.pg_locks(&addon).await?))
}

#[derive(Deserialize)]
pub struct OutliersQuery {
    limit: Option<u32>,
}

/// `GET /addons/{addon}/postgres/outliers[?limit=N]`: `pg:outliers`.
pub async fn pg_outliers(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
    axum::extract::Query(q): axum::extract::Query<OutliersQuery>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    Ok(table_json(
        s.addons()?
            .pg_outliers(&addon, q.limit.unwrap_or(10))
            .await?,
    ))
}

/// `DELETE /addons/{addon}/postgres/outliers`: `pg:outliers --reset`.
pub async fn pg_outliers_reset(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    s.must_manage(&who, &addon).await?;
    s.addons()?.pg_outliers_reset(&addon).await?;
    Ok(Json(json!({"result": true})))
}

/// `GET /addons/{addon}/postgres/credentials`: `pg:credentials`.
pub async fn pg_credentials(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    let creds = s.addons()?.pg_credentials(&addon).await?;
    Ok(Json(
        serde_json::to_value(creds).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

/// `POST /addons/{addon}/postgres/credentials/{name}/actions/rotate`: a new password; every
/// attached app gets the new URL (a release each).
pub async fn pg_rotate(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((which, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    s.must_manage(&who, &addon).await?;
    if name != "default" {
        return Err(ApiError::not_found(
            "credential",
            format!(
                "{} has no credential named {name}; it has default.",
                addon.name
            ),
        ));
    }
    let addons = s.addons()?.clone();
    {
        // The releases too, under the add-on's lock: two rotations at once must not leave the
        // apps with the older password, which no longer works.
        let _guard = addons.lock(&addon.id).await;
        let config = addons.pg_rotate(&addon).await?;
        s.store.set_addon_config(&addon.id, &config).await?;
        s.release_new_config(&addon, &config, &who).await?;
    }
    s.api_log(
        &addon.app_id,
        &format!("Rotate credentials of {} by user {}", addon.name, who.email),
    );
    let creds = addons.pg_credentials(&addon).await?;
    Ok(Json(
        serde_json::to_value(creds.into_iter().next())
            .map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

/// `POST /addons/{addon}/postgres/diagnose`: runs the checks and keeps the report for a month.
pub async fn pg_diagnose(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Response> {
    let addon = postgres_addon(&s, &who, &which).await?;
    let checks = s.addons()?.pg_diagnose(&addon).await?;
    // The report names the database as the caller's app sees it, else as its billing app does.
    let attachments = s.store.attachments_of_addon(&addon.id).await?;
    let mut seen_as = None;
    for a in &attachments {
        if let Some(app) = s.store.app(&a.app_id).await? {
            if s.may_use(&who, &app).await? {
                seen_as = Some((app, a.name.clone()));
                break;
            }
        }
    }
    let (app, database) = match seen_as {
        Some(x) => x,
        None => (
            s.store
                .app(&addon.app_id)
                .await?
                .ok_or_else(ApiError::app_not_found)?,
            "DATABASE".to_string(),
        ),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let report = json!({
        "id": id,
        "created_at": chrono::Utc::now(),
        "app": app.name,
        "database": database,
        "addon": {"id": addon.id, "name": addon.name},
        "checks": checks,
    });
    s.store
        .save_diagnose_report(&id, &app.id, &addon.id, &report.to_string())
        .await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

/// `GET /pg-diagnose/{id}`: a report of the last month, for the owner of its app.
pub async fn pg_diagnose_report(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let not_found = || {
        ApiError::not_found(
            "pg-diagnose",
            "Couldn't find that report; reports are kept for a month. Run slipway pg:diagnose again.",
        )
    };
    let (app_id, report) = s
        .store
        .diagnose_report(id.trim())
        .await?
        .ok_or_else(not_found)?;
    s.load_app(&who, &app_id).await.map_err(|_| not_found())?;
    serde_json::from_str(&report)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /addons/{addon}/postgres/bloat`.
pub async fn pg_bloat(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    Ok(table_json(s.addons()?.pg_bloat(&addon).await?))
}

/// `GET /addons/{addon}/postgres/index-usage`.
pub async fn pg_index_usage(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    Ok(table_json(s.addons()?.pg_index_usage(&addon).await?))
}

/// `GET /addons/{addon}/postgres/cache-hit`.
pub async fn pg_cache_hit(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    Ok(table_json(s.addons()?.pg_cache_hit(&addon).await?))
}

#[derive(Deserialize)]
struct ExplainBody {
    sql: Option<String>,
    analyze: Option<bool>,
}

/// `POST /addons/{addon}/postgres/explain` with `{"sql": ..., "analyze": true}`.
pub async fn pg_explain(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    let req: ExplainBody = parse_json(&body)?;
    let sql = req
        .sql
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Give the statement to explain as \"sql\"."))?;
    let plan = s
        .addons()?
        .pg_explain(&addon, &sql, req.analyze.unwrap_or(true))
        .await?;
    Ok(Json(json!({"plan": plan})))
}

/// `POST /addons/{addon}/postgres/actions/unfollow`: the follower becomes a writable database.
pub async fn pg_unfollow(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(which): Path<String>,
) -> ApiResult<Json<Value>> {
    let addon = postgres_addon(&s, &who, &which).await?;
    s.must_manage(&who, &addon).await?;
    let addons = s.addons()?.clone();
    {
        let _guard = addons.lock(&addon.id).await;
        addons.pg_unfollow(&addon).await?;
    }
    s.api_log(
        &addon.app_id,
        &format!("Unfollow {} by user {}", addon.name, who.email),
    );
    Ok(Json(json!({"name": addon.name, "following": null})))
}
