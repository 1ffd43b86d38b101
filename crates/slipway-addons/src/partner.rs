//! Third-party add-ons over Heroku's add-on partner API (v3): Slipway provisions, changes the
//! plan of and deprovisions a partner's resources with HTTP requests to the partner's
//! `base_url`, authenticated with the manifest's id and password (basic auth).
//!
//! A partner is offered once its manifest (Heroku's `addon-manifest.json` shape, plus the
//! `plans` it sells) is in the manifests dir:
//!
//! ```json
//! {"id": "fakeaddon", "name": "Fake Add-on",
//!  "api": {"config_vars_prefix": "FAKEADDON", "config_vars": ["FAKEADDON_URL"],
//!          "password": "s3cret", "production": {"base_url": "http://127.0.0.1:9000/heroku/resources"}},
//!  "plans": [{"name": "test", "human_name": "Test", "default": true}]}
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::catalogue::{Kind, Plan, PlanLimits, Service};
use crate::AddonError;

/// Heroku gives partners 30 s; Slipway waits a little less.
const TIMEOUT: Duration = Duration::from_secs(25);

/// How a partner's provider is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerApi {
    pub id: String,
    pub password: String,
    pub base_url: String,
    /// Every config var the partner returns starts with `<prefix>_`.
    pub config_vars_prefix: String,
}

#[derive(Deserialize)]
struct Manifest {
    id: String,
    name: Option<String>,
    api: ManifestApi,
    #[serde(default)]
    plans: Vec<ManifestPlan>,
}

#[derive(Deserialize)]
struct ManifestApi {
    config_vars_prefix: Option<String>,
    password: String,
    production: Production,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Production {
    Url(String),
    Object { base_url: String },
}

#[derive(Deserialize)]
struct ManifestPlan {
    name: String,
    human_name: Option<String>,
    #[serde(default)]
    default: bool,
}

/// Reads a partner's manifest into the service it offers.
pub fn service_from_manifest(text: &str) -> Result<Service, String> {
    let m: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let id = m.id.trim().to_ascii_lowercase();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("\"id\" {:?} must be letters, digits and '-'", m.id));
    }
    let prefix = m
        .api
        .config_vars_prefix
        .unwrap_or_else(|| id.to_ascii_uppercase().replace('-', "_"));
    let base_url = match m.api.production {
        Production::Url(u) | Production::Object { base_url: u } => u,
    };
    if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
        return Err(format!("base_url {base_url:?} is not an http(s) URL"));
    }
    if m.plans.is_empty() {
        return Err("the manifest lists no plans".into());
    }
    let any_default = m.plans.iter().any(|p| p.default);
    let plans = m
        .plans
        .iter()
        .enumerate()
        .map(|(i, p)| Plan {
            name: p.name.trim().to_ascii_lowercase(),
            human_name: p.human_name.clone().unwrap_or_else(|| p.name.clone()),
            default: p.default || (!any_default && i == 0),
            limits: PlanLimits::default(),
        })
        .collect();
    Ok(Service {
        human_name: m.name.unwrap_or_else(|| id.clone()),
        aliases: Vec::new(),
        default_attachment: prefix.clone(),
        attachment_prefix: prefix.clone(),
        name_prefix: id.clone(),
        kind: Kind::Partner,
        plans,
        partner: Some(PartnerApi {
            id: id.clone(),
            password: m.api.password,
            base_url: base_url.trim_end_matches('/').to_string(),
            config_vars_prefix: prefix,
        }),
        name: id,
    })
}

/// Every manifest (`*.json`) in `dir`; a bad one is skipped with a warning.
pub fn load_manifests(dir: &Path) -> Vec<Service> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| service_from_manifest(&t))
        {
            Ok(s) => out.push(s),
            Err(error) => {
                tracing::warn!(manifest = %path.display(), %error, "Skipped an add-on manifest.")
            }
        }
    }
    out
}

/// What a partner answered to a provision.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub provider_id: String,
    /// By suffix: `FAKEADDON_URL` is stored as `URL`.
    pub config: BTreeMap<String, String>,
    pub message: Option<String>,
}

