//! `logs`: opens a log session, then copies the plain-text stream to the output as it arrives
//! (held open by the server with `--tail`).

use anyhow::{anyhow, Result};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use slipway_types::LogSessionRequest;

use super::Ctx;
use crate::api::seg;
use crate::args::Logs;

/// `logs [-n N] [-t] [-d DYNO] [-s SOURCE]`.
pub async fn logs(ctx: &mut Ctx<'_>, a: Logs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let request = LogSessionRequest {
        dyno: a.dyno.or(a.process_type),
        lines: Some(a.num),
        source: a.source,
        tail: Some(a.tail),
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
