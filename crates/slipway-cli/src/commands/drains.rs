//! `drains`, `drains:add`, `drains:remove`: where an app's log lines are also sent.

use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::LogDrain;

use super::Ctx;
use crate::api::{decode, decode_all, seg};
use crate::args::{AppJson, DrainArgs};
use crate::format::header;

/// `drains`: one `URL (d.token)` line per drain, as Heroku's CLI prints them.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api
        .list(&format!("/apps/{}/log-drains", seg(&app)), None, false)
        .await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let drains: Vec<LogDrain> = decode_all(items, "a log drain")?;
    if drains.is_empty() {
        writeln!(ctx.out, "{app} has no drains")?;
        return Ok(());
    }
    let mut out = header("Drains");
    for d in &drains {
        out.push_str(&format!("{} ({})\n", d.url, d.token));
    }
    write!(ctx.out, "{out}")?;
    Ok(())
}

/// `drains:add URL`.
pub async fn add(ctx: &mut Ctx<'_>, a: DrainArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api
        .call(
            Method::POST,
            &format!("/apps/{}/log-drains", seg(&app)),
            Some(&json!({ "url": a.url })),
        )
        .await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let d: LogDrain = decode(value, "a log drain")?;
    writeln!(ctx.out, "Successfully added drain {}", d.url)?;
    Ok(())
}

/// `drains:remove URL-or-token`.
pub async fn remove(ctx: &mut Ctx<'_>, a: DrainArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api
        .call(
            Method::DELETE,
            &format!("/apps/{}/log-drains/{}", seg(&app), seg(&a.url)),
            None,
        )
        .await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let d: LogDrain = decode(value, "a log drain")?;
    writeln!(ctx.out, "Successfully removed drain {}", d.url)?;
    Ok(())
}
