//! `pg:info`, `pg:psql`, `pg:credentials`, `pg:credentials:url`, `pg:credentials:rotate`,
//! `pg:ps`, `pg:kill`, `pg:killall`, `pg:locks`, `pg:outliers` (the diagnostics commands are in
//! `pg_diagnose`): a Postgres add-on found by its attachment name (`DATABASE` by default,
//! `DATABASE_URL` works too) through `POST /actions/addon-attachments/resolve`, then the server's
//! `/addons/{id}/postgres` endpoints. Query results come back as `{"columns":[…],"rows":[[…]]}`
//! and are printed as `psql` does.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::addons::{Addon, Attachment};
use super::{run_local, Ctx, ExitStatus};
use crate::api::{decode, decode_all, is_status, seg, Api};
use crate::args::{
    PgCredentialsRotate, PgCredentialsUrl, PgDatabase, PgInfo, PgKill, PgLocks, PgOutliers, PgPs,
    PgPsql, PgUnfollow,
};
use crate::env::Env;
use crate::format::{
    header, human_size, key_values, limit_size, psql_table, titled_table, truncate_query,
};

/// The service whose add-ons these commands act on.
const SERVICE: &str = "heroku-postgresql";

/// The attachment name used when none is given.
pub(super) const DEFAULT_ATTACHMENT: &str = "DATABASE";

/// What `GET /addons/{id}/postgres` answers.
#[derive(Debug, Default, Deserialize)]
struct PgStatus {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    connections: Option<u64>,
    #[serde(default)]
    connection_limit: Option<u64>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    data_size: Option<u64>,
    #[serde(default)]
    storage_limit: Option<u64>,
    #[serde(default)]
    tables: Option<u64>,
    #[serde(default)]
    rows: Option<u64>,
    #[serde(default)]
    row_limit: Option<u64>,
    #[serde(default)]
    row_status: Option<String>,
    #[serde(default)]
    following: Option<String>,
    #[serde(default)]
    behind_by_bytes: Option<u64>,
    #[serde(default)]
    followers: Vec<String>,
    #[serde(default)]
    rollback_earliest: Option<DateTime<Utc>>,
    #[serde(default)]
    config_vars: Vec<String>,
}

/// One entry of `GET /addons/{id}/postgres/credentials`.
#[derive(Debug, Deserialize)]
struct Credential {
    name: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    connections: Option<u64>,
}

/// A query result as the server sends it: column names, then rows of text (or `null`).
#[derive(Debug, Deserialize)]
pub(super) struct QueryRows {
    pub(super) columns: Vec<String>,
    #[serde(default)]
    pub(super) rows: Vec<Vec<Value>>,
}

impl QueryRows {
    /// The rows as `psql` prints them; with `truncate`, query columns are cut to 40 characters.
    pub(super) fn render(&self, truncate: bool) -> String {
        let cut: Vec<bool> = self
            .columns
            .iter()
            .map(|c| truncate && (c == "query" || c == "query_snippet"))
            .collect();
        let rows: Vec<Vec<Option<String>>> = self
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let text = cell_text(v)?;
                        Some(if cut.get(i).copied().unwrap_or(false) {
                            truncate_query(&text)
                        } else {
                            text
                        })
                    })
                    .collect()
            })
            .collect();
        psql_table(&self.columns, &rows)
    }
}

/// A cell as `psql` shows it: text as is, booleans as `t`/`f`, `null` as nothing.
pub(super) fn cell_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "t" } else { "f" }.to_owned()),
        other => Some(other.to_string()),
    }
}

/// The app's Postgres attachment named `database` (an attachment name, with or without `_URL`,
/// or an add-on name); the first one when several match.
pub(super) async fn resolve(api: &Api, app: &str, database: Option<&str>) -> Result<Attachment> {
    let wanted = database.unwrap_or(DEFAULT_ATTACHMENT);
    let body = json!({ "addon_attachment": wanted, "app": app, "addon_service": SERVICE });
    let value = match api
        .call(
            Method::POST,
            "/actions/addon-attachments/resolve",
            Some(&body),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if is_status(&e, StatusCode::NOT_FOUND) => {
            return Err(not_found(api, app, wanted).await)
        }
        Err(e) => return Err(e),
    };
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut found: Vec<Attachment> = decode_all(items, "an add-on attachment")?;
    if found.is_empty() {
        return Err(not_found(api, app, wanted).await);
    }
    Ok(found.remove(0))
}

