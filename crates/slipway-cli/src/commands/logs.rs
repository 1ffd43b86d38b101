//! `logs`: opens a log session, then copies the plain-text stream to the output as it arrives
//! (held open by the server with `--tail`).

use anyhow::{anyhow, bail, Result};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use slipway_types::LogSessionRequest;

use super::Ctx;
use crate::api::seg;
use crate::args::{AppJson, Logs, RetentionSet};

/// `logs [-n N] [-t] [-d DYNO] [-s SOURCE] [--since T] [--until T] [--grep TEXT]`.
pub async fn logs(ctx: &mut Ctx<'_>, a: Logs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let search = a.since.is_some() || a.until.is_some() || a.grep.is_some();
    let request = LogSessionRequest {
        dyno: a.dyno.or(a.process_type),
        lines: a.num.or((!search).then_some(100)),
        source: a.source,
        tail: Some(a.tail),
        since: a.since,
        until: a.until,
        grep: a.grep,
    };
    let session = api
        .call(
            Method::POST,
            &format!("/apps/{}/log-sessions", seg(&app)),
            Some(&serde_json::to_value(&request)?),
        )
        .await?;
    let url = session
        .get("logplex_url")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("Slipway did not return a log stream URL."))?;
    let url = if url.starts_with('/') {
        format!("{}{url}", ctx.api_url)
    } else {
        url.to_owned()
    };
    let resp = api.stream(&url).await?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| anyhow!("The log stream from Slipway broke off: {e}."))?;
        ctx.out.write_all(&chunk)?;
        ctx.out.flush()?;
    }
    Ok(())
}

fn print_retention(ctx: &mut Ctx<'_>, app: &str, v: &Value) -> Result<()> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let default = v.get("default").and_then(Value::as_bool).unwrap_or(false);
    writeln!(ctx.out, "=== {app} Log History")?;
    writeln!(ctx.out, "Size: {} MB", n("max_size_mb"))?;
    writeln!(ctx.out, "Age:  {} days", n("max_age_days"))?;
    if default {
        writeln!(ctx.out, "(the defaults)")?;
    }
    Ok(())
}

/// `logs:retention`.
pub async fn retention(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api
        .get(&format!("/apps/{}/log-retention", seg(&app)))
        .await?;
    if a.json {
        return ctx.print_json(&value);
    }
    print_retention(ctx, &app, &value)
}

/// `logs:retention:set [--size MB] [--age DAYS] | --default`.
pub async fn retention_set(ctx: &mut Ctx<'_>, a: RetentionSet) -> Result<()> {
    let body = if a.default {
        serde_json::json!({ "max_size_mb": null, "max_age_days": null })
    } else {
        if a.size.is_none() && a.age.is_none() {
            bail!("Give --size MB, --age DAYS, or both (or --default). See slipway help logs:retention:set.");
        }
        let mut b = serde_json::json!({});
        if let Some(s) = a.size {
            b["max_size_mb"] = serde_json::json!(s);
        }
        if let Some(d) = a.age {
            b["max_age_days"] = serde_json::json!(d);
        }
        b
    };
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = ctx
        .action(
            &format!("Setting the log history kept for ⬢ {app}"),
            api.call(
                Method::PUT,
                &format!("/apps/{}/log-retention", seg(&app)),
                Some(&body),
            ),
        )
        .await?;
    writeln!(ctx.out, "done")?;
    print_retention(ctx, &app, &value)
}
