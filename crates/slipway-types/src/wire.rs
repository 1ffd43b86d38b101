//! Platform API v3 resource shapes, as Heroku serialises them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Config vars: a flat `{KEY: value}` map.
pub type ConfigVars = BTreeMap<String, String>;

/// Heroku's error body: `{"id": "not_found", "message": "Couldn't find that app."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// `{id, name}` reference used for stacks and regions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedRef {
    pub id: String,
    pub name: String,
}

/// `{id, email}` reference to an account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRef {
    pub id: String,
    pub email: String,
}

/// `GET /account`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub two_factor_authentication: bool,
    // Heroku's other account fields, as a self-hosted server has them.
    #[serde(default)]
    pub allow_tracking: bool,
    #[serde(default)]
    pub beta: bool,
    #[serde(default)]
    pub federated: bool,
    #[serde(default)]
    pub country_of_residence: Option<String>,
    #[serde(default)]
    pub default_organization: Option<serde_json::Value>,
    #[serde(default)]
    pub default_team: Option<serde_json::Value>,
    #[serde(default)]
    pub identity_provider: Option<serde_json::Value>,
    #[serde(default)]
    pub delinquent_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_login: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sms_number: Option<String>,
    #[serde(default)]
    pub suspended_at: Option<DateTime<Utc>>,
}

impl Account {
    /// An account with Heroku's optional fields empty.
    pub fn new(
        id: String,
        email: String,
        name: Option<String>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> Account {
        Account {
            id,
            email,
            name,
            created_at,
            updated_at,
            verified: true,
            two_factor_authentication: false,
            allow_tracking: false,
            beta: false,
            federated: false,
            country_of_residence: None,
            default_organization: None,
            default_team: None,
            identity_provider: None,
            delinquent_at: None,
            last_login: None,
            sms_number: None,
            suspended_at: None,
        }
    }
}

/// The platform generation apps run on: Heroku's `cedar` (the one whose log and dyno
/// semantics Slipway follows).
pub fn cedar() -> NamedRef {
    NamedRef {
        id: "9a1e9e9c-7d7c-4bd2-9c4e-0c3d2b1a0f00".into(),
        name: "cedar".into(),
    }
}

/// An app, as `GET /apps/{app}` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    pub id: String,
    pub name: String,
    pub owner: UserRef,
    pub region: NamedRef,
    pub stack: NamedRef,
    pub build_stack: NamedRef,
    pub web_url: String,
    pub git_url: String,
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default)]
    pub acm: bool,
    #[serde(default)]
    pub archived_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub buildpack_provided_description: Option<String>,
    #[serde(default)]
    pub internal_routing: Option<bool>,
    #[serde(default)]
    pub organization: Option<serde_json::Value>,
    #[serde(default)]
    pub team: Option<serde_json::Value>,
    #[serde(default)]
    pub space: Option<serde_json::Value>,
    #[serde(default)]
    pub repo_size: Option<u64>,
    #[serde(default)]
    pub slug_size: Option<u64>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub released_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Slipway: seconds a web dyno has to bind `$PORT` (`null`: the server's default).
    #[serde(default)]
    pub boot_timeout: Option<u32>,
    /// Slipway: daily dyno cycling, `daily`, `off` or `HH:MM` (UTC).
    #[serde(default)]
    pub dyno_cycling: Option<String>,
    #[serde(default = "cedar")]
    pub generation: NamedRef,
}

/// `{id, version}` reference to a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseRef {
    pub id: String,
    pub version: i64,
}

/// `{id}` reference to a slug.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdRef {
    pub id: String,
}

/// `{id, name}` reference to an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppRef {
    pub id: String,
    pub name: String,
}

/// A release: a slug plus config vars, numbered per app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub version: i64,
    pub description: String,
    /// `succeeded`, `pending` or `failed`.
    pub status: String,
    pub current: bool,
    pub eligible_for_rollback: bool,
    pub app: AppRef,
    pub user: UserRef,
    #[serde(default)]
    pub slug: Option<IdRef>,
    #[serde(default)]
    pub addon_plan_names: Vec<String>,
    #[serde(default)]
    pub output_stream_url: Option<String>,
    /// `[{"type": "slug", "id": ...}]` for a release with a slug.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A release's build artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// One process type's entry in the formation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Formation {
    pub id: String,
    pub app: AppRef,
    #[serde(rename = "type")]
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
    /// `{id, name}` of the size (`name` as `size`).
    #[serde(default)]
    pub dyno_size: Option<NamedRef>,
    pub command: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A running (or starting, or crashed) dyno.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dyno {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub process_type: String,
    pub size: String,
    /// `starting`, `up`, `crashed`, `down` or `idle`.
    pub state: String,
    pub command: String,
    pub app: AppRef,
    pub release: ReleaseRef,
    #[serde(default)]
    pub attach_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Slipway: when a crashed dyno is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<DateTime<Utc>>,
}

/// `POST /apps/{app}/log-sessions` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogSession {
    pub id: String,
    pub logplex_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /apps/{app}/log-sessions` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogSessionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<bool>,
    /// Slipway: lines from this time on (RFC 3339, or an age such as `2h`), from the on-disk
    /// history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Slipway: lines up to this time (RFC 3339, or an age such as `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Slipway: only lines containing this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
}

/// One buildpack installation, as `GET /apps/{app}/buildpack-installations` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildpackInstallation {
    pub ordinal: u32,
    pub buildpack: BuildpackRef,
}

/// `{url, name}` of a buildpack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildpackRef {
    pub url: String,
    pub name: String,
}

/// A domain an app answers to (`domains`): the `heroku` one (`<app>.<base-domain>`) or a custom one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Domain {
    pub id: String,
    pub hostname: String,
    /// `heroku` or `custom`.
    pub kind: String,
    /// The DNS target of a custom domain; `None` for the heroku one.
    pub cname: Option<String>,
    /// `succeeded` for custom domains (Slipway does not check DNS), `none` for the heroku one.
    pub status: String,
    #[serde(default)]
    pub acm_status: Option<String>,
    #[serde(default)]
    pub acm_status_reason: Option<String>,
    pub app: AppRef,
    /// The app's certificate that covers the host name, if any.
    #[serde(default)]
    pub sni_endpoint: Option<NamedRef>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A log drain of an app (`drains`): where its log lines are also sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogDrain {
    pub id: String,
    /// As given when added (Heroku shows basic-auth credentials too).
    pub url: String,
    /// `d.<uuid>`, written into every frame's hostname field.
    pub token: String,
    /// The add-on that made the drain; always `None` here.
    #[serde(default)]
    pub addon: Option<NamedRef>,
    pub app: AppRef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a certificate says (`ssl_cert` of an SNI endpoint).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SslCert {
    pub id: String,
    #[serde(rename = "ca_signed?")]
    pub ca_signed: bool,
    pub cert_domains: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub issuer: String,
    #[serde(rename = "self_signed?")]
    pub self_signed: bool,
    pub starts_at: DateTime<Utc>,
    pub subject: String,
}

/// A certificate an app serves by SNI (`certs`). Its private key is never sent back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SniEndpoint {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub certificate_chain: String,
    pub app: AppRef,
    /// Host names of the app's custom domains the certificate covers.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `None` only if a stored certificate can no longer be read.
    pub ssl_cert: Option<SslCert>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Slipway's router timeouts for requests under `path` (`/` is app-wide), in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterTimeout {
    pub path: String,
    pub response_timeout: u32,
    pub idle_timeout: u32,
}
