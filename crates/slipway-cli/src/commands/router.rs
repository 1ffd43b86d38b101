//! `router:timeouts`, `router:timeouts:set`, `router:timeouts:unset`: Slipway's per-app router
//! timeouts (Heroku's are fixed at 30 s to the first byte and 55 s idle).

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::RouterTimeout;

use super::Ctx;
use crate::api::{decode_all, seg};
use crate::args::{AppJson, TimeoutsSet, TimeoutsUnset};
use crate::format::{header, titled_table};

fn print_table(ctx: &mut Ctx<'_>, app: &str, items: Vec<Value>) -> Result<()> {
    let list: Vec<RouterTimeout> = decode_all(items, "router timeouts")?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.path.clone(),
                format!("{}s", t.response_timeout),
                format!("{}s", t.idle_timeout),
            ]
        })
        .collect();
    write!(
        ctx.out,
        "{}{}",
        header(&format!("{app} Router Timeouts")),
        titled_table(&["Path", "Response", "Idle"], &rows)
    )?;
    Ok(())
}

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

/// `router:timeouts`.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api
        .get(&format!("/apps/{}/router-timeouts", seg(&app)))
        .await?;
    if a.json {
        return ctx.print_json(&value);
    }
    print_table(ctx, &app, as_list(value))
}

/// `router:timeouts:set [--path P] [--response SECS] [--idle SECS]`.
pub async fn set(ctx: &mut Ctx<'_>, a: TimeoutsSet) -> Result<()> {
    if a.response.is_none() && a.idle.is_none() {
        bail!("Give --response SECS, --idle SECS or both (1 to 3600 seconds). See slipway help router:timeouts:set.");
    }
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let mut body = json!({ "path": a.path });
    if let Some(r) = a.response {
        body["response_timeout"] = json!(r);
    }
    if let Some(i) = a.idle {
        body["idle_timeout"] = json!(i);
    }
    let value = ctx
        .action(
            &format!("Setting router timeouts for {} on ⬢ {app}", a.path),
            api.call(
                Method::PUT,
                &format!("/apps/{}/router-timeouts", seg(&app)),
                Some(&body),
            ),
        )
        .await?;
    writeln!(ctx.out, "done")?;
    print_table(ctx, &app, as_list(value))
}

/// `router:timeouts:unset --path P`.
pub async fn unset(ctx: &mut Ctx<'_>, a: TimeoutsUnset) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    ctx.action(
        &format!("Removing router timeouts for {} from ⬢ {app}", a.path),
        api.call(
            Method::DELETE,
            &format!("/apps/{}/router-timeouts?path={}", seg(&app), seg(&a.path)),
            None,
        ),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}
