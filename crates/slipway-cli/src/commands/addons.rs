//! `addons`, `addons:services`, `addons:plans`, `addons:create`, `addons:info`, `addons:attach`,
//! `addons:detach`, `addons:upgrade`, `addons:destroy`: Heroku's add-on commands, with its output.
//!
//! Add-ons, attachments, services and plans are read into the lenient types below rather than
//! shared wire types: nested refs may come expanded (`Accept-Expansion`) or not, and fields the
//! output does not need may be missing.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::latest_version;
use super::{Ctx, ExitStatus};
use crate::api::{decode, decode_all, is_status, seg, Api, ApiError};
use crate::args::{
    parse_addon_config, AddonsAttach, AddonsCreate, AddonsDestroy, AddonsDetach, AddonsInfo,
    AddonsList, AddonsPlans, AddonsUpgrade, JsonOnly,
};
use crate::format::{header, key_values, limit_size, price, thousands, titled_table};

/// How often `addons:create --wait` asks whether the add-on is ready, and for how long.
const WAIT_INTERVAL: Duration = Duration::from_secs(2);
const WAIT_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// `{id, name}` of an app or service (or the expanded object), of which the name is read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: String,
}

/// A price: `{"cents":0,"unit":"month","contract":false}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Price {
    #[serde(default)]
    pub cents: i64,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub contract: bool,
}

impl Price {
    fn text(&self) -> String {
        price(self.cents, &self.unit, self.contract)
    }
}

/// An add-on's plan: a ref, or with `Accept-Expansion: plan` the whole plan (then with a price).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlanRef {
    pub name: String,
    #[serde(default)]
    pub price: Option<Price>,
}

/// An add-on as `/addons` and `/apps/{app}/addons` return it.
#[derive(Debug, Clone, Deserialize)]
pub struct Addon {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub addon_service: Option<Named>,
    pub plan: PlanRef,
    /// The app that owns (is billed for) the add-on.
    pub app: Named,
    #[serde(default)]
    pub billed_price: Option<Price>,
    #[serde(default)]
    pub config_vars: Vec<String>,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub provision_message: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

impl Addon {
    /// `heroku-postgresql`: the service's name, else the plan name's prefix.
    pub fn service(&self) -> &str {
        match &self.addon_service {
            Some(s) if !s.name.is_empty() => &s.name,
            _ => self
                .plan
                .name
                .split_once(':')
                .map_or(self.plan.name.as_str(), |(s, _)| s),
        }
    }

    /// The price to show: what the add-on is billed, else its plan's price.
    fn price(&self) -> Option<String> {
        self.billed_price
            .as_ref()
            .or(self.plan.price.as_ref())
            .map(Price::text)
    }
}

/// The add-on side of an attachment.
#[derive(Debug, Clone, Deserialize)]
pub struct AttachedAddon {
    pub id: String,
    pub name: String,
}

/// An attachment: an add-on made available to an app under a name (its config var prefix).
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub addon: AttachedAddon,
    pub app: Named,
}

#[derive(Debug, Deserialize)]
struct Service {
    name: String,
    #[serde(default)]
    human_name: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// Slipway's extension on plans: what the plan enforces.
#[derive(Debug, Default, Deserialize)]
struct Limits {
    #[serde(default)]
    connections: Option<u64>,
    #[serde(default)]
    storage_bytes: Option<u64>,
    #[serde(default)]
    rows: Option<u64>,
    #[serde(default)]
    maxmemory_bytes: Option<u64>,
}

impl Limits {
    /// `20 connections, 1 GB, 10,000 rows` for a database; `25 MB, 20 clients` for a store whose
    /// limit is its maxmemory.
    fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(max) = self.maxmemory_bytes {
            parts.push(limit_size(max));
            if let Some(c) = self.connections {
                parts.push(format!("{} clients", thousands(c)));
            }
        } else {
            if let Some(c) = self.connections {
                parts.push(format!("{} connections", thousands(c)));
            }
            if let Some(s) = self.storage_bytes {
                parts.push(limit_size(s));
            }
            if let Some(r) = self.rows {
                parts.push(format!("{} rows", thousands(r)));
            }
        }
        parts.join(", ")
    }
}

