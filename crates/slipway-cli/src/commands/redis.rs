//! `redis:info`, `redis:maxmemory`, `redis:cli`: a Redis add-on found by its attachment name
//! (`REDIS` by default) through `POST /actions/addon-attachments/resolve`.

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::addons::Attachment;
use super::{run_local, Ctx};
use crate::api::{decode, decode_all, seg, Api};
use crate::args::{RedisCli, RedisInfo, RedisMaxmemory};
use crate::format::{header, human_size, key_values};

/// The service whose add-ons these commands act on.
const SERVICE: &str = "heroku-redis";

/// The attachment name used when none is given.
const DEFAULT_ATTACHMENT: &str = "REDIS";

/// Redis's eviction policies, the values `maxmemory-policy` accepts.
pub const POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// What `GET /addons/{id}/redis` answers.
#[derive(Debug, Default, Deserialize)]
struct RedisStatus {
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    maxmemory_policy: Option<String>,
    #[serde(default)]
    used_memory: Option<u64>,
    #[serde(default)]
    maxmemory: Option<u64>,
    #[serde(default)]
    memory_cap: Option<u64>,
    #[serde(default)]
    clients: Option<u64>,
    #[serde(default)]
    maxclients: Option<u64>,
    #[serde(default)]
    persistence: Option<String>,
    #[serde(default)]
    config_vars: Vec<String>,
}

/// The app's Redis attachment named `database` (an attachment or add-on name).
async fn resolve(api: &Api, app: &str, database: Option<&str>) -> Result<Attachment> {
    let wanted = database.unwrap_or(DEFAULT_ATTACHMENT);
    let body = json!({ "addon_attachment": wanted, "app": app, "addon_service": SERVICE });
    let value = api
        .call(
            Method::POST,
            "/actions/addon-attachments/resolve",
            Some(&body),
        )
        .await?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut found: Vec<Attachment> = decode_all(items, "an add-on attachment")?;
    match found.len() {
        0 => bail!("Couldn't find a Redis add-on {wanted} on {app}."),
        1 => Ok(found.remove(0)),
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|t| format!("{}::{}", t.app.name, t.name))
                .collect();
            bail!(
                "{wanted} matches more than one Redis add-on ({}). Name one of them.",
                names.join(", ")
            )
        }
    }
}

/// `Mini`, `Premium 0` from `mini`, `premium-0` (or `heroku-redis:premium-0`).
fn plan_title(plan: &str) -> String {
    let plan = plan.split_once(':').map_or(plan, |(_, p)| p);
    plan.split('-')
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(c) => c.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

fn vars_of(config_vars: &[String], attachment: &Attachment) -> String {
    if config_vars.is_empty() {
        format!("{}_URL", attachment.name)
    } else {
        config_vars.join(", ")
    }
}

/// `redis:info [DATABASE]`.
pub async fn info(ctx: &mut Ctx<'_>, a: RedisInfo) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let value = api
        .get(&format!("/addons/{}/redis", seg(&attachment.addon.id)))
        .await?;
    if a.json {
        return ctx.print_json(&value);
    }
    let r: RedisStatus = decode(value, "Redis details")?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            rows.push((k.to_owned(), v));
        }
    };
    add("Plan", r.plan.as_deref().map(plan_title));
    add("Status", r.status.clone());
    add(
        "Created",
        r.created_at
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
    );
    add("Version", r.version.clone());
    add("Timeout", r.timeout.map(|t| t.to_string()));
    add("Maxmemory", r.maxmemory_policy.clone());
    let memory = r.used_memory.map(|used| {
        let mut text = human_size(used);
        if let Some(max) = r.maxmemory.filter(|m| *m > 0) {
            text.push_str(&format!(" / {}", human_size(max)));
        }
        if let Some(cap) = r.memory_cap {
            text.push_str(&format!(" (cap {} outside Redis)", human_size(cap)));
        }
        text
    });
    add("Memory", memory);
    let clients = r.clients.map(|c| match r.maxclients {
        Some(max) => format!("{c}/{max}"),
        None => c.to_string(),
    });
    add("Clients", clients);
    add("Persistence", r.persistence.clone());
    add("Requires TLS", Some("No".to_owned()));
    let title = format!(
        "{} ({})",
        attachment.addon.name,
        vars_of(&r.config_vars, &attachment)
    );
    write!(ctx.out, "{}{}", header(&title), key_values(&rows))?;
    Ok(())
}

/// Checks a `maxmemory-policy` value before anything is sent.
pub fn check_policy(policy: &str) -> Result<()> {
    if POLICIES.contains(&policy) {
        return Ok(());
    }
    bail!(
        "Invalid maxmemory policy {policy}. Use one of: {}.",
        POLICIES.join(", ")
    )
}

