//! The Redis provider: one `redis-server` per add-on, with a password, the plan's `maxmemory`,
//! `maxclients` and eviction policy, append-only persistence, and a memory cap outside Redis
//! (its cgroup), since Lua scripts can take it past `maxmemory`.
//!
//! Apps connect as Redis's `default` user with the add-on's password (`redis://:<pw>@host:port`,
//! Heroku's form); that user cannot run `CONFIG`, `SHUTDOWN`, `DEBUG`, `MODULE`, `ACL` or
//! replication commands. Slipway itself connects as the `slipway` user.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::AddonError;

/// Redis's eviction policies.
pub const POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// Commands the app's user may not run.
const DENIED: &[&str] = &[
    "config",
    "shutdown",
    "debug",
    "module",
    "acl",
    "save",
    "bgsave",
    "bgrewriteaof",
    "replicaof",
    "slaveof",
    "failover",
    "sync",
    "psync",
    "monitor",
    "cluster",
    "migrate",
    "restore",
];

/// What goes into `redis.conf`.
pub struct Conf<'a> {
    pub listen: &'a [std::net::Ipv4Addr],
    pub port: u16,
    pub dir: &'a std::path::Path,
    pub maxmemory: u64,
    pub maxclients: u32,
    pub policy: &'a str,
    pub tenant_password: &'a str,
    pub admin_password: &'a str,
}

fn sha(pw: &str) -> String {
    hex::encode(Sha256::digest(pw.as_bytes()))
}

impl Conf<'_> {
    pub fn render(&self) -> String {
        let bind: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        let denied: Vec<String> = DENIED.iter().map(|c| format!("-{c}")).collect();
        let dir = self.dir.display();
        format!(
            "# Written by Slipway; changes are overwritten.\n\
             bind {bind}\n\
             port {port}\n\
             protected-mode yes\n\
             daemonize no\n\
             supervised no\n\
             pidfile {dir}/redis.pid\n\
             logfile {dir}/redis.log\n\
             dir {dir}/data\n\
             appendonly yes\n\
             appendfsync everysec\n\
             save \"\"\n\
             maxmemory {maxmemory}\n\
             maxmemory-policy {policy}\n\
             maxclients {maxclients}\n\
             timeout 300\n\
             user default on #{tenant} ~* &* +@all {denied}\n\
             user slipway on #{admin} ~* &* +@all\n",
            bind = bind.join(" "),
            port = self.port,
            maxmemory = self.maxmemory,
            policy = self.policy,
            maxclients = self.maxclients,
            tenant = sha(self.tenant_password),
            admin = sha(self.admin_password),
            denied = denied.join(" "),
        )
    }
}

/// A reply from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) => String::new(),
            Reply::Array(a) => a.iter().map(Reply::text).collect::<Vec<_>>().join(" "),
        }
    }
}

/// A connection to a Redis server as Slipway's admin user (RESP2).
pub struct Admin {
    io: BufReader<TcpStream>,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

impl Admin {
    pub async fn connect(port: u16, password: &str) -> Result<Admin, AddonError> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| AddonError::Unavailable("Redis did not accept a connection".into()))?
            .map_err(|e| AddonError::Unavailable(format!("cannot reach Redis: {e}")))?;
        let mut admin = Admin {
            io: BufReader::new(stream),
        };
        match admin.call(&["AUTH", "slipway", password]).await? {
            Reply::Status(_) => Ok(admin),
            other => Err(AddonError::Unavailable(format!(
                "Redis refused Slipway's login: {}",
                other.text()
            ))),
        }
    }

    pub async fn call(&mut self, args: &[&str]) -> Result<Reply, AddonError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let io = async {
            self.io.get_mut().write_all(&out).await?;
            read_reply(&mut self.io).await
        };
        tokio::time::timeout(IO_TIMEOUT, io)
            .await
            .map_err(|_| AddonError::Unavailable("Redis did not answer".into()))?
            .map_err(|e| AddonError::Unavailable(format!("talking to Redis: {e}")))
    }

    /// `INFO <section>` as key/value pairs.
    pub async fn info(&mut self, section: &str) -> Result<BTreeMap<String, String>, AddonError> {
        let text = self.call(&["INFO", section]).await?.text();
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }

    /// `CONFIG GET` of one setting; empty if Redis has none.
    pub async fn config_get(&mut self, key: &str) -> String {
        match self.call(&["CONFIG", "GET", key]).await {
            Ok(Reply::Array(a)) if a.len() == 2 => a[1].text(),
            _ => String::new(),
        }
    }

    /// `CONFIG SET`, failing on Redis's error.
    pub async fn config_set(&mut self, key: &str, value: &str) -> Result<(), AddonError> {
        match self.call(&["CONFIG", "SET", key, value]).await? {
            Reply::Error(e) => Err(AddonError::Refused(format!(
                "Redis refused {key} {value}: {e}"
            ))),
            _ => Ok(()),
        }
    }
}

fn read_reply<'a>(
    io: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + 'a>> {
    Box::pin(async move {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "+" => Ok(Reply::Status(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => rest
                .parse()
                .map(Reply::Int)
                .map_err(|_| bad("a bad integer")),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad("a bad length"))?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut buf = vec![0u8; n as usize + 2];
                tokio::io::AsyncReadExt::read_exact(io, &mut buf).await?;
                buf.truncate(n as usize);
                Ok(Reply::Bulk(Some(buf)))
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad("a bad length"))?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read_reply(io).await?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(bad("an unknown reply")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_locks_the_app_user_out_of_admin_commands() {
        let conf = Conf {
            listen: &["127.0.0.1".parse().unwrap(), "10.213.0.1".parse().unwrap()],
            port: 15400,
            dir: std::path::Path::new("/srv/a"),
            maxmemory: 25 * 1024 * 1024,
            maxclients: 20,
            policy: "noeviction",
            tenant_password: "t",
            admin_password: "a",
        }
        .render();
        assert!(conf.contains("bind 127.0.0.1 10.213.0.1\n"));
        assert!(conf.contains("maxmemory 26214400\n"));
        assert!(conf.contains("dir /srv/a/data\n"));
        let default = conf
            .lines()
            .find(|l| l.starts_with("user default"))
            .unwrap();
        assert!(default.contains(&format!("#{}", sha("t"))));
        for c in ["-config", "-shutdown", "-debug", "-module", "-acl"] {
            assert!(default.split(' ').any(|w| w == c), "{c} in {default}");
        }
        // Passwords appear only hashed.
        assert!(!conf.contains(" >t") && !conf.contains(" >a"));
    }
}
