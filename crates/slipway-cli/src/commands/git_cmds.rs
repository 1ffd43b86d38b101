//! `git:remote` and the `git:credentials` helper that answers `git push` with the API key.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{bail, Context, Result};
use slipway_types::App;

use super::Ctx;
use crate::api::{decode, seg};
use crate::args::{AppArgs, GitCredentials, GitRemote};
use crate::env::Input;

/// `git:remote [-a APP] [-r NAME]`: points the remote at the app and installs the credential helper.
pub async fn remote(ctx: &mut Ctx<'_>, a: GitRemote) -> Result<()> {
    let git = ctx.git();
    if !git.in_work_tree() {
        bail!("Not a git repository. Run this command inside your app's folder.");
    }
    let name = match a.app {
        Some(app) => app,
        None => {
            let remote = git.remote_url(&a.remote).map(|_| a.remote.clone());
            ctx.app(&AppArgs { app: None, remote })?
        }
    };
    let api = ctx.api()?;
    let app: App = decode(api.get(&format!("/apps/{}", seg(&name))).await?, "an app")?;
    git.set_remote(&a.remote, &app.git_url)?;
    git.configure_credentials(&app.git_url, &ctx.env.exe)?;
    writeln!(ctx.out, "set git remote {} to {}", a.remote, app.git_url)?;
    Ok(())
}

/// Reads git's `key=value` request lines up to the blank line that ends them.
fn read_request(ctx: &Ctx<'_>) -> Result<BTreeMap<String, String>> {
    let mut lines: Vec<String> = Vec::new();
    match &ctx.env.input {
        Input::Text(text) => lines.extend(text.lines().map(str::to_owned)),
        Input::Inherit => {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let line = line.context("Cannot read the credential request")?;
                if line.trim().is_empty() {
                    break;
                }
                lines.push(line);
            }
        }
    }
    Ok(lines
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// `git:credentials get|store|erase`: answers `get` with `username=slipway` and the API key
/// (preferring a `~/.netrc` entry for the host git asks about); ignores `store` and `erase`.
pub fn credentials(ctx: &mut Ctx<'_>, a: GitCredentials) -> Result<()> {
    let request = read_request(ctx)?;
    match a.operation.as_str() {
        "get" => {}
        "store" | "erase" => return Ok(()),
        other => bail!("Unknown git credential operation {other:?}; expected get, store or erase."),
    }
    let for_host = match (request.get("protocol"), request.get("host")) {
        (Some(proto), Some(host)) if ctx.env.api_key.is_none() => {
            ctx.env.netrc_key(&format!("{proto}://{host}"))?
        }
        _ => None,
    };
    let key = match for_host {
        Some(key) => key,
        None => ctx.key()?,
    };
    writeln!(ctx.out, "username=slipway")?;
    writeln!(ctx.out, "password={key}")?;
    Ok(())
}