#[derive(Debug, Deserialize)]
struct Plan {
    name: String,
    #[serde(default)]
    human_name: Option<String>,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    limits: Option<Limits>,
}

/// Heroku's CLI words for add-on states.
pub fn state_text(state: &str) -> &str {
    match state {
        "provisioned" => "created",
        "provisioning" => "creating",
        "deprovisioning" => "destroying",
        "deprovisioned" => "destroyed",
        other => other,
    }
}

/// `essential-0` from `heroku-postgresql:essential-0`.
fn short_plan(plan: &str) -> &str {
    plan.split_once(':').map_or(plan, |(_, p)| p)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y/%m/%d %H:%M:%S %z").to_string()
}

/// `addons`: the app's add-ons (billed to it or attached to it), each followed by its attachments
/// as a tree; `--all`: every add-on the account can see, by owning app.
pub async fn list(ctx: &mut Ctx<'_>, a: AddonsList) -> Result<()> {
    let api = ctx.api()?.expanding("addon_service,plan");
    if a.all {
        let items = api.list("/addons", None, true).await?;
        if a.json {
            return ctx.print_json(&Value::Array(items));
        }
        let mut addons: Vec<Addon> = decode_all(items, "an add-on")?;
        if addons.is_empty() {
            writeln!(ctx.out, "You have no add-ons.")?;
            return Ok(());
        }
        addons.sort_by(|x, y| (&x.app.name, &x.name).cmp(&(&y.app.name, &y.name)));
        let rows: Vec<Vec<String>> = addons
            .iter()
            .map(|x| {
                vec![
                    x.app.name.clone(),
                    x.name.clone(),
                    x.plan.name.clone(),
                    x.price().unwrap_or_default(),
                    state_text(&x.state).to_owned(),
                ]
            })
            .collect();
        let titles = ["Owning App", "Add-on", "Plan", "Price", "State"];
        write!(ctx.out, "{}", titled_table(&titles, &rows))?;
        return Ok(());
    }
    let app = ctx.app(&a.app)?;
    let items = api
        .list(&format!("/apps/{}/addons", seg(&app)), None, true)
        .await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let mut addons: Vec<Addon> = decode_all(items, "an add-on")?;
    if addons.is_empty() {
        writeln!(ctx.out, "No add-ons for app {app}.")?;
        return Ok(());
    }
    let attachments: Vec<Attachment> = decode_all(
        api.list("/addon-attachments", None, true).await?,
        "an add-on attachment",
    )?;
    addons.sort_by(|x, y| {
        let key = |a: &Addon| (a.app.name != app, a.service().to_owned(), a.name.clone());
        key(x).cmp(&key(y))
    });
    let rows: Vec<Vec<String>> = addons
        .iter()
        .map(|x| {
            let price = if x.app.name == app {
                x.price().unwrap_or_default()
            } else {
                format!("(billed to {} app)", x.app.name)
            };
            vec![
                format!("{} ({})", x.service(), x.name),
                short_plan(&x.plan.name).to_owned(),
                price,
                state_text(&x.state).to_owned(),
            ]
        })
        .collect();
    let table = titled_table(&["Add-on", "Plan", "Price", "State"], &rows);
    let mut lines = table.lines();
    let mut out = String::new();
    for line in lines.by_ref().take(2) {
        out.push_str(line);
        out.push('\n');
    }
    for (addon, line) in addons.iter().zip(lines) {
        out.push_str(line);
        out.push('\n');
        let mut mine: Vec<&Attachment> = attachments
            .iter()
            .filter(|t| t.addon.id == addon.id)
            .collect();
        mine.sort_by(|x, y| {
            let key = |t: &Attachment| (t.app.name != app, t.app.name.clone(), t.name.clone());
            key(x).cmp(&key(y))
        });
        for (i, t) in mine.iter().enumerate() {
            let branch = if i + 1 == mine.len() {
                "└─"
            } else {
                "├─"
            };
            if t.app.name == app {
                out.push_str(&format!(" {branch} as {}\n", t.name));
            } else {
                out.push_str(&format!(
                    " {branch} as {} on ⬢ {} app\n",
                    t.name, t.app.name
                ));
            }
        }
    }
    out.push_str(&format!(
        "\nThe table above shows add-ons and the attachments to the current app ({app}) or other apps.\n"
    ));
    write!(ctx.out, "{out}")?;
    Ok(())
}