/// The error for a database that did not resolve: the app has no Postgres add-on at all, or
/// not one by that name (then its Postgres add-ons are named). A missing app reports itself.
async fn not_found(api: &Api, app: &str, wanted: &str) -> anyhow::Error {
    let values = match api
        .list(&format!("/apps/{}/addons", seg(app)), None, true)
        .await
    {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut names: Vec<String> = values
        .into_iter()
        .filter_map(|v| decode::<Addon>(v, "an add-on").ok())
        .filter(|a| a.service() == SERVICE)
        .map(|a| a.name)
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        anyhow!(
            "No Heroku Postgres databases on ⬢ {app}. Create one with slipway addons:create heroku-postgresql -a {app}."
        )
    } else {
        anyhow!(
            "Unknown database: {wanted}. Valid options are: {}.",
            names.join(", ")
        )
    }
}

/// `/addons/{id}/postgres{rest}`.
pub(super) fn pg_path(attachment: &Attachment, rest: &str) -> String {
    format!("/addons/{}/postgres{rest}", seg(&attachment.addon.id))
}

/// The attachment's config var (`DATABASE_URL`) and its value on the app.
async fn database_url(api: &Api, app: &str, attachment: &Attachment) -> Result<(String, String)> {
    let var = format!("{}_URL", attachment.name);
    let vars = api.get(&format!("/apps/{}/config-vars", seg(app))).await?;
    let url = vars
        .get(&var)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{var} is not set on {app}."))?;
    Ok((var, url.to_owned()))
}

/// `essential-0` from `heroku-postgresql:essential-0`.
fn short_plan(plan: &str) -> &str {
    plan.split_once(':').map_or(plan, |(_, p)| p)
}

/// `pg:info` lines, in Heroku's order.
fn info_rows(s: &PgStatus, addon: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            rows.push((k.to_owned(), v));
        }
    };
    add("Plan", s.plan.as_deref().map(|p| short_plan(p).to_owned()));
    add("Status", s.status.clone());
    add(
        "Connections",
        s.connections.map(|c| match s.connection_limit {
            Some(max) => format!("{c}/{max}"),
            None => c.to_string(),
        }),
    );
    add("PG Version", s.version.clone());
    add(
        "Created",
        s.created_at
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
    );
    add(
        "Data Size",
        s.data_size
            .map(|size| match s.storage_limit.filter(|l| *l > 0) {
                Some(limit) => format!(
                    "{} / {} ({:.2}%)",
                    human_size(size),
                    limit_size(limit),
                    size as f64 * 100.0 / limit as f64
                ),
                None => human_size(size),
            }),
    );
    add("Tables", s.tables.map(|t| t.to_string()));
    add(
        "Rows",
        s.rows.map(|r| match (s.row_limit, &s.row_status) {
            (Some(limit), Some(status)) => format!("{r}/{limit} ({status})"),
            (Some(limit), None) => format!("{r}/{limit}"),
            (None, _) => r.to_string(),
        }),
    );
    add("Fork/Follow", Some("Available".to_owned()));
    add(
        "Rollback",
        Some(match s.rollback_earliest {
            Some(t) => format!("earliest from {}", t.format("%Y-%m-%d %H:%M UTC")),
            None => "Unsupported".to_owned(),
        }),
    );
    add("Following", s.following.clone());
    add(
        "Behind By",
        s.following.as_ref().map(|_| match s.behind_by_bytes {
            Some(b) => human_size(b),
            None => "unknown (not streaming yet)".to_owned(),
        }),
    );
    if !s.followers.is_empty() {
        add("Followers", Some(s.followers.join(", ")));
    }
    add(
        "Add-on",
        Some(s.name.clone().unwrap_or_else(|| addon.to_owned())),
    );
    rows
}

/// `pg:info [DATABASE]`.
pub async fn info(ctx: &mut Ctx<'_>, a: PgInfo) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let value = api.get(&pg_path(&attachment, "")).await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let s: PgStatus = decode(value, "Postgres details")?;
    let title = if s.config_vars.is_empty() {
        format!("{}_URL", attachment.name)
    } else {
        s.config_vars.join(", ")
    };
    let rows = info_rows(&s, &attachment.addon.name);
    write!(ctx.out, "{}{}", header(&title), key_values(&rows))?;
    Ok(())
}

/// The parts of a `postgres://user:password@host:port/dbname` URL, percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct PgUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
}

