//! `domains`, `domains:add`, `domains:info`, `domains:remove`.

use anyhow::Result;
use reqwest::Method;
use serde_json::{json, Value};
use slipway_types::Domain;

use super::Ctx;
use crate::api::{decode, decode_all, seg};
use crate::args::{AppJson, DomainAdd, DomainArgs};
use crate::format::{header, key_values, time_ago, titled_table};

/// An apex domain (`example.com`, exactly two labels) cannot be a CNAME at most DNS providers.
pub fn is_apex(hostname: &str) -> bool {
    hostname.trim_end_matches('.').split('.').count() == 2
}

/// The DNS record to make for a host name.
fn record_type(hostname: &str) -> &'static str {
    if is_apex(hostname) {
        "ALIAS or ANAME"
    } else {
        "CNAME"
    }
}

fn endpoint_name(d: &Domain) -> String {
    d.sni_endpoint
        .as_ref()
        .map_or_else(|| "none".to_string(), |e| e.name.clone())
}

/// `domains`: the app's own host name, then a table of custom domains and their DNS targets.
pub async fn list(ctx: &mut Ctx<'_>, a: AppJson) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let items = api
        .list(
            &format!("/apps/{}/domains", seg(&app)),
            Some("id ..; max=1000;"),
            true,
        )
        .await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let domains: Vec<Domain> = decode_all(items, "a domain")?;
    let (heroku, custom): (Vec<&Domain>, Vec<&Domain>) =
        domains.iter().partition(|d| d.kind == "heroku");
    let mut out = header(&format!("{app} Heroku Domain"));
    for d in &heroku {
        out.push_str(&format!("{}\n", d.hostname));
    }
    if !custom.is_empty() {
        out.push('\n');
        out.push_str(&header(&format!("{app} Custom Domains")));
        let rows: Vec<Vec<String>> = custom
            .iter()
            .map(|d| {
                vec![
                    d.hostname.clone(),
                    record_type(&d.hostname).to_string(),
                    d.cname.clone().unwrap_or_default(),
                    endpoint_name(d),
                ]
            })
            .collect();
        out.push_str(&titled_table(
            &[
                "Domain Name",
                "DNS Record Type",
                "DNS Target",
                "SNI Endpoint",
            ],
            &rows,
        ));
    }
    write!(ctx.out, "{out}")?;
    Ok(())
}

/// `domains:add HOSTNAME`: adds it and says which DNS record to make.
pub async fn add(ctx: &mut Ctx<'_>, a: DomainAdd) -> Result<()> {
    ctx.labels_to_err = a.json;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let hostname = a.hostname.trim().to_ascii_lowercase();
    let body = json!({ "hostname": hostname, "sni_endpoint": a.cert });
    let value = ctx
        .action(
            &format!("Adding {hostname} to ⬢ {app}"),
            api.call(
                Method::POST,
                &format!("/apps/{}/domains", seg(&app)),
                Some(&body),
            ),
        )
        .await?;
    ctx.done()?;
    if a.json {
        return ctx.print_json(&value);
    }
    let d: Domain = decode(value, "a domain")?;
    let target = d.cname.clone().unwrap_or_default();
    writeln!(
        ctx.out,
        " ▸    Configure your app's DNS provider to point to the DNS Target {target}."
    )?;
    if is_apex(&d.hostname) {
        writeln!(
            ctx.out,
            " ▸    {} is an apex domain: most DNS providers cannot make it a CNAME. Make an ALIAS or ANAME record pointing to {target}, or A records to the address of this Slipway server's router.",
            d.hostname
        )?;
    }
    Ok(())
}

/// `domains:info HOSTNAME`.
pub async fn info(ctx: &mut Ctx<'_>, a: DomainArgs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let value = api
        .get(&format!("/apps/{}/domains/{}", seg(&app), seg(&a.hostname)))
        .await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let d: Domain = decode(value, "a domain")?;
    let mut rows = vec![
        ("App".to_string(), d.app.name.clone()),
        ("Created At".to_string(), time_ago(d.created_at, ctx.now)),
        ("Domain Name".to_string(), d.hostname.clone()),
        ("Kind".to_string(), d.kind.clone()),
    ];
    if let Some(target) = &d.cname {
        rows.push((
            "DNS Record Type".to_string(),
            record_type(&d.hostname).into(),
        ));
        rows.push(("DNS Target".to_string(), target.clone()));
        rows.push(("SNI Endpoint".to_string(), endpoint_name(&d)));
    }
    rows.push(("Status".to_string(), d.status.clone()));
    rows.push(("Updated At".to_string(), time_ago(d.updated_at, ctx.now)));
    write!(ctx.out, "{}{}", header(&d.hostname), key_values(&rows))?;
    Ok(())
}

/// `domains:remove HOSTNAME`.
pub async fn remove(ctx: &mut Ctx<'_>, a: DomainArgs) -> Result<()> {
    ctx.labels_to_err = a.json;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let path = format!("/apps/{}/domains/{}", seg(&app), seg(&a.hostname));
    let value = ctx
        .action(
            &format!("Removing {} from ⬢ {app}", a.hostname),
            api.call(Method::DELETE, &path, None),
        )
        .await?;
    ctx.done()?;
    if a.json {
        return ctx.print_json(&value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apex_domains_have_two_labels() {
        assert!(is_apex("example.com"));
        assert!(is_apex("example.com."));
        assert!(!is_apex("www.example.com"));
        assert!(!is_apex("*.example.com"));
        assert_eq!(record_type("example.com"), "ALIAS or ANAME");
        assert_eq!(record_type("www.example.com"), "CNAME");
    }
}
