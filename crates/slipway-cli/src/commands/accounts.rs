//! `accounts`, `accounts:add`: the server's own accounts, which only the admin (the first
//! account, the owner) may list and add. A new account's API key is in the answer to
//! `POST /accounts` only, so it is printed then and never again.

use anyhow::Result;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Ctx;
use crate::api::{decode, decode_all};
use crate::args::{AccountsAdd, JsonOnly};
use crate::format::{time_ago, titled_table};

/// An account as `/accounts` returns it.
#[derive(Debug, Deserialize)]
struct AccountEntry {
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    /// Only in the answer to `POST /accounts`.
    #[serde(default)]
    api_key: Option<String>,
}

/// `accounts`.
pub async fn list(ctx: &mut Ctx<'_>, a: JsonOnly) -> Result<()> {
    let api = ctx.api()?;
    let items = api.list("/accounts", None, true).await?;
    if a.json {
        return ctx.print_json(&Value::Array(items));
    }
    let mut accounts: Vec<AccountEntry> = decode_all(items, "an account")?;
    if accounts.is_empty() {
        writeln!(ctx.out, "This server has no accounts.")?;
        return Ok(());
    }
    accounts.sort_by(|x, y| (!x.admin, &x.email).cmp(&(!y.admin, &y.email)));
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|x| {
            vec![
                x.email.clone(),
                x.name.clone().unwrap_or_default(),
                if x.admin { "yes" } else { "no" }.to_owned(),
                x.created_at
                    .map(|t| time_ago(t, ctx.now))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        ctx.out,
        "{}",
        titled_table(&["Email", "Name", "Admin", "Created"], &rows)
    )?;
    Ok(())
}

/// `accounts:add EMAIL [--name NAME]`: prints the new account's API key, shown only once.
pub async fn add(ctx: &mut Ctx<'_>, a: AccountsAdd) -> Result<()> {
    let api = ctx.api()?;
    let mut body = json!({ "email": a.email });
    if let Some(name) = &a.name {
        body["name"] = json!(name);
    }
    if a.json {
        let value = api.call(Method::POST, "/accounts", Some(&body)).await?;
        return ctx.print_json(&value);
    }
    let label = format!("Creating account {}", a.email);
    let value = ctx
        .action(&label, api.call(Method::POST, "/accounts", Some(&body)))
        .await?;
    writeln!(ctx.out, "done")?;
    let account: AccountEntry = decode(value, "an account")?;
    match account.api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => {
            writeln!(ctx.out, "API key: {key}")?;
            writeln!(
                ctx.out,
                "This key is shown only once. Give it to {}, who logs in with slipway login.",
                account.email
            )?;
        }
        None => ctx.warn("Slipway sent no API key for the new account.")?,
    }
    Ok(())
}