/// Parses a database URL as add-ons set it (`postgres://u…:pw@10.0.0.1:15400/d…`).
pub fn parse_pg_url(url: &str) -> Result<PgUrl> {
    use super::redis::percent_decode;
    let bad = || {
        anyhow!(
            "The database URL is not one psql can use (expected postgres://USER:PASSWORD@HOST:PORT/DATABASE)."
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(bad());
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (user, Some(pw)),
            None => (u, None),
        },
        None => ("", None),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 5432,
    };
    let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(PgUrl {
        user: nonempty(percent_decode(user)),
        password: password.map(percent_decode).and_then(nonempty),
        host: percent_decode(host),
        port,
        database: nonempty(percent_decode(path)),
    })
}

/// The newest `<dir>/<version>/bin/psql` (Debian's `/usr/lib/postgresql/15/bin/psql`).
fn newest_psql(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|n| {
            n.split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u64>>>()
        }) else {
            continue;
        };
        let psql = entry.path().join("bin/psql");
        if !is_executable(&psql) {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, psql));
        }
    }
    best.map(|(_, p)| p)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `psql` to run: the newest under PostgreSQL's library directory, else the one on `PATH`.
fn find_psql(env: &Env) -> Option<PathBuf> {
    env.pg_lib_dir
        .as_deref()
        .and_then(newest_psql)
        .or_else(|| env.find_program("psql"))
}

/// `pg:psql [DATABASE] [-c COMMAND] [-f FILE]`: runs the local `psql` on the database with the
/// app's credentials, given in `PG*` variables so the password never appears in the process list.
pub async fn psql(ctx: &mut Ctx<'_>, a: PgPsql) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let (_, url) = database_url(&api, &app, &attachment).await?;
    let url = parse_pg_url(&url)?;
    let program = find_psql(ctx.env).ok_or_else(|| {
        anyhow!(
            "The local psql command could not be located. Install it with apt-get install -y postgresql-client-15."
        )
    })?;
    let mut cmd = std::process::Command::new(&program);
    if let Some(command) = &a.command {
        cmd.arg("-c").arg(command);
    }
    if let Some(file) = &a.file {
        cmd.arg("-f").arg(file);
    }
    cmd.current_dir(&ctx.env.cwd);
    // Variables that would send psql elsewhere than the URL says.
    for var in ["PGHOSTADDR", "PGSERVICE"] {
        cmd.env_remove(var);
    }
    fn set(cmd: &mut std::process::Command, var: &str, value: Option<&str>) {
        match value {
            Some(v) => cmd.env(var, v),
            None => cmd.env_remove(var),
        };
    }
    let port = url.port.to_string();
    set(&mut cmd, "PGHOST", Some(&url.host));
    set(&mut cmd, "PGPORT", Some(&port));
    set(&mut cmd, "PGUSER", url.user.as_deref());
    set(&mut cmd, "PGPASSWORD", url.password.as_deref());
    set(&mut cmd, "PGDATABASE", url.database.as_deref());
    set(&mut cmd, "PGAPPNAME", Some("slipway-psql"));
    writeln!(ctx.err, "--> Connecting to {}", attachment.addon.name)?;
    ctx.err.flush()?;
    run_local(ctx, cmd, &program)
}

/// The credentials of the add-on.
async fn credential_list(api: &Api, attachment: &Attachment) -> Result<Vec<Credential>> {
    let value = api.get(&pg_path(attachment, "/credentials")).await?;
    let items = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    decode_all(items, "a Postgres credential")
}

/// `pg:credentials [DATABASE]`.
pub async fn credentials(ctx: &mut Ctx<'_>, a: PgDatabase) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let creds = credential_list(&api, &attachment).await?;
    if creds.is_empty() {
        writeln!(ctx.out, "{} has no credentials.", attachment.addon.name)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = creds
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.state.clone().unwrap_or_default(),
                c.connections.unwrap_or(0).to_string(),
            ]
        })
        .collect();
    write!(
        ctx.out,
        "{}",
        titled_table(&["Credential", "State", "Connections"], &rows)
    )?;
    Ok(())
}

/// Quotes a libpq connection-string value when it needs it.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\']) {
        return v.to_owned();
    }
    format!("'{}'", v.replace('\\', r"\\").replace('\'', r"\'"))
}

