//! `stacks` and `stack`: the root filesystems this server can run apps on.

use anyhow::Result;
use reqwest::Method;
use serde_json::json;
use serde_json::Value;

use super::Ctx;
use crate::api::seg;
use crate::args::{AppJson, StackSet, StacksArgs};
use crate::format::header;

fn names(items: &[Value]) -> Vec<(String, bool)> {
    items
        .iter()
        .filter_map(|s| {
            Some((
                s.get("name")?.as_str()?.to_string(),
                s.get("default").and_then(Value::as_bool).unwrap_or(false),
            ))
        })
        .collect()
}

/// `stacks`: every stack, the default marked.
pub async fn list(ctx: &mut Ctx<'_>, a: StacksArgs) -> Result<()> {
    let api = ctx.api()?;
    let items = api.list("/stacks", None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    write!(ctx.out, "{}", header("Available Stacks"))?;
    for (name, default) in names(&items) {
        writeln!(
            ctx.out,
            "{} {name}{}",
            if default { "*" } else { " " },
            if default { " (default)" } else { "" }
        )?;
    }
    Ok(())
}

/// `stack`: the stacks, with the app's own marked.
pub async fn show(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let info = api.get(&format!("/apps/{}", seg(&app))).await?;
    let current = info
        .get("stack")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let items = api.list("/stacks", None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    write!(ctx.out, "{}", header(&format!("{app} Available Stacks")))?;
    for (name, _) in names(&items) {
        writeln!(
            ctx.out,
            "{} {name}",
            if name == current { "*" } else { " " }
        )?;
    }
    Ok(())
}

/// `stack:set STACK`: the stack of the app's next build (and so of the dynos of that release).
pub async fn set(ctx: &mut Ctx<'_>, a: StackSet) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let body = json!({ "build_stack": a.stack });
    ctx.action(
        &format!("Setting stack to {}", a.stack),
        api.call(Method::PATCH, &format!("/apps/{}", seg(&app)), Some(&body)),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    writeln!(
        ctx.out,
        "You will need to redeploy {app} for the change to take effect."
    )?;
    writeln!(
        ctx.out,
        "Run git push slipway main to trigger a new build on {app}."
    )?;
    Ok(())
}
