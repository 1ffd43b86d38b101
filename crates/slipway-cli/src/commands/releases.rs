//! `releases`, `releases:info`, `rollback`.

use anyhow::{anyhow, Result};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::{ConfigVars, Release};

use super::{release_ref, Ctx};
use crate::api::{decode, decode_all, seg, Api};
use crate::args::{ReleasesInfo, Rollback};
use crate::format::{header, key_values, shell_quote, table, time_ago};

fn path(app: &str) -> String {
    format!("/apps/{}/releases", seg(app))
}

/// The description with a note for releases that did not succeed, as Heroku shows them.
fn describe(r: &Release) -> String {
    match r.status.as_str() {
        "succeeded" | "" => r.description.clone(),
        "pending" => format!("{} (release command executing)", r.description),
        "failed" => format!("{} (release command failed)", r.description),
        other => format!("{} ({other})", r.description),
    }
}

/// The newest releases, newest first (`max` of them, as the server's `Range` allows).
async fn newest(api: &Api, app: &str, max: u32) -> Result<Vec<Value>> {
    let range = format!("version ..; order=desc, max={max}");
    api.list(&path(app), Some(&range), false).await
}

/// `releases [-n N]`.
pub async fn list(ctx: &mut Ctx<'_>, a: crate::args::Releases) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let num = a.num.max(1);
    let mut items = newest(&api, &app, num).await?;
    items.truncate(num as usize);
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let mut releases: Vec<Release> = decode_all(items, "a release")?;
    releases.sort_by_key(|r| std::cmp::Reverse(r.version));
    let Some(current) = releases.iter().find(|r| r.current).or(releases.first()) else {
        write!(ctx.out, "{}", header(&format!("{app} Releases")))?;
        writeln!(ctx.out, "{app} has no releases.")?;
        return Ok(());
    };
    let title = format!("{app} Releases - Current: v{}", current.version);
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                format!("v{}", r.version),
                describe(r),
                r.user.email.clone(),
                time_ago(r.created_at, ctx.now),
            ]
        })
        .collect();
    write!(ctx.out, "{}{}", header(&title), table(&rows))?;
    Ok(())
}

/// The current release (or the newest, if none is marked current).
async fn current_release(api: &Api, app: &str) -> Result<Value> {
    let items = newest(api, app, 10).await?;
    let current = items
        .iter()
        .find(|r| r.get("current").and_then(Value::as_bool) == Some(true))
        .or(items.first())
        .cloned();
    current.ok_or_else(|| anyhow!("{app} has no releases."))
}

/// `releases:info [vN]`: one release and, when the server provides them, its config vars.
pub async fn info(ctx: &mut Ctx<'_>, a: ReleasesInfo) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = match &a.release {
        Some(r) => {
            api.get(&format!("{}/{}", path(&app), seg(&release_ref(r))))
                .await?
        }
        None => current_release(&api, &app).await?,
    };
    if a.json {
        return ctx.print_json(&value);
    }
    let r: Release = decode(value, "a release")?;
    let vars_path = format!("{}/{}/config-vars", path(&app), r.version);
    let vars: Option<ConfigVars> = match api.get(&vars_path).await {
        Ok(v) => decode(v, "config vars").ok(),
        Err(_) => None,
    };
    if a.shell {
        let vars = vars
            .ok_or_else(|| anyhow!("Slipway did not return the config vars of v{}.", r.version))?;
        for (k, v) in &vars {
            writeln!(ctx.out, "{k}={}", shell_quote(v))?;
        }
        return Ok(());
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    if !r.addon_plan_names.is_empty() {
        rows.push(("Add-ons".into(), r.addon_plan_names.join(", ")));
    }
    rows.push(("Change".into(), r.description.clone()));
    rows.push(("By".into(), r.user.email.clone()));
    rows.push(("When".into(), time_ago(r.created_at, ctx.now)));
    if r.status != "succeeded" {
        rows.push(("Status".into(), r.status.clone()));
    }
    write!(
        ctx.out,
        "{}{}",
        header(&format!("Release v{}", r.version)),
        key_values(&rows)
    )?;
    if let Some(vars) = vars {
        let pairs: Vec<(String, String)> = vars.into_iter().collect();
        write!(
            ctx.out,
            "\n{}{}",
            header(&format!("v{} Config vars", r.version)),
            key_values(&pairs)
        )?;
    }
    Ok(())
}

/// `rollback [vN]`: by default to the newest rollback-eligible release before the current one.
pub async fn rollback(ctx: &mut Ctx<'_>, a: Rollback) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let (target, previous) = match &a.release {
        Some(r) => {
            let value = api
                .get(&format!("{}/{}", path(&app), seg(&release_ref(r))))
                .await?;
            (decode::<Release>(value, "a release")?, None)
        }
        None => {
            let mut releases: Vec<Release> =
                decode_all(newest(&api, &app, 50).await?, "a release")?;
            releases.sort_by_key(|r| std::cmp::Reverse(r.version));
            let current = releases
                .iter()
                .find(|r| r.current)
                .or(releases.first())
                .ok_or_else(|| anyhow!("{app} has no releases to roll back."))?;
            let target = releases
                .iter()
                .find(|r| r.version < current.version && r.eligible_for_rollback)
                .ok_or_else(|| anyhow!("{app} has no earlier release to roll back to."))?;
            (target.clone(), Some(current.version))
        }
    };
    let label = format!("Rolling back {app} to v{}", target.version);
    let body = json!({ "release": target.id });
    let created = ctx
        .action(&label, api.call(Method::POST, &path(&app), Some(&body)))
        .await?;
    match created.get("version").and_then(Value::as_i64) {
        Some(v) => writeln!(ctx.out, "done, v{v}")?,
        None => writeln!(ctx.out, "done")?,
    }
    let undo = previous
        .map(|v| format!(" To undo, run: slipway rollback v{v}"))
        .unwrap_or_default();
    ctx.warn(&format!(
        "rollback affects code and config vars; it doesn't add or remove add-ons.{undo}"
    ))?;
    Ok(())
}
