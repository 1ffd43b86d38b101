//! `apps`, `apps:create`, `apps:info`, `apps:destroy`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::{validate_app_name, Account, App, Dyno};

use super::Ctx;
use crate::api::{decode, decode_all, seg};
use crate::args::{AppsCreate, AppsDestroy, AppsInfo};
use crate::format::{header, human_size, key_values, table};

/// `apps`: the account's apps, then apps owned by others that it collaborates on.
pub async fn list(ctx: &mut Ctx<'_>, json: bool) -> Result<()> {
    let api = ctx.api()?;
    let items = api.list("/apps", None, true).await?;
    if json {
        return ctx.print_json(&Value::Array(items));
    }
    let account: Account = decode(api.get("/account").await?, "an account")?;
    let mut apps: Vec<App> = decode_all(items, "an app")?;
    if apps.is_empty() {
        writeln!(ctx.out, "You have no apps.")?;
        return Ok(());
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let (mine, others): (Vec<App>, Vec<App>) = apps
        .into_iter()
        .partition(|a| a.owner.email == account.email);
    if !mine.is_empty() {
        write!(ctx.out, "{}", header(&format!("{} Apps", account.email)))?;
        for app in &mine {
            writeln!(ctx.out, "{}", app.name)?;
        }
    }
    if !others.is_empty() {
        if !mine.is_empty() {
            writeln!(ctx.out)?;
        }
        write!(ctx.out, "{}", header("Collaborated Apps"))?;
        let rows: Vec<Vec<String>> = others
            .iter()
            .map(|a| vec![a.name.clone(), a.owner.email.clone()])
            .collect();
        write!(ctx.out, "{}", table(&rows))?;
    }
    Ok(())
}

/// `apps:create [NAME]`: creates the app, then inside a git work tree points a remote at it and
/// installs the push credential helper.
pub async fn create(ctx: &mut Ctx<'_>, a: AppsCreate) -> Result<()> {
    if let Some(name) = &a.name {
        validate_app_name(name).map_err(anyhow::Error::msg)?;
    }
    let api = ctx.api()?;
    let body = match &a.name {
        Some(name) => json!({ "name": name }),
        None => json!({}),
    };
    let value = if a.json {
        api.call(Method::POST, "/apps", Some(&body)).await?
    } else {
        let label = match &a.name {
            Some(name) => format!("Creating {name}"),
            None => "Creating app".to_owned(),
        };
        let value = ctx
            .action(&label, api.call(Method::POST, "/apps", Some(&body)))
            .await?;
        value
    };
    let app: App = decode(value.clone(), "an app")?;
    if !a.json {
        match &a.name {
            Some(_) => writeln!(ctx.out, "done")?,
            None => writeln!(ctx.out, "done, {}", app.name)?,
        }
    }
    if let Some(bp) = &a.buildpack {
        let path = format!("/apps/{}/buildpack-installations", seg(&app.name));
        let body = json!({ "updates": [{ "buildpack": bp }] });
        let work = api.call(Method::PUT, &path, Some(&body));
        if a.json {
            work.await?;
        } else {
            ctx.action(&format!("Setting buildpack to {bp}"), work)
                .await?;
            writeln!(ctx.out, "done")?;
        }
    }
    if a.json {
        ctx.print_json(&value)?;
    } else {
        writeln!(ctx.out, "{} | {}", app.web_url, app.git_url)?;
    }
    if !a.no_remote {
        let git = ctx.git();
        if git.in_work_tree() {
            git.set_remote(&a.remote, &app.git_url)
                .and_then(|()| git.configure_credentials(&app.git_url, &ctx.env.exe))
                .with_context(|| {
                    format!(
                        "Created {}, but could not set up the git remote {}",
                        app.name, a.remote
                    )
                })?;
        }
    }
    Ok(())
}

/// `apps:info`: the app's URLs, owner, region, stack, sizes and dyno counts.
pub async fn info(ctx: &mut Ctx<'_>, a: AppsInfo) -> Result<()> {
    let name = match a.name {
        Some(name) => name,
        None => ctx.app(&a.app)?,
    };
    let api = ctx.api()?;
    let value = api.get(&format!("/apps/{}", seg(&name))).await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let app: App = decode(value, "an app")?;
    // Dynos are extra detail: an error there should not hide the app itself.
    let dynos: Vec<Dyno> = match api
        .list(&format!("/apps/{}/dynos", seg(&name)), None, true)
        .await
    {
        Ok(items) => decode_all(items, "a dyno").unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    // Add-ons likewise: a server without them (or an error) leaves the line out.
    let addons: Vec<String> = match api
        .list(&format!("/apps/{}/addons", seg(&name)), None, true)
        .await
    {
        Ok(items) => items
            .iter()
            .filter_map(|a| a.get("plan")?.get("name")?.as_str().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for d in &dynos {
        *counts.entry(d.process_type.clone()).or_default() += 1;
    }
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| rows.push((k.to_owned(), v));
    if !addons.is_empty() {
        add("Addons", addons.join("\n"));
    }
    if !counts.is_empty() {
        let text: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        add("Dynos", text.join(", "));
    }
    add("Git URL", app.git_url.clone());
    if app.maintenance {
        add("Maintenance", "on".to_owned());
    }
    add("Owner", app.owner.email.clone());
    add("Region", app.region.name.clone());
    if let Some(size) = app.repo_size {
        add("Repo Size", human_size(size));
    }
    if let Some(size) = app.slug_size {
        add("Slug Size", human_size(size));
    }
    add("Stack", app.stack.name.clone());
    add("Web URL", app.web_url.clone());
    write!(ctx.out, "{}{}", header(&app.name), key_values(&rows))?;
    Ok(())
}

/// `apps:destroy --confirm NAME`: deletes the app and the git remotes that pointed at it.
pub async fn destroy(ctx: &mut Ctx<'_>, a: AppsDestroy) -> Result<()> {
    let name = match a.name.clone() {
        Some(name) => name,
        None => ctx.app(&a.app)?,
    };
    match a.confirm.as_deref() {
        None => bail!(
            "This will permanently destroy {name}, including its add-ons and data. To proceed, run \
             slipway apps:destroy {name} --confirm {name}"
        ),
        Some(c) if c != name => bail!("Confirmation {c} did not match {name}. Aborted."),
        Some(_) => {}
    }
    let api = ctx.api()?;
    let path = format!("/apps/{}", seg(&name));
    let app: App = decode(api.get(&path).await?, "an app")?;
    let label = format!("Destroying {name} (including all add-ons)");
    ctx.action(&label, api.call(Method::DELETE, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    let git = ctx.git();
    for (remote, url) in git.remotes() {
        if url == app.git_url {
            // The app is gone either way; a remote left behind is only untidy.
            let _ = git.remove_remote(&remote);
        }
    }
    Ok(())
}