/// `pg:credentials:url [DATABASE] [--name CREDENTIAL]`.
pub async fn credentials_url(ctx: &mut Ctx<'_>, a: PgCredentialsUrl) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let creds = credential_list(&api, &attachment).await?;
    let Some(cred) = creds.iter().find(|c| c.name == a.name) else {
        let names: Vec<&str> = creds.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "Couldn't find the credential {} on {}. Its credentials: {}.",
            a.name,
            attachment.addon.name,
            names.join(", ")
        );
    };
    let (var, url) = database_url(&api, &app, &attachment).await?;
    let parsed = parse_pg_url(&url)?;
    if let Some(user) = cred.username.as_deref().filter(|u| !u.is_empty()) {
        if parsed.user.as_deref() != Some(user) {
            bail!(
                "{var} on {app} holds another credential than {}; only its credential can be shown.",
                a.name
            );
        }
    }
    let mut parts = Vec::new();
    if let Some(db) = &parsed.database {
        parts.push(format!("dbname={}", conninfo_value(db)));
    }
    parts.push(format!("host={}", conninfo_value(&parsed.host)));
    parts.push(format!("port={}", parsed.port));
    if let Some(user) = &parsed.user {
        parts.push(format!("user={}", conninfo_value(user)));
    }
    if let Some(pw) = &parsed.password {
        parts.push(format!("password={}", conninfo_value(pw)));
    }
    parts.push("sslmode=disable".to_owned());
    writeln!(
        ctx.out,
        "Connection information for {} credential.\nConnection info string:\n   \"{}\"\nConnection URL:\n   {url}",
        a.name,
        parts.join(" ")
    )?;
    Ok(())
}