/// `addons:services`: the services this server offers.
pub async fn services(ctx: &mut Ctx<'_>, a: JsonOnly) -> Result<()> {
    let api = ctx.api()?;
    let items = api.list("/addon-services", None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let services: Vec<Service> = decode_all(items, "an add-on service")?;
    if services.is_empty() {
        writeln!(ctx.out, "This server offers no add-on services.")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = services
        .into_iter()
        .map(|s| {
            vec![
                s.name,
                s.human_name.unwrap_or_default(),
                s.state.unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        ctx.out,
        "{}",
        titled_table(&["Slug", "Name", "State"], &rows)
    )?;
    writeln!(ctx.out, "\nSee plans with slipway addons:plans SERVICE")?;
    Ok(())
}

/// `addons:plans SERVICE`: the service's plans, the default one marked, with their limits.
pub async fn plans(ctx: &mut Ctx<'_>, a: AddonsPlans) -> Result<()> {
    let api = ctx.api()?;
    let path = format!("/addon-services/{}/plans", seg(&a.service));
    let items = api.list(&path, None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let plans: Vec<Plan> = decode_all(items, "an add-on plan")?;
    if plans.is_empty() {
        writeln!(ctx.out, "{} has no plans.", a.service)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plans
        .iter()
        .map(|p| {
            vec![
                if p.default { "default" } else { "" }.to_owned(),
                p.name.clone(),
                p.human_name.clone().unwrap_or_default(),
                p.price.as_ref().map(Price::text).unwrap_or_default(),
                p.limits.as_ref().map(Limits::text).unwrap_or_default(),
            ]
        })
        .collect();
    let titles = ["", "Slug", "Name", "Price", "Limits"];
    write!(ctx.out, "{}", titled_table(&titles, &rows))?;
    Ok(())
}

/// The full name of the plan `addons:create SERVICE` will get: the service's default plan, so the
/// progress line can name it. Best effort: on any failure the argument is shown as typed.
async fn plan_label(api: &Api, arg: &str) -> String {
    if arg.contains(':') {
        return arg.to_owned();
    }
    let path = format!("/addon-services/{}/plans", seg(arg));
    let Ok(items) = api.list(&path, None, true).await else {
        return arg.to_owned();
    };
    items
        .iter()
        .find(|p| p.get("default").and_then(Value::as_bool) == Some(true))
        .and_then(|p| p.get("name")?.as_str())
        .map_or_else(|| arg.to_owned(), str::to_owned)
}

fn created_line(addon: &Addon) -> String {
    if addon.config_vars.is_empty() {
        format!("Created {}", addon.name)
    } else {
        format!("Created {} as {}", addon.name, addon.config_vars.join(", "))
    }
}

/// `addons:create SERVICE[:PLAN]`: provisions the add-on and attaches it to the app (which sets
/// its config vars and makes a release).
pub async fn create(ctx: &mut Ctx<'_>, a: AddonsCreate) -> Result<()> {
    let mut config = parse_addon_config(&a.config)?;
    // Heroku's CLI sends these as provider settings too.
    if let Some(db) = &a.follow {
        config.insert("follow".into(), json!(db));
    }
    if let Some(db) = &a.fork {
        config.insert("fork".into(), json!(db));
    }
    if a.fast {
        config.insert("fast".into(), json!(true));
    }
    for (key, value) in [("rollback", &a.rollback), ("to", &a.to), ("by", &a.by)] {
        if let Some(v) = value {
            config.insert(key.into(), json!(v));
        }
    }
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?.expanding("plan");
    let mut attachment = json!({});
    if let Some(name) = &a.attachment {
        attachment["name"] = json!(name);
    }
    let mut body = json!({
        "plan": { "name": a.plan },
        "attachment": attachment,
        "config": config,
    });
    if let Some(name) = &a.name {
        body["name"] = json!(name);
    }
    if let Some(confirm) = &a.confirm {
        body["confirm"] = json!(confirm);
    }
    let label = format!("Creating {} on ⬢ {app}", plan_label(&api, &a.plan).await);
    let path = format!("/apps/{}/addons", seg(&app));
    let command = match &a.attachment {
        Some(name) => format!("addons:create {} --as {name}", a.plan),
        None => format!("addons:create {}", a.plan),
    };
    let value = ctx
        .action(&label, api.call(Method::POST, &path, Some(&body)))
        .await
        .map_err(|e| with_confirm_hint(e, &command, &app))?;
    let mut addon: Addon = decode(value, "an add-on")?;
    writeln!(
        ctx.out,
        "{}",
        addon.price().unwrap_or_else(|| "done".into())
    )?;
    if let Some(message) = addon.provision_message.as_deref().filter(|m| !m.is_empty()) {
        writeln!(ctx.out, "{message}")?;
    }
    if addon.state == "provisioning" {
        if !a.wait {
            writeln!(
                ctx.out,
                "{} is being created in the background. The app will restart when complete...",
                addon.name
            )?;
            writeln!(
                ctx.out,
                "Use slipway addons:info {} to check creation progress.",
                addon.name
            )?;
            return Ok(());
        }
        let label = format!("Waiting for {}", addon.name);
        addon = ctx.action(&label, wait_provisioned(&api, &addon)).await?;
        writeln!(ctx.out, "done")?;
    }
    if addon.state == "deprovisioned" {
        bail!(
            "The add-on was unable to be created, with status {}.",
            addon.state
        );
    }
    writeln!(ctx.out, "{}", created_line(&addon))?;
    writeln!(ctx.out, "Use slipway addons:info {} to see it.", addon.name)?;
    Ok(())
}

/// Polls `GET /addons/{id}` until the add-on leaves `provisioning`, for up to [`WAIT_DEADLINE`].
async fn wait_provisioned(api: &Api, addon: &Addon) -> Result<Addon> {
    let deadline = tokio::time::Instant::now() + WAIT_DEADLINE;
    let path = format!("/addons/{}", seg(&addon.id));
    loop {
        let current: Addon = decode(api.get(&path).await?, "an add-on")?;
        match current.state.as_str() {
            "provisioning" => {}
            "deprovisioned" => bail!(
                "The add-on was unable to be created, with status {}.",
                current.state
            ),
            _ => return Ok(current),
        }
        if tokio::time::Instant::now() + WAIT_INTERVAL > deadline {
            bail!(
                "{} is still being created after {} minutes. Check on it with slipway addons:info {}.",
                addon.name,
                WAIT_DEADLINE.as_secs() / 60,
                addon.name
            );
        }
        tokio::time::sleep(WAIT_INTERVAL).await;
    }
}

/// Finds an add-on by name or id: with an app, first among the app's add-ons (which also knows
/// its attachment names), then anywhere the account can see.
async fn find_addon(api: &Api, app: Option<&str>, addon: &str) -> Result<Value> {
    if let Some(app) = app {
        let path = format!("/apps/{}/addons/{}", seg(app), seg(addon));
        match api.get(&path).await {
            Ok(v) => return Ok(v),
            Err(e) if is_status(&e, StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e),
        }
    }
    api.get(&format!("/addons/{}", seg(addon))).await
}

/// `addons:info ADDON`.
pub async fn info(ctx: &mut Ctx<'_>, a: AddonsInfo) -> Result<()> {
    // The app only narrows the lookup; an add-on name works from anywhere.
    let app = ctx.app(&a.app).ok();
    let api = ctx.api()?.expanding("addon_service,plan");
    let value = find_addon(&api, app.as_deref(), &a.addon).await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let addon: Addon = decode(value, "an add-on")?;
    let path = format!("/addons/{}/addon-attachments", seg(&addon.id));
    let attachments: Vec<Attachment> =
        decode_all(api.list(&path, None, true).await?, "an add-on attachment")?;
    let mut rows: Vec<(String, String)> = Vec::new();
    if !attachments.is_empty() {
        let mut names: Vec<String> = attachments
            .iter()
            .map(|t| format!("{}::{}", t.app.name, t.name))
            .collect();
        names.sort();
        rows.push(("Attachments".into(), names.join("\n")));
    }
    if let Some(t) = addon.created_at {
        rows.push(("Installed at".into(), stamp(t)));
    }
    rows.push(("Owning app".into(), addon.app.name.clone()));
    rows.push(("Plan".into(), addon.plan.name.clone()));
    if let Some(price) = addon.price() {
        rows.push(("Price".into(), price));
    }
    rows.push(("State".into(), state_text(&addon.state).to_owned()));
    write!(ctx.out, "{}{}", header(&addon.name), key_values(&rows))?;
    Ok(())
}

/// Adds the command to run to a `confirmation_required` refusal (an attachment of that name
/// exists on the app and would be replaced).
fn with_confirm_hint(e: anyhow::Error, command: &str, app: &str) -> anyhow::Error {
    match e.downcast_ref::<ApiError>() {
        Some(api) if api.id.as_deref() == Some("confirmation_required") => anyhow!(
            "{} To proceed, run slipway {command} -a {app} --confirm {app}",
            api.message
        ),
        _ => e,
    }
}

fn done_version(version: Option<i64>) -> String {
    version.map_or_else(|| "done".to_owned(), |v| format!("done, v{v}"))
}

/// `addons:attach ADDON [--as NAME]`: shares an existing add-on with the app.
pub async fn attach(ctx: &mut Ctx<'_>, a: AddonsAttach) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let mut body = json!({ "addon": { "name": a.addon }, "app": { "name": app } });
    if let Some(name) = &a.attachment {
        body["name"] = json!(name);
    }
    if let Some(confirm) = &a.confirm {
        body["confirm"] = json!(confirm);
    }
    let label = match &a.attachment {
        Some(name) => format!("Attaching {} as {name} to ⬢ {app}", a.addon),
        None => format!("Attaching {} to ⬢ {app}", a.addon),
    };
    let command = match &a.attachment {
        Some(name) => format!("addons:attach {} --as {name}", a.addon),
        None => format!("addons:attach {}", a.addon),
    };
    let value = ctx
        .action(
            &label,
            api.call(Method::POST, "/addon-attachments", Some(&body)),
        )
        .await
        .map_err(|e| with_confirm_hint(e, &command, &app))?;
    writeln!(ctx.out, "done")?;
    let attachment: Attachment = decode(value, "an add-on attachment")?;
    let label = format!(
        "Setting {} config vars and restarting ⬢ {app}",
        attachment.name
    );
    let version = ctx
        .action(&label, async { Ok(latest_version(&api, &app).await) })
        .await?;
    writeln!(ctx.out, "{}", done_version(version))?;
    Ok(())
}

/// `addons:detach ATTACHMENT`: removes the attachment (and its config vars) from the app.
pub async fn detach(ctx: &mut Ctx<'_>, a: AddonsDetach) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!(
        "/apps/{}/addon-attachments/{}",
        seg(&app),
        seg(&a.attachment)
    );
    let attachment: Attachment = decode(api.get(&path).await?, "an add-on attachment")?;
    let label = format!(
        "Detaching {} to {} from ⬢ {app}",
        attachment.name, attachment.addon.name
    );
    let path = format!("/addon-attachments/{}", seg(&attachment.id));
    ctx.action(&label, api.call(Method::DELETE, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    let label = format!(
        "Unsetting {} config vars and restarting ⬢ {app}",
        attachment.name
    );
    let version = ctx
        .action(&label, async { Ok(latest_version(&api, &app).await) })
        .await?;
    writeln!(ctx.out, "{}", done_version(version))?;
    Ok(())
}

/// `addons:upgrade ADDON PLAN` (and `addons:downgrade`): changes the plan in place.
pub async fn upgrade(ctx: &mut Ctx<'_>, a: AddonsUpgrade) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?.expanding("plan");
    let path = format!("/apps/{}/addons/{}", seg(&app), seg(&a.addon));
    let addon: Addon = decode(api.get(&path).await?, "an add-on")?;
    let plan = if a.plan.contains(':') {
        a.plan.clone()
    } else {
        format!("{}:{}", addon.service(), a.plan)
    };
    let owner = addon.app.name.clone();
    let label = format!(
        "Changing {} on ⬢ {owner} from {} to {}",
        addon.name,
        short_plan(&addon.plan.name),
        short_plan(&plan)
    );
    let path = format!("/apps/{}/addons/{}", seg(&owner), seg(&addon.id));
    let body = json!({ "plan": { "name": plan } });
    let value = ctx
        .action(&label, api.call(Method::PATCH, &path, Some(&body)))
        .await?;
    let changed: Addon = decode(value, "an add-on")?;
    match changed.price() {
        Some(p) => writeln!(ctx.out, "done, {p}")?,
        None => writeln!(ctx.out, "done")?,
    }
    if let Some(message) = changed
        .provision_message
        .as_deref()
        .filter(|m| !m.is_empty())
    {
        writeln!(ctx.out, "{message}")?;
    }
    Ok(())
}

/// `addons:destroy ADDON... --confirm APP`: refuses without the app's name, before any request.
pub async fn destroy(ctx: &mut Ctx<'_>, a: AddonsDestroy) -> Result<()> {
    let app = ctx.app(&a.app)?;
    if a.confirm.as_deref() != Some(app.as_str()) {
        let what = if a.addons.len() == 1 {
            "its data"
        } else {
            "their data"
        };
        let force = if a.force { " --force" } else { "" };
        writeln!(
            ctx.err,
            " ▸    This will destroy {} on {app} and {what}. To proceed, run: slipway addons:destroy {} -a {app} --confirm {app}{force}",
            a.addons.join(", "), a.addons.join(" ")
        )?;
        ctx.err.flush()?;
        return Err(ExitStatus(1).into());
    }
    let api = ctx.api()?;
    for name in &a.addons {
        let path = format!("/apps/{}/addons/{}", seg(&app), seg(name));
        let addon: Addon = decode(api.get(&path).await?, "an add-on")?;
        if addon.app.name != app {
            return Err(anyhow!(
                "{} belongs to {}, not {app}. Destroy it there: slipway addons:destroy {} -a {} --confirm {}",
                addon.name,
                addon.app.name,
                addon.name,
                addon.app.name,
                addon.app.name
            ));
        }
        let label = format!("Destroying {} on ⬢ {app}", addon.name);
        let path = format!("/apps/{}/addons/{}", seg(&app), seg(&addon.id));
        let body = json!({ "force": a.force });
        ctx.action(&label, api.call(Method::DELETE, &path, Some(&body)))
            .await?;
        writeln!(ctx.out, "done")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_render_per_kind() {
        let pg = Limits {
            connections: Some(20),
            storage_bytes: Some(1 << 30),
            rows: Some(10_000),
            maxmemory_bytes: None,
        };
        assert_eq!(pg.text(), "20 connections, 1 GB, 10,000 rows");
        let big = Limits {
            connections: Some(120),
            storage_bytes: Some(64 << 30),
            ..Limits::default()
        };
        assert_eq!(big.text(), "120 connections, 64 GB");
        let redis = Limits {
            connections: Some(20),
            maxmemory_bytes: Some(25 << 20),
            ..Limits::default()
        };
        assert_eq!(redis.text(), "25 MB, 20 clients");
        assert_eq!(Limits::default().text(), "");
    }

    #[test]
    fn states_and_plans() {
        assert_eq!(state_text("provisioned"), "created");
        assert_eq!(state_text("provisioning"), "creating");
        assert_eq!(state_text("deprovisioned"), "destroyed");
        assert_eq!(state_text("weird"), "weird");
        assert_eq!(short_plan("heroku-redis:mini"), "mini");
        assert_eq!(short_plan("mini"), "mini");
    }
}
