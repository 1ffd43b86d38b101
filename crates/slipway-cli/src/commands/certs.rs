//! `certs`, `certs:add`, `certs:info`, `certs:update`, `certs:remove`: the SSL certificates an
//! app's custom domains are served with (SNI endpoints).

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::SniEndpoint;

use super::Ctx;
use crate::api::{decode, decode_all, seg, Api};
use crate::args::{AppJson, CertFiles, CertName, CertRemove};
use crate::format::{header, key_values, titled_table};

/// `2027-01-31 12:00 UTC`, as Heroku prints certificate dates.
fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn expires(c: &SniEndpoint, now: DateTime<Utc>) -> String {
    match &c.ssl_cert {
        Some(s) if s.expires_at <= now => format!("{} (expired)", date(s.expires_at)),
        Some(s) => date(s.expires_at),
        None => "unreadable".into(),
    }
}

/// `certs`: one row per certificate.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api
        .list(&format!("/apps/{}/sni-endpoints", seg(&app)), None, true)
        .await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let certs: Vec<SniEndpoint> = decode_all(items, "an SNI endpoint")?;
    if certs.is_empty() {
        writeln!(
            ctx.out,
            "{app} has no SSL certificates.\nAdd one with slipway certs:add CRT KEY -a {app}."
        )?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            let (names, trusted) = match &c.ssl_cert {
                Some(s) => (
                    s.cert_domains.join(", "),
                    if s.ca_signed { "True" } else { "False" },
                ),
                None => (String::new(), "False"),
            };
            let domains = if c.domains.is_empty() {
                "none".to_string()
            } else {
                c.domains.join(", ")
            };
            vec![
                c.name.clone(),
                names,
                expires(c, ctx.now),
                trusted.to_string(),
                "SNI".to_string(),
                domains,
            ]
        })
        .collect();
    write!(
        ctx.out,
        "{}",
        titled_table(
            &[
                "Name",
                "Common Name(s)",
                "Expires",
                "Trusted",
                "Type",
                "Domains"
            ],
            &rows
        )
    )?;
    Ok(())
}

/// Prints what a certificate says, as Heroku's `certs:info` does.
fn print_details(ctx: &mut Ctx<'_>, c: &SniEndpoint) -> Result<()> {
    writeln!(ctx.out, "Certificate details:")?;
    let Some(s) = &c.ssl_cert else {
        writeln!(
            ctx.out,
            "The stored certificate cannot be read. Replace it with slipway certs:update."
        )?;
        return Ok(());
    };
    let domains = if c.domains.is_empty() {
        "none of the app's custom domains (add them with slipway domains:add)".to_string()
    } else {
        c.domains.join(", ")
    };
    let rows = vec![
        ("Common Name(s)".to_string(), s.cert_domains.join(", ")),
        ("Domains".to_string(), domains),
        ("Expires At".to_string(), expires(c, ctx.now)),
        ("Issuer".to_string(), s.issuer.clone()),
        ("Starts At".to_string(), date(s.starts_at)),
        ("Subject".to_string(), s.subject.clone()),
    ];
    write!(ctx.out, "{}", key_values(&rows))?;
    if s.self_signed {
        writeln!(ctx.out, "SSL certificate is self signed.")?;
    } else {
        writeln!(ctx.out, "SSL certificate is verified by a root authority.")?;
    }
    Ok(())
}

/// The certificate a command acts on: `--name`, else the app's only one.
async fn pick(api: &Api, app: &str, name: Option<&str>) -> Result<String> {
    if let Some(name) = name {
        return Ok(name.to_string());
    }
    let certs: Vec<SniEndpoint> = decode_all(
        api.list(&format!("/apps/{}/sni-endpoints", seg(app)), None, true)
            .await?,
        "an SNI endpoint",
    )?;
    match certs.as_slice() {
        [] => {
            bail!("{app} has no SSL certificates. Add one with slipway certs:add CRT KEY -a {app}.")
        }
        [one] => Ok(one.name.clone()),
        many => bail!(
            "{app} has several SSL certificates ({}): choose one with --name NAME.",
            many.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The PEM files of `certs:add` and `certs:update` as the request body.
fn read_files(a: &CertFiles) -> Result<Value> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow!("Cannot read the {what} file {}: {e}.", path.display()))
    };
    Ok(json!({
        "certificate_chain": read("certificate", &a.cert)?,
        "private_key": read("private key", &a.key)?,
    }))
}

/// `certs:add CRT KEY`.
pub async fn add(ctx: &mut Ctx<'_>, a: CertFiles) -> Result<()> {
    ctx.labels_to_err = a.json;
    let app = ctx.app(&a.app)?;
    let body = read_files(&a)?;
    let api = ctx.api()?;
    let value = ctx
        .action(
            &format!("Adding SSL certificate to ⬢ {app}"),
            api.call(
                Method::POST,
                &format!("/apps/{}/sni-endpoints", seg(&app)),
                Some(&body),
            ),
        )
        .await?;
    ctx.done()?;
    if a.json {
        return ctx.print_json(&value);
    }
    let c: SniEndpoint = decode(value, "an SNI endpoint")?;
    writeln!(ctx.out, "⬢ {app} now has SSL certificate {}.", c.name)?;
    print_details(ctx, &c)
}

/// `certs:info [--name NAME]`.
pub async fn info(ctx: &mut Ctx<'_>, a: CertName) -> Result<()> {
    ctx.labels_to_err = a.json;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let name = pick(&api, &app, a.name.as_deref()).await?;
    let path = format!("/apps/{}/sni-endpoints/{}", seg(&app), seg(&name));
    let value = ctx
        .action(
            &format!("Fetching SSL certificate {name} info for ⬢ {app}"),
            api.get(&path),
        )
        .await?;
    ctx.done()?;
    if a.json {
        return ctx.print_json(&value);
    }
    let c: SniEndpoint = decode(value, "an SNI endpoint")?;
    write!(ctx.out, "{}", header(&c.name))?;
    print_details(ctx, &c)
}

/// `certs:update CRT KEY [--name NAME]`.
pub async fn update(ctx: &mut Ctx<'_>, a: CertFiles) -> Result<()> {
    ctx.labels_to_err = a.json;
    let app = ctx.app(&a.app)?;
    let body = read_files(&a)?;
    let api = ctx.api()?;
    let name = pick(&api, &app, a.name.as_deref()).await?;
    let path = format!("/apps/{}/sni-endpoints/{}", seg(&app), seg(&name));
    let value = ctx
        .action(
            &format!("Updating SSL certificate {name} for ⬢ {app}"),
            api.call(Method::PATCH, &path, Some(&body)),
        )
        .await?;
    ctx.done()?;
    if a.json {
        return ctx.print_json(&value);
    }
    let c: SniEndpoint = decode(value, "an SNI endpoint")?;
    print_details(ctx, &c)
}

/// `certs:remove [--name NAME] --confirm APP`.
pub async fn remove(ctx: &mut Ctx<'_>, a: CertRemove) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let name = pick(&api, &app, a.name.as_deref()).await?;
    match a.confirm.as_deref() {
        None => bail!(
            "This removes the SSL certificate {name} from {app}: HTTPS requests to its domains will no longer be served with it. To proceed, run slipway certs:remove --name {name} --confirm {app}"
        ),
        Some(c) if c != app => bail!("Confirmation {c} did not match {app}. Aborted."),
        Some(_) => {}
    }
    let path = format!("/apps/{}/sni-endpoints/{}", seg(&app), seg(&name));
    ctx.action(
        &format!("Removing SSL certificate {name} from ⬢ {app}"),
        api.call(Method::DELETE, &path, None),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}
