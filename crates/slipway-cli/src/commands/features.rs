//! `features`, `features:info`, `features:enable`, `features:disable`, and `maintenance[:on|:off]`.

use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};

use super::Ctx;
use crate::api::seg;
use crate::args::{AppArgsOnly, AppJson, FeatureArgs};
use crate::format::header;

/// `features`: `[+] preboot  description` for each feature, `+` when on.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api
        .list(&format!("/apps/{}/features", seg(&app)), None, true)
        .await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let width = items
        .iter()
        .filter_map(|f| f["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    let mut out = header(&format!("App Features {app}"));
    for f in &items {
        let mark = if f["enabled"] == true { "[+]" } else { "[ ]" };
        out.push_str(&format!(
            "{mark} {:width$}  {}\n",
            f["name"].as_str().unwrap_or_default(),
            f["description"].as_str().unwrap_or_default(),
        ));
    }
    write!(ctx.out, "{out}")?;
    Ok(())
}

/// `features:info FEATURE`.
pub async fn info(ctx: &mut Ctx<'_>, a: FeatureArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let f = api
        .call(
            Method::GET,
            &format!("/apps/{}/features/{}", seg(&app), seg(&a.feature)),
            None,
        )
        .await?;
    if a.json {
        return ctx.print_json(&f);
    }
    let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
    write!(ctx.out, "{}", header(&text("name")))?;
    let rows = vec![
        vec!["Description:".to_string(), text("description")],
        vec!["Enabled:".to_string(), (f["enabled"] == true).to_string()],
    ];
    write!(ctx.out, "{}", crate::format::table(&rows))?;
    Ok(())
}

/// `features:enable FEATURE` and `features:disable FEATURE`.
pub async fn set(ctx: &mut Ctx<'_>, a: FeatureArgs, enabled: bool) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/features/{}", seg(&app), seg(&a.feature));
    let verb = if enabled { "Enabling" } else { "Disabling" };
    ctx.action(
        &format!("{verb} {} for {app}", a.feature),
        api.call(Method::PATCH, &path, Some(&json!({ "enabled": enabled }))),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `maintenance`: `on` or `off`.
pub async fn show_maintenance(ctx: &mut Ctx<'_>, a: AppArgsOnly) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let info = api
        .call(Method::GET, &format!("/apps/{}", seg(&app)), None)
        .await?;
    let on = info["maintenance"] == true;
    writeln!(ctx.out, "{}", if on { "on" } else { "off" })?;
    Ok(())
}

/// `maintenance:on` and `maintenance:off`.
pub async fn set_maintenance(ctx: &mut Ctx<'_>, a: AppArgsOnly, on: bool) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let verb = if on { "Enabling" } else { "Disabling" };
    ctx.action(
        &format!("{verb} maintenance mode for {app}"),
        api.call(
            Method::PATCH,
            &format!("/apps/{}", seg(&app)),
            Some(&json!({ "maintenance": on })),
        ),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}