/// `pg:credentials:rotate [DATABASE] --confirm APP`: refuses without the app's name, before any
/// request.
pub async fn credentials_rotate(ctx: &mut Ctx<'_>, a: PgCredentialsRotate) -> Result<()> {
    let app = ctx.app(&a.app)?;
    if a.confirm.as_deref() != Some(app.as_str()) {
        let database = a.database.as_deref().unwrap_or(DEFAULT_ATTACHMENT);
        let mut command = String::from("slipway pg:credentials:rotate");
        if let Some(db) = &a.database {
            command.push_str(&format!(" {db}"));
        }
        if a.name != "default" {
            command.push_str(&format!(" --name {}", a.name));
        }
        writeln!(
            ctx.err,
            " ▸    This will change the password of the {} credential of {database} on {app} and close its connections. To proceed, run: {command} -a {app} --confirm {app}",
            a.name
        )?;
        ctx.err.flush()?;
        return Err(ExitStatus(1).into());
    }
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let path = pg_path(
        &attachment,
        &format!("/credentials/{}/actions/rotate", seg(&a.name)),
    );
    let label = format!("Rotating {} on {}", a.name, attachment.addon.name);
    ctx.action(&label, api.call(Method::POST, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `pg:unfollow DATABASE --confirm APP`: the follower stops following and becomes writable.
pub async fn unfollow(ctx: &mut Ctx<'_>, a: PgUnfollow) -> Result<()> {
    let app = ctx.app(&a.app)?;
    if a.confirm.as_deref() != Some(app.as_str()) {
        writeln!(
            ctx.err,
            " ▸    This will stop {} from following its leader and make it writable. To proceed, run: slipway pg:unfollow {} -a {app} --confirm {app}",
            a.database, a.database
        )?;
        ctx.err.flush()?;
        return Err(ExitStatus(1).into());
    }
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, Some(&a.database)).await?;
    let path = pg_path(&attachment, "/actions/unfollow");
    let label = format!("{} unfollowing", attachment.addon.name);
    ctx.action(&label, api.call(Method::POST, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// Prints a query result the server ran.
pub(super) async fn show_rows(
    ctx: &mut Ctx<'_>,
    api: &Api,
    path: &str,
    truncate: bool,
) -> Result<()> {
    let rows: QueryRows = decode(api.get(path).await?, "query results")?;
    write!(ctx.out, "{}", rows.render(truncate))?;
    Ok(())
}

/// `pg:ps [DATABASE] [--verbose]`.
pub async fn ps(ctx: &mut Ctx<'_>, a: PgPs) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let mut path = pg_path(&attachment, "/activity");
    if a.verbose {
        path.push_str("?verbose=true");
    }
    show_rows(ctx, &api, &path, false).await
}

/// `pg:kill PID [DATABASE] [--force]`: cancels the backend's query, or ends its connection.
pub async fn kill(ctx: &mut Ctx<'_>, a: PgKill) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let (action, function) = if a.force {
        ("terminate", "pg_terminate_backend")
    } else {
        ("cancel", "pg_cancel_backend")
    };
    let path = pg_path(
        &attachment,
        &format!("/activity/{}/actions/{action}", a.pid),
    );
    let value = api.call(Method::POST, &path, None).await?;
    let result = value.get("result").and_then(Value::as_bool).unwrap_or(true);
    let cell = Some(if result { "t" } else { "f" }.to_owned());
    write!(
        ctx.out,
        "{}",
        psql_table(&[function.to_owned()], &[vec![cell]])
    )?;
    Ok(())
}

/// `pg:killall [DATABASE]`: ends every connection of the add-on's credentials.
pub async fn killall(ctx: &mut Ctx<'_>, a: PgDatabase) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let path = pg_path(&attachment, "/actions/terminate-all");
    ctx.action(
        "Terminating connections for all credentials",
        api.call(Method::POST, &path, None),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `pg:locks [DATABASE] [--truncate]`.
pub async fn locks(ctx: &mut Ctx<'_>, a: PgLocks) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    show_rows(ctx, &api, &pg_path(&attachment, "/locks"), a.truncate).await
}

/// `pg:outliers [DATABASE] [--num N] [--truncate] [--reset]`.
pub async fn outliers(ctx: &mut Ctx<'_>, a: PgOutliers) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    if a.reset {
        api.call(Method::DELETE, &pg_path(&attachment, "/outliers"), None)
            .await?;
        writeln!(ctx.out, "pg_stat_statements statistics reset")?;
        return Ok(());
    }
    let path = pg_path(&attachment, &format!("/outliers?limit={}", a.num));
    show_rows(ctx, &api, &path, a.truncate).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_urls() {
        let u = parse_pg_url("postgres://uabc:p%40ss@10.213.0.1:15400/dxyz").unwrap();
        assert_eq!(
            u,
            PgUrl {
                user: Some("uabc".into()),
                password: Some("p@ss".into()),
                host: "10.213.0.1".into(),
                port: 15400,
                database: Some("dxyz".into()),
            }
        );
        let u = parse_pg_url("postgresql://bob@[::1]/db?sslmode=disable").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_deref(),
                u.password,
                u.database.as_deref()
            ),
            ("::1", 5432, Some("bob"), None, Some("db"))
        );
        assert!(parse_pg_url("mysql://u:p@h:1/d").is_err());
        assert!(parse_pg_url("postgres://u:p@h:port/d").is_err());
        assert!(parse_pg_url("postgres://u:p@:5432/d").is_err());
    }

    #[test]
    fn psql_is_found_under_the_newest_version_first() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        let make = |version: &str, exec: bool| {
            let bin = lib.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let psql = bin.join("psql");
            std::fs::write(&psql, "#!/bin/sh\n").unwrap();
            let mode = if exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&psql, std::fs::Permissions::from_mode(mode)).unwrap();
            psql
        };
        make("9.6", true);
        let v15 = make("15", true);
        make("16", false);
        std::fs::create_dir_all(lib.join("common")).unwrap();
        let mut env = Env::bare(dir.path(), dir.path());
        env.pg_lib_dir = Some(lib.clone());
        assert_eq!(find_psql(&env), Some(v15));
        let v17 = make("17", true);
        assert_eq!(find_psql(&env), Some(v17));

        env.pg_lib_dir = Some(dir.path().join("missing"));
        assert_eq!(find_psql(&env), None);
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("psql"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("psql"), std::fs::Permissions::from_mode(0o755)).unwrap();
        env.path = Some(bin.clone().into_os_string());
        assert_eq!(find_psql(&env), Some(bin.join("psql")));
    }

    #[test]
    fn info_without_limits() {
        let s = PgStatus {
            plan: Some("heroku-postgresql:standard-0".into()),
            connections: Some(3),
            data_size: Some(20 * 1024),
            rows: Some(5),
            row_status: Some("In compliance".into()),
            ..PgStatus::default()
        };
        let rows = info_rows(&s, "postgresql-x");
        assert_eq!(
            key_values(&rows),
            "Plan:        standard-0\nConnections: 3\nData Size:   20 KB\nRows:        5\n\
             Fork/Follow: Available\nRollback:    Unsupported\nAdd-on:      postgresql-x\n"
        );
    }

    #[test]
    fn conninfo_quoting() {
        assert_eq!(conninfo_value("abc"), "abc");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\"), r"'it\'s\\'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn query_rows_render_booleans_nulls_and_truncate() {
        let rows: QueryRows = serde_json::from_value(json!({
            "columns": ["pid", "granted", "query_snippet"],
            "rows": [[12, true, "SELECT * FROM very_long_table_name WHERE id = 1"],
                     ["13", null, null]],
        }))
        .unwrap();
        assert_eq!(
            rows.render(true),
            " pid | granted |              query_snippet               \n\
             -----+---------+------------------------------------------\n  \
             12 | t       | SELECT * FROM very_long_table_name WHER…\n  \
             13 |         | \n\
             (2 rows)\n\n"
        );
    }
}