impl PartnerApi {
    fn client() -> Result<reqwest::Client, AddonError> {
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AddonError::Unavailable(e.to_string()))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value), AddonError> {
        let resp = req
            .basic_auth(&self.id, Some(&self.password))
            .header("Accept", "application/vnd.heroku-addons+json; version=3")
            .send()
            .await
            .map_err(|e| {
                AddonError::Unavailable(format!("{} could not be reached: {e}", self.id))
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status >= 400 {
            let msg = v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{} refused the request (HTTP {status}).", self.id));
            return Err(if status >= 500 {
                AddonError::Unavailable(msg)
            } else {
                AddonError::Refused(msg)
            });
        }
        Ok((status, v))
    }

    /// Config vars from a partner's answer, by suffix; names must start with the prefix.
    fn config(&self, v: &Value) -> Result<BTreeMap<String, String>, AddonError> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            return Ok(out);
        };
        let prefix = format!("{}_", self.config_vars_prefix);
        for (k, val) in map {
            let suffix = k
                .strip_prefix(&prefix)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    AddonError::Unavailable(format!(
                        "{} returned the config var {k}, which does not start with {prefix}.",
                        self.id
                    ))
                })?;
            let val = match val {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(suffix.to_string(), val);
        }
        Ok(out)
    }

    /// `POST {base_url}`.
    pub async fn provision(
        &self,
        uuid: &str,
        name: &str,
        plan: &str,
        options: &BTreeMap<String, String>,
        callback_url: &str,
    ) -> Result<Provisioned, AddonError> {
        let body = json!({
            "callback_url": callback_url,
            "name": name,
            "options": options,
            "plan": plan,
            "region": "local",
            "uuid": uuid,
            "log_drain_token": format!("d.{}", uuid::Uuid::new_v4()),
        });
        let (_, v) = self
            .send(Self::client()?.post(&self.base_url).json(&body))
            .await?;
        Ok(Provisioned {
            provider_id: v["id"]
                .as_str()
                .map(str::to_string)
                .or_else(|| v["id"].as_i64().map(|i| i.to_string()))
                .unwrap_or_else(|| uuid.to_string()),
            config: self.config(&v["config"])?,
            message: v["message"].as_str().map(str::to_string),
        })
    }

    /// `PUT {base_url}/{id}`: the new plan; new config vars if the partner sends any.
    pub async fn change_plan(
        &self,
        provider_id: &str,
        uuid: &str,
        plan: &str,
    ) -> Result<Option<BTreeMap<String, String>>, AddonError> {
        let url = format!("{}/{provider_id}", self.base_url);
        let (_, v) = self
            .send(
                Self::client()?
                    .put(url)
                    .json(&json!({"plan": plan, "uuid": uuid})),
            )
            .await?;
        match &v["config"] {
            Value::Object(_) => Ok(Some(self.config(&v["config"])?)),
            _ => Ok(None),
        }
    }

    /// `DELETE {base_url}/{id}`; a resource the partner no longer has counts as gone.
    pub async fn deprovision(&self, provider_id: &str) -> Result<(), AddonError> {
        let url = format!("{}/{provider_id}", self.base_url);
        let resp = Self::client()?
            .delete(url)
            .basic_auth(&self.id, Some(&self.password))
            .header("Accept", "application/vnd.heroku-addons+json; version=3")
            .send()
            .await
            .map_err(|e| {
                AddonError::Unavailable(format!("{} could not be reached: {e}", self.id))
            })?;
        match resp.status().as_u16() {
            200..=299 | 404 | 410 => Ok(()),
            s => Err(AddonError::Unavailable(format!(
                "{} refused to deprovision (HTTP {s}).",
                self.id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"id": "fakeaddon", "name": "Fake Add-on",
      "api": {"config_vars_prefix": "FAKEADDON", "config_vars": ["FAKEADDON_URL"], "password": "pw",
              "production": {"base_url": "http://127.0.0.1:9/heroku/resources/"}},
      "plans": [{"name": "test", "human_name": "Test"}, {"name": "premium"}]}"#;

    #[test]
    fn manifests_become_services() {
        let s = service_from_manifest(MANIFEST).unwrap();
        assert_eq!(s.name, "fakeaddon");
        assert_eq!(s.default_attachment, "FAKEADDON");
        assert_eq!(s.default_plan().name, "test");
        let api = s.partner.unwrap();
        assert_eq!(api.base_url, "http://127.0.0.1:9/heroku/resources");
        assert!(service_from_manifest(r#"{"id": "x", "api": {"password": "p", "production": "ftp://x"}, "plans": [{"name": "a"}]}"#).is_err());
        assert!(service_from_manifest("{}").is_err());
    }

    #[test]
    fn config_vars_must_carry_the_prefix() {
        let api = service_from_manifest(MANIFEST).unwrap().partner.unwrap();
        let ok = api
            .config(&json!({"FAKEADDON_URL": "http://x", "FAKEADDON_TOKEN": 7}))
            .unwrap();
        assert_eq!(ok["URL"], "http://x");
        assert_eq!(ok["TOKEN"], "7");
        assert!(api.config(&json!({"DATABASE_URL": "x"})).is_err());
    }
}