/// `redis:maxmemory [DATABASE] --policy P`.
pub async fn maxmemory(ctx: &mut Ctx<'_>, a: RedisMaxmemory) -> Result<()> {
    check_policy(&a.policy)?;
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let value = api
        .call(
            Method::PATCH,
            &format!("/addons/{}/redis", seg(&attachment.addon.id)),
            Some(&json!({ "maxmemory_policy": a.policy })),
        )
        .await?;
    let r: RedisStatus = serde_json::from_value(value).unwrap_or_default();
    writeln!(
        ctx.out,
        "Maxmemory policy for {} ({}) set to {}.",
        attachment.addon.name,
        vars_of(&r.config_vars, &attachment),
        a.policy
    )?;
    Ok(())
}

/// The parts of a `redis://[user]:password@host:port[/db]` URL that `redis-cli` takes.
#[derive(Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub db: Option<u32>,
}

/// Decodes `%XX` escapes (URL userinfo).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a Redis URL as add-ons set it (`redis://:pw@10.0.0.1:6380`).
pub fn parse_redis_url(url: &str) -> Result<RedisUrl> {
    let bad = || {
        anyhow!(
            "The Redis URL is not one redis-cli can use (expected redis://:PASSWORD@HOST:PORT)."
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        _ => return Err(bad()),
    };
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
        None => 6379,
    };
    let db = path.split(['?', '#']).next().unwrap_or("");
    let db = if db.is_empty() {
        None
    } else {
        Some(db.parse().map_err(|_| bad())?)
    };
    Ok(RedisUrl {
        tls,
        user: Some(percent_decode(user)).filter(|u| !u.is_empty()),
        password: password.map(percent_decode).filter(|p| !p.is_empty()),
        host: host.to_owned(),
        port,
        db,
    })
}

/// `redis-cli`'s arguments for a URL; the password goes in `REDISCLI_AUTH`, never here, so other
/// users cannot read it from the process list.
pub fn redis_cli_args(url: &RedisUrl) -> Vec<String> {
    let mut args = vec![
        "-h".to_owned(),
        url.host.clone(),
        "-p".to_owned(),
        url.port.to_string(),
    ];
    if let Some(user) = &url.user {
        args.extend(["--user".to_owned(), user.clone()]);
    }
    if let Some(db) = url.db {
        args.extend(["-n".to_owned(), db.to_string()]);
    }
    if url.tls {
        args.push("--tls".to_owned());
    }
    args
}

/// `redis:cli [DATABASE]`: runs the local `redis-cli` on the add-on with the app's credentials.
/// From a terminal the CLI becomes `redis-cli` (exec); with fixed input (tests, `Input::Text`) it
/// runs it as a child with that input and relays its output.
pub async fn cli(ctx: &mut Ctx<'_>, a: RedisCli) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let var = format!("{}_URL", attachment.name);
    let vars = api.get(&format!("/apps/{}/config-vars", seg(&app))).await?;
    let url = vars
        .get(&var)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{var} is not set on {app}."))?;
    let url = parse_redis_url(url)?;
    let program = ctx.env.find_program("redis-cli").ok_or_else(|| {
        anyhow!(
            "The local redis-cli command could not be located. Install it with apt-get install -y redis-tools."
        )
    })?;
    let mut cmd = std::process::Command::new(&program);
    cmd.args(redis_cli_args(&url));
    match &url.password {
        Some(pw) => cmd.env("REDISCLI_AUTH", pw),
        None => cmd.env_remove("REDISCLI_AUTH"),
    };
    writeln!(ctx.out, "Connecting to {} ({var}):", attachment.addon.name)?;
    ctx.out.flush()?;
    run_local(ctx, cmd, &program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(check_policy("allkeys-lru").is_ok());
        assert!(check_policy("volatile-ttl").is_ok());
        let err = check_policy("lru").unwrap_err().to_string();
        assert_eq!(
            err,
            "Invalid maxmemory policy lru. Use one of: noeviction, allkeys-lru, allkeys-lfu, \
             allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl."
        );
    }

    #[test]
    fn plan_titles() {
        assert_eq!(plan_title("mini"), "Mini");
        assert_eq!(plan_title("heroku-redis:premium-0"), "Premium 0");
    }

    #[test]
    fn redis_urls() {
        let u = parse_redis_url("redis://:s%40cret@10.0.0.1:6380").unwrap();
        assert_eq!(
            u,
            RedisUrl {
                tls: false,
                user: None,
                password: Some("s@cret".into()),
                host: "10.0.0.1".into(),
                port: 6380,
                db: None,
            }
        );
        assert_eq!(redis_cli_args(&u), ["-h", "10.0.0.1", "-p", "6380"]);
        let u = parse_redis_url("rediss://bob:pw@[::1]/2").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_deref(), u.db, u.tls),
            ("::1", 6379, Some("bob"), Some(2), true)
        );
        assert_eq!(
            redis_cli_args(&u),
            ["-h", "::1", "-p", "6379", "--user", "bob", "-n", "2", "--tls"]
        );
        assert!(parse_redis_url("http://x:1").is_err());
        assert!(parse_redis_url("redis://:pw@host:notaport").is_err());
        assert!(parse_redis_url("redis://:pw@:6379").is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41b"), "Ab");
    }
}
