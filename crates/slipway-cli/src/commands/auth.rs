//! `login`, `logout`, `auth:token`, `auth:whoami`.

use std::io::{BufRead, IsTerminal};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use slipway_types::Account;

use super::Ctx;
use crate::api::{decode, Api};
use crate::args::Login;
use crate::env::{machine_name, Input};
use crate::netrc::Netrc;

/// Reads one line of input: from a terminal with a prompt and echo off, else as piped.
fn read_key(ctx: &mut Ctx<'_>) -> Result<String> {
    let text = match &ctx.env.input {
        Input::Text(text) => text.lines().next().unwrap_or("").to_owned(),
        Input::Inherit => {
            let stdin = std::io::stdin();
            let mut line = String::new();
            if stdin.is_terminal() {
                write!(ctx.err, "Enter your Slipway API key: ")?;
                ctx.err.flush()?;
                let stty = |arg: &str| {
                    Command::new("stty")
                        .arg(arg)
                        .stdin(Stdio::inherit())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                };
                let hidden = stty("-echo");
                let read = stdin.lock().read_line(&mut line);
                if hidden {
                    stty("echo");
                    writeln!(ctx.err)?;
                }
                read.context("Cannot read the API key")?;
            } else {
                stdin
                    .lock()
                    .read_line(&mut line)
                    .context("Cannot read the API key from standard input")?;
            }
            line
        }
    };
    Ok(text.trim().to_owned())
}

/// `login [--api-key KEY]`: checks the key with `GET /account`, then saves it in `~/.netrc` under
/// the API's `host:port`.
pub async fn login(ctx: &mut Ctx<'_>, a: Login) -> Result<()> {
    let key = match a.api_key {
        Some(key) => key.trim().to_owned(),
        None => read_key(ctx)?,
    };
    if key.is_empty() {
        bail!("No API key given. Pass --api-key KEY or type the key when asked.");
    }
    let api = Api::new(&ctx.api_url, Some(&key))?;
    let account: Account = decode(api.get("/account").await?, "an account")?;
    let machine = machine_name(&ctx.api_url)
        .ok_or_else(|| anyhow!("Cannot tell the host of the API URL {}.", ctx.api_url))?;
    let path = ctx
        .env
        .netrc_path()
        .ok_or_else(|| anyhow!("HOME is not set, so there is no ~/.netrc to save the key in."))?;
    let mut netrc = Netrc::load(&path)?.unwrap_or_default();
    netrc.set(&machine, &account.email, &key);
    netrc.save(&path)?;
    writeln!(ctx.out, "Logged in as {}", account.email)?;
    if ctx.env.api_key.is_some() {
        ctx.warn("SLIPWAY_API_KEY is set and takes precedence over the saved key.")?;
    }
    Ok(())
}

/// `logout`: removes the `~/.netrc` entry for the API's `host:port`.
pub fn logout(ctx: &mut Ctx<'_>) -> Result<()> {
    write!(ctx.out, "Logging out... ")?;
    if let (Some(path), Some(machine)) = (ctx.env.netrc_path(), machine_name(&ctx.api_url)) {
        if let Some(mut netrc) = Netrc::load(&path)? {
            if netrc.remove(&machine) {
                netrc.save(&path)?;
            }
        }
    }
    writeln!(ctx.out, "done")?;
    if ctx.env.api_key.is_some() {
        ctx.warn("SLIPWAY_API_KEY is still set, so commands keep using it.")?;
    }
    Ok(())
}

/// `auth:token`: the key the CLI would use.
pub fn token(ctx: &mut Ctx<'_>) -> Result<()> {
    let key = ctx.key()?;
    writeln!(ctx.out, "{key}")?;
    Ok(())
}

/// `auth:whoami`.
pub async fn whoami(ctx: &mut Ctx<'_>) -> Result<()> {
    let api = ctx.api()?;
    let account: Account = decode(api.get("/account").await?, "an account")?;
    writeln!(ctx.out, "{}", account.email)?;
    Ok(())
}
