//! `buildpacks`, `buildpacks:set`, `buildpacks:add`, `buildpacks:remove`, `buildpacks:clear`.
//! Every change reads the list, edits it locally and `PUT`s the whole list back.

use anyhow::{bail, Result};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::BuildpackInstallation;

use super::Ctx;
use crate::api::{decode_all, seg, Api};
use crate::args::{AppArgs, AppJson, BuildpackChange, BuildpackRemove};
use crate::format::header;

fn path(app: &str) -> String {
    format!("/apps/{}/buildpack-installations", seg(app))
}

fn sorted(items: Vec<Value>) -> Result<Vec<BuildpackInstallation>> {
    let mut list: Vec<BuildpackInstallation> = decode_all(items, "a buildpack installation")?;
    list.sort_by_key(|b| b.ordinal);
    Ok(list)
}

async fn current(api: &Api, app: &str) -> Result<Vec<BuildpackInstallation>> {
    sorted(api.list(&path(app), None, true).await?)
}

async fn put(api: &Api, app: &str, urls: &[String]) -> Result<Vec<String>> {
    let updates: Vec<Value> = urls.iter().map(|u| json!({ "buildpack": u })).collect();
    let answer = api
        .call(
            Method::PUT,
            &path(app),
            Some(&json!({ "updates": updates })),
        )
        .await?;
    let items = match answer {
        Value::Array(items) => items,
        _ => return Ok(urls.to_vec()),
    };
    Ok(sorted(items)?
        .into_iter()
        .map(|b| b.buildpack.url)
        .collect())
}

fn matches(b: &BuildpackInstallation, wanted: &str) -> bool {
    b.buildpack.url == wanted || b.buildpack.name == wanted
}

/// `buildpacks`.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api.list(&path(&app), None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let urls: Vec<String> = sorted(items)?
        .into_iter()
        .map(|b| b.buildpack.url)
        .collect();
    match urls.as_slice() {
        [] => writeln!(ctx.out, "{app} has no Buildpacks.")?,
        [one] => writeln!(ctx.out, "{}{one}", header(&format!("{app} Buildpack URL")))?,
        many => {
            write!(ctx.out, "{}", header(&format!("{app} Buildpack URLs")))?;
            for (i, url) in many.iter().enumerate() {
                writeln!(ctx.out, "{}. {url}", i + 1)?;
            }
        }
    }
    Ok(())
}

/// Prints what the next release will use, as Heroku does after a change.
fn print_result(
    ctx: &mut Ctx<'_>,
    verb: &str,
    app: &str,
    remote: &str,
    urls: &[String],
) -> Result<()> {
    match urls {
        [] => writeln!(
            ctx.out,
            "Buildpack {verb}. Next release on {app} will detect buildpacks normally."
        )?,
        [one] => {
            writeln!(
                ctx.out,
                "Buildpack {verb}. Next release on {app} will use {one}."
            )?;
            writeln!(
                ctx.out,
                "Run git push {remote} main to create a new release using this buildpack."
            )?;
        }
        many => {
            writeln!(ctx.out, "Buildpack {verb}. Next release on {app} will use:")?;
            for (i, url) in many.iter().enumerate() {
                writeln!(ctx.out, "  {}. {url}", i + 1)?;
            }
            writeln!(
                ctx.out,
                "Run git push {remote} main to create a new release using these buildpacks."
            )?;
        }
    }
    Ok(())
}

fn check_index(index: usize) -> Result<usize> {
    if index == 0 {
        bail!("Invalid index 0: buildpack positions start at 1.");
    }
    Ok(index - 1)
}

/// `buildpacks:set URL [-i N]`: replaces the buildpack at position N (default 1).
pub async fn set(ctx: &mut Ctx<'_>, a: BuildpackChange) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let pos = check_index(a.index.unwrap_or(1))?;
    let list = current(&api, &app).await?;
    if list.iter().any(|b| matches(b, &a.buildpack)) {
        bail!("The buildpack {} is already set on your app.", a.buildpack);
    }
    let mut urls: Vec<String> = list.into_iter().map(|b| b.buildpack.url).collect();
    if pos < urls.len() {
        urls[pos] = a.buildpack.clone();
    } else if pos == urls.len() {
        urls.push(a.buildpack.clone());
    } else {
        bail!(
            "Invalid index {}: {app} has {} buildpacks.",
            pos + 1,
            urls.len()
        );
    }
    let urls = put(&api, &app, &urls).await?;
    print_result(ctx, "set", &app, Ctx::remote_name(&a.app), &urls)
}

/// `buildpacks:add URL [-i N]`: inserts at position N (default last).
pub async fn add(ctx: &mut Ctx<'_>, a: BuildpackChange) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let list = current(&api, &app).await?;
    if list.iter().any(|b| matches(b, &a.buildpack)) {
        bail!("The buildpack {} is already set on your app.", a.buildpack);
    }
    let mut urls: Vec<String> = list.into_iter().map(|b| b.buildpack.url).collect();
    let pos = match a.index {
        Some(i) => check_index(i)?.min(urls.len()),
        None => urls.len(),
    };
    urls.insert(pos, a.buildpack.clone());
    let urls = put(&api, &app, &urls).await?;
    print_result(ctx, "added", &app, Ctx::remote_name(&a.app), &urls)
}

/// `buildpacks:remove [URL] [-i N]`.
pub async fn remove(ctx: &mut Ctx<'_>, a: BuildpackRemove) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let mut list = current(&api, &app).await?;
    let pos = match (&a.buildpack, a.index) {
        (Some(wanted), _) => list.iter().position(|b| matches(b, wanted)),
        (None, Some(i)) => Some(check_index(i)?).filter(|p| *p < list.len()),
        (None, None) => None,
    };
    let Some(pos) = pos else {
        bail!("Buildpack not found. Nothing was removed.");
    };
    list.remove(pos);
    let urls: Vec<String> = list.into_iter().map(|b| b.buildpack.url).collect();
    let urls = put(&api, &app, &urls).await?;
    print_result(ctx, "removed", &app, Ctx::remote_name(&a.app), &urls)
}

/// `buildpacks:clear`.
pub async fn clear(ctx: &mut Ctx<'_>, a: AppArgs) -> Result<()> {
    let app = ctx.app(&a)?;
    let api = ctx.api()?;
    put(&api, &app, &[]).await?;
    writeln!(
        ctx.out,
        "Buildpacks cleared. Next release on {app} will detect buildpacks normally."
    )?;
    Ok(())
}
