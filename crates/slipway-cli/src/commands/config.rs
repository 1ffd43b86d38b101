//! `config`, `config:get`, `config:set`, `config:unset`.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Map, Value};
use slipway_types::ConfigVars;

use super::Ctx;
use crate::api::{decode, seg, Api};
use crate::args::{parse_config_pairs, ConfigGet, ConfigSet, ConfigShow, ConfigUnset};
use crate::format::{header, key_values, shell_quote};

fn path(app: &str) -> String {
    format!("/apps/{}/config-vars", seg(app))
}

/// `config`: every var, aligned, or `KEY=value` lines with `--shell`.
pub async fn show(ctx: &mut Ctx<'_>, a: ConfigShow) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api.get(&path(&app)).await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let vars: ConfigVars = decode(value, "config vars")?;
    if a.shell {
        for (k, v) in &vars {
            writeln!(ctx.out, "{k}={}", shell_quote(v))?;
        }
        return Ok(());
    }
    let pairs: Vec<(String, String)> = vars.into_iter().collect();
    write!(
        ctx.out,
        "{}{}",
        header(&format!("{app} Config Vars")),
        key_values(&pairs)
    )?;
    Ok(())
}

/// `config:get KEY`: the value alone; an unset var prints an empty line and still succeeds, as in
/// Heroku's CLI.
pub async fn get(ctx: &mut Ctx<'_>, a: ConfigGet) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let vars: ConfigVars = decode(api.get(&path(&app)).await?, "config vars")?;
    let value = vars.get(&a.key).map(String::as_str).unwrap_or("");
    if a.shell {
        writeln!(ctx.out, "{}={}", a.key, shell_quote(value))?;
    } else {
        writeln!(ctx.out, "{value}")?;
    }
    Ok(())
}

/// The newest release's version, for the `done, v4` suffix. Best effort: the change already
/// happened, so a failure here only shortens the message.
pub async fn latest_version(api: &Api, app: &str) -> Option<i64> {
    let path = format!("/apps/{}/releases", seg(app));
    let items = api
        .list(&path, Some("version ..; order=desc, max=1"), false)
        .await
        .ok()?;
    items
        .iter()
        .filter_map(|r| r.get("version")?.as_i64())
        .max()
}

fn done_suffix(version: Option<i64>) -> String {
    version.map(|v| format!(", v{v}")).unwrap_or_default()
}

/// `config:set KEY=value...`.
pub async fn set(ctx: &mut Ctx<'_>, a: ConfigSet) -> Result<()> {
    let pairs = parse_config_pairs(&a.pairs)?;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let body: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let label = format!("Setting {} and restarting {app}", keys.join(", "));
    let work = async {
        let vars = api
            .call(Method::PATCH, &path(&app), Some(&Value::Object(body)))
            .await?;
        Ok((vars, latest_version(&api, &app).await))
    };
    let (vars, version) = ctx.action(&label, work).await?;
    writeln!(ctx.out, "done{}", done_suffix(version))?;
    let shown: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, sent)| {
            let v = vars
                .get(&k)
                .and_then(Value::as_str)
                .map_or(sent, str::to_owned);
            (k, v)
        })
        .collect();
    write!(ctx.out, "{}", key_values(&shown))?;
    Ok(())
}

/// `config:unset KEY...`.
pub async fn unset(ctx: &mut Ctx<'_>, a: ConfigUnset) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let body: Map<String, Value> = a.keys.iter().map(|k| (k.clone(), Value::Null)).collect();
    let label = format!("Unsetting {} and restarting {app}", a.keys.join(", "));
    let work = async {
        api.call(Method::PATCH, &path(&app), Some(&Value::Object(body)))
            .await?;
        Ok(latest_version(&api, &app).await)
    };
    let version = ctx.action(&label, work).await?;
    writeln!(ctx.out, "done{}", done_suffix(version))?;
    Ok(())
}
