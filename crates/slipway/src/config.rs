//! The server's settings: one typed struct fed by flags, `SLIPWAY_*` env vars and a TOML file.
//!
//! Precedence: flag, then env var, then file, then the default. A bad value names its key and
//! stops the start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;

/// `slipway server` flags. Each has a `SLIPWAY_*` env var and a TOML key of the same name.
#[derive(Debug, Parser)]
#[command(
    name = "slipway server",
    about = "Run Slipway: API, git, builder, dyno manager, router and logs"
)]
pub struct ServerArgs {
    /// TOML file with settings (keys as the flags, with underscores).
    #[arg(long, env = "SLIPWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where state, repositories, slugs and caches live.
    #[arg(long, env = "SLIPWAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the Platform API and git endpoint.
    #[arg(long, env = "SLIPWAY_API_LISTEN")]
    pub api_listen: Option<String>,
    /// Address of the Platform API and git endpoint over TLS (`git push` over https, remote use).
    #[arg(long, env = "SLIPWAY_API_TLS_LISTEN")]
    pub api_tls_listen: Option<String>,
    /// Address of the HTTP router.
    #[arg(long, env = "SLIPWAY_ROUTER_LISTEN")]
    pub router_listen: Option<String>,
    /// Address of the HTTPS router (certificates by SNI, HTTP/2).
    #[arg(long, env = "SLIPWAY_ROUTER_TLS_LISTEN")]
    pub router_tls_listen: Option<String>,
    /// Threads serving the router (each with its own event loop); default: one per CPU.
    #[arg(long, env = "SLIPWAY_ROUTER_THREADS")]
    pub router_threads: Option<usize>,
    /// Address of the TLS rendezvous endpoint `run` attaches to.
    #[arg(long, env = "SLIPWAY_RENDEZVOUS_LISTEN")]
    pub rendezvous_listen: Option<String>,
    /// Extra names (host names or IPs) for the server's TLS certificate, comma-separated.
    #[arg(long, env = "SLIPWAY_TLS_NAMES")]
    pub tls_names: Option<String>,
    /// Apps are served at <app>.<base-domain>.
    #[arg(long, env = "SLIPWAY_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// Custom domains get DNS targets <name>.<dns-target-domain> [default: the base domain].
    #[arg(long, env = "SLIPWAY_DNS_TARGET_DOMAIN")]
    pub dns_target_domain: Option<String>,
    /// Email of the owner account created on first start.
    #[arg(long, env = "SLIPWAY_OWNER_EMAIL")]
    pub owner_email: Option<String>,
    /// How long a web dyno has to bind $PORT, e.g. 60s.
    #[arg(long, env = "SLIPWAY_BOOT_TIMEOUT")]
    pub boot_timeout: Option<String>,
    /// Grace between SIGTERM and SIGKILL when stopping a dyno, e.g. 30s.
    #[arg(long, env = "SLIPWAY_STOP_TIMEOUT")]
    pub stop_timeout: Option<String>,
    /// How dynos run: container, host (plain processes) or auto (containers when the host allows).
    #[arg(long, env = "SLIPWAY_RUNTIME")]
    pub runtime: Option<String>,
    /// Dyno networking: bridge (a namespace per dyno), host (ports on 127.0.0.1) or auto.
    #[arg(long, env = "SLIPWAY_NETWORK")]
    pub network: Option<String>,
    /// Addresses for dynos on the bridge, e.g. 10.213.0.0/16.
    #[arg(long, env = "SLIPWAY_DYNO_SUBNET")]
    pub dyno_subnet: Option<String>,
    /// Names this server's bridge, nftables table, namespaces and cgroups; unique per host.
    #[arg(long, env = "SLIPWAY_NODE_NAME")]
    pub node_name: Option<String>,
    /// What stopping the server does to dynos: keep (they run on; the next start takes them
    /// over) or stop (SIGTERM, the grace period, SIGKILL).
    #[arg(long, env = "SLIPWAY_ON_EXIT")]
    pub on_exit: Option<String>,
    /// PEM file of CA certificates log drains over TLS trust besides the system's roots.
    #[arg(long, env = "SLIPWAY_DRAIN_CA_FILE")]
    pub drain_ca_file: Option<PathBuf>,
    /// Where add-on servers keep their data; the services' users (redis, postgres) must be able
    /// to traverse its parents [default: <data-dir>-addons].
    #[arg(long, env = "SLIPWAY_ADDONS_DIR")]
    pub addons_dir: Option<PathBuf>,
    /// Directories whose buildpacks apps may name by path (`/dir/bp` or `file:///dir/bp.git`),
    /// comma-separated [default: none; apps use built-in buildpacks and git URLs].
    #[arg(long, env = "SLIPWAY_LOCAL_BUILDPACKS")]
    pub local_buildpacks: Option<String>,
    /// Ports for add-on servers, FIRST-LAST; dynos may reach these on the bridge's gateway
    /// [default: 15400-15999].
    #[arg(long, env = "SLIPWAY_ADDON_PORTS")]
    pub addon_ports: Option<String>,
    /// The redis-server program for Redis add-ons [default: /usr/bin/redis-server].
    #[arg(long, env = "SLIPWAY_REDIS_SERVER")]
    pub redis_server: Option<PathBuf>,
    /// Directory of PostgreSQL's programs for Postgres add-ons [default: the newest
    /// /usr/lib/postgresql/*/bin].
    #[arg(long, env = "SLIPWAY_POSTGRES_BIN")]
    pub postgres_bin: Option<PathBuf>,
    /// How often add-on limits (Postgres row limits) are checked, e.g. 60s.
    #[arg(long, env = "SLIPWAY_ADDON_CHECK_INTERVAL")]
    pub addon_check_interval: Option<String>,
    /// How long a Postgres database may stay over its plan's row limit before INSERT is
    /// revoked, e.g. 7d [default: 7d].
    #[arg(long, env = "SLIPWAY_ROW_LIMIT_GRACE")]
    pub row_limit_grace: Option<String>,
    /// pg:diagnose reports queries running, and transactions idle, longer than this [default: 1m].
    #[arg(long, env = "SLIPWAY_PG_LONG_QUERY")]
    pub pg_long_query: Option<String>,
    /// pg:diagnose reports transactions open longer than this [default: 1h].
    #[arg(long, env = "SLIPWAY_PG_LONG_TRANSACTION")]
    pub pg_long_transaction: Option<String>,
    /// A dataclip's statements are canceled after this long each [default: 30s].
    #[arg(long, env = "SLIPWAY_DATACLIP_STATEMENT_TIMEOUT")]
    pub dataclip_statement_timeout: Option<String>,
    /// A dataclip's whole run is canceled after this long [default: 60s].
    #[arg(long, env = "SLIPWAY_DATACLIP_TIMEOUT")]
    pub dataclip_timeout: Option<String>,
}

/// The same settings as they may appear in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    api_listen: Option<String>,
    api_tls_listen: Option<String>,
    router_listen: Option<String>,
    router_tls_listen: Option<String>,
    router_threads: Option<usize>,
    rendezvous_listen: Option<String>,
    tls_names: Option<String>,
    base_domain: Option<String>,
    dns_target_domain: Option<String>,
    owner_email: Option<String>,
    boot_timeout: Option<String>,
    stop_timeout: Option<String>,
    runtime: Option<String>,
    network: Option<String>,
    dyno_subnet: Option<String>,
    node_name: Option<String>,
    on_exit: Option<String>,
    drain_ca_file: Option<PathBuf>,
    addons_dir: Option<PathBuf>,
    local_buildpacks: Option<String>,
    addon_ports: Option<String>,
    redis_server: Option<PathBuf>,
    postgres_bin: Option<PathBuf>,
    addon_check_interval: Option<String>,
    row_limit_grace: Option<String>,
    pg_long_query: Option<String>,
    pg_long_transaction: Option<String>,
    dataclip_statement_timeout: Option<String>,
    dataclip_timeout: Option<String>,
}

/// The server's resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// State, repos, slugs, caches. Default `/var/lib/slipway` as root, else `~/.local/share/slipway`.
    pub data_dir: PathBuf,
    /// Default `127.0.0.1:5050`.
    pub api_listen: SocketAddr,
    /// Default `127.0.0.1:5443`.
    pub api_tls_listen: SocketAddr,
    /// Default `0.0.0.0:8080`.
    pub router_listen: SocketAddr,
    pub router_tls_listen: SocketAddr,
    pub router_threads: usize,
    /// Default `127.0.0.1:5051`, beside the API.
    pub rendezvous_listen: SocketAddr,
    /// Names the TLS certificate covers besides `localhost`, loopback, the host name and
    /// `<base_domain>`.
    pub tls_names: Vec<String>,
    /// Default `localhost`.
    pub base_domain: String,
    /// Where custom domains' DNS targets live (`<adjective>-<noun>-<6 hex>.<dns_target_domain>`);
    /// the operator points `*.<dns_target_domain>` at the router. Default: `base_domain`.
    pub dns_target_domain: String,
    /// Default `owner@slipway.local`.
    pub owner_email: String,
    /// Default 60 s (Heroku's).
    pub boot_timeout: Duration,
    /// Default 30 s (Heroku's).
    pub stop_timeout: Duration,
    /// Default `auto`.
    pub runtime: Choice,
    /// Default `auto`.
    pub network: Choice,
    /// Default `10.213.0.0/16`.
    pub dyno_subnet: String,
    /// Default `slipway`: bridge `slipway0`, cgroups `slipway`.
    pub node_name: String,
    /// Default `keep`: dynos outlive the server. `stop` stops them when it stops.
    pub keep_dynos_on_exit: bool,
    /// CA certificates `syslog+tls://` and `https://` drains trust besides the system's roots.
    /// Default: none.
    pub drain_ca_file: Option<PathBuf>,
    /// Default `<data_dir>-addons`.
    pub addons_dir: PathBuf,
    /// Directories apps may take buildpacks from by path. Default: none.
    pub local_buildpacks: Vec<PathBuf>,
    /// Default 15400-15999.
    pub addon_ports: (u16, u16),
    /// Default `/usr/bin/redis-server`.
    pub redis_server: PathBuf,
    /// Default: the newest `/usr/lib/postgresql/*/bin`.
    pub postgres_bin: PathBuf,
    /// Default 60 s.
    pub addon_check_interval: Duration,
    /// Default 7 days.
    pub row_limit_grace: Duration,
    /// Default 1 minute.
    pub pg_long_query: Duration,
    /// Default 1 hour.
    pub pg_long_transaction: Duration,
    /// Default 30 s.
    pub dataclip_statement_timeout: Duration,
    /// Default 60 s.
    pub dataclip_timeout: Duration,
}

/// A setting that is forced on, forced off, or decided by the host's self-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// `container` / `bridge`.
    On,
    /// `host`.
    Off,
    Auto,
}

fn choice(key: &str, v: &str, on: &str) -> anyhow::Result<Choice> {
    match v {
        "auto" => Ok(Choice::Auto),
        "host" => Ok(Choice::Off),
        x if x == on => Ok(Choice::On),
        _ => bail!("{key} = {v:?} is not one of auto, {on}, host"),
    }
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/<version>/bin`).
fn newest_postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), |(_, b)| b)
}

/// The default data dir, shared with the CLI's key discovery.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/slipway");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("slipway");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/slipway")
}

fn addr(key: &str, v: &str) -> anyhow::Result<SocketAddr> {
    v.parse()
        .with_context(|| format!("{key} = {v:?} is not an address such as 127.0.0.1:5050"))
}

fn duration(key: &str, v: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(v)
        .with_context(|| format!("{key} = {v:?} is not a duration such as 30s or 2m"))
}

impl Config {
    pub fn resolve(args: ServerArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let api = args
            .api_listen
            .or(file.api_listen)
            .unwrap_or_else(|| "127.0.0.1:5050".into());
        let api_tls = args
            .api_tls_listen
            .or(file.api_tls_listen)
            .unwrap_or_else(|| "127.0.0.1:5443".into());
        let router = args
            .router_listen
            .or(file.router_listen)
            .unwrap_or_else(|| "0.0.0.0:8080".into());
        let router_tls = args
            .router_tls_listen
            .or(file.router_tls_listen)
            .unwrap_or_else(|| "0.0.0.0:8443".into());
        let rendezvous = args
            .rendezvous_listen
            .or(file.rendezvous_listen)
            .unwrap_or_else(|| "127.0.0.1:5051".into());
        let tls_names: Vec<String> = args
            .tls_names
            .or(file.tls_names)
            .unwrap_or_default()
            .split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        if let Some(bad) = tls_names
            .iter()
            .find(|n| n.contains(['/', ':', ' ']) && n.parse::<std::net::IpAddr>().is_err())
        {
            bail!("tls_names: {bad:?} is not a host name or IP address");
        }
        let base_domain = args
            .base_domain
            .or(file.base_domain)
            .unwrap_or_else(|| "localhost".into());
        if base_domain.is_empty()
            || base_domain.starts_with('.')
            || base_domain.contains(['/', ':', ' '])
        {
            bail!("base_domain = {base_domain:?} is not a domain name such as localhost or apps.example.com");
        }
        let dns_target_domain = args
            .dns_target_domain
            .or(file.dns_target_domain)
            .unwrap_or_else(|| base_domain.clone());
        if dns_target_domain.is_empty()
            || dns_target_domain.starts_with('.')
            || dns_target_domain.contains(['/', ':', ' ', '*'])
        {
            bail!("dns_target_domain = {dns_target_domain:?} is not a domain name such as herokudns.example.com");
        }
        let owner_email = args
            .owner_email
            .or(file.owner_email)
            .unwrap_or_else(|| "owner@slipway.local".into());
        if !owner_email.contains('@') {
            bail!("owner_email = {owner_email:?} is not an email address");
        }
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir);
        let addons_dir = args.addons_dir.or(file.addons_dir).unwrap_or_else(|| {
            let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
            name.push("-addons");
            data_dir.with_file_name(name)
        });
        let ports = args
            .addon_ports
            .or(file.addon_ports)
            .unwrap_or_else(|| "15400-15999".into());
        let addon_ports = match ports
            .split_once('-')
            .map(|(a, b)| (a.trim().parse::<u16>(), b.trim().parse::<u16>()))
        {
            Some((Ok(a), Ok(b))) if a > 0 && a <= b => (a, b),
            _ => bail!("addon_ports = {ports:?} is not a port range such as 15400-15999"),
        };
        let mut local_buildpacks = Vec::new();
        for dir in args
            .local_buildpacks
            .or(file.local_buildpacks)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() || !dir.is_dir() {
                bail!(
                    "local_buildpacks: {} is not an absolute path to a directory",
                    dir.display()
                );
            }
            local_buildpacks.push(dir);
        }
        Ok(Config {
            addons_dir,
            local_buildpacks,
            addon_ports,
            redis_server: args
                .redis_server
                .or(file.redis_server)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server")),
            postgres_bin: args
                .postgres_bin
                .or(file.postgres_bin)
                .unwrap_or_else(newest_postgres_bin),
            addon_check_interval: duration(
                "addon_check_interval",
                &args
                    .addon_check_interval
                    .or(file.addon_check_interval)
                    .unwrap_or_else(|| "60s".into()),
            )?,
            pg_long_query: duration(
                "pg_long_query",
                &args
                    .pg_long_query
                    .or(file.pg_long_query)
                    .unwrap_or_else(|| "1m".into()),
            )?,
            pg_long_transaction: duration(
                "pg_long_transaction",
                &args
                    .pg_long_transaction
                    .or(file.pg_long_transaction)
                    .unwrap_or_else(|| "1h".into()),
            )?,
            dataclip_statement_timeout: duration(
                "dataclip_statement_timeout",
                &args
                    .dataclip_statement_timeout
                    .or(file.dataclip_statement_timeout)
                    .unwrap_or_else(|| "30s".into()),
            )?,
            dataclip_timeout: duration(
                "dataclip_timeout",
                &args
                    .dataclip_timeout
                    .or(file.dataclip_timeout)
                    .unwrap_or_else(|| "60s".into()),
            )?,
            row_limit_grace: duration(
                "row_limit_grace",
                &args
                    .row_limit_grace
                    .or(file.row_limit_grace)
                    .unwrap_or_else(|| "7d".into()),
            )?,
            data_dir,
            api_listen: addr("api_listen", &api)?,
            router_listen: addr("router_listen", &router)?,
            router_tls_listen: addr("router_tls_listen", &router_tls)?,
            router_threads: match args.router_threads.or(file.router_threads) {
                Some(0) => bail!("router_threads must be at least 1"),
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            rendezvous_listen: addr("rendezvous_listen", &rendezvous)?,
            api_tls_listen: addr("api_tls_listen", &api_tls)?,
            tls_names,
            base_domain: base_domain.to_ascii_lowercase(),
            dns_target_domain: dns_target_domain.to_ascii_lowercase(),
            owner_email,
            boot_timeout: duration(
                "boot_timeout",
                &args
                    .boot_timeout
                    .or(file.boot_timeout)
                    .unwrap_or_else(|| "60s".into()),
            )?,
            stop_timeout: duration(
                "stop_timeout",
                &args
                    .stop_timeout
                    .or(file.stop_timeout)
                    .unwrap_or_else(|| "30s".into()),
            )?,
            runtime: choice(
                "runtime",
                &args
                    .runtime
                    .or(file.runtime)
                    .unwrap_or_else(|| "auto".into()),
                "container",
            )?,
            network: choice(
                "network",
                &args
                    .network
                    .or(file.network)
                    .unwrap_or_else(|| "auto".into()),
                "bridge",
            )?,
            dyno_subnet: args
                .dyno_subnet
                .or(file.dyno_subnet)
                .unwrap_or_else(|| "10.213.0.0/16".into()),
            node_name: {
                let n = args
                    .node_name
                    .or(file.node_name)
                    .unwrap_or_else(|| "slipway".into());
                let ok = (1..=9).contains(&n.len())
                    && n.starts_with(|c: char| c.is_ascii_lowercase())
                    && n.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                if !ok {
                    bail!("node_name = {n:?} must be 1 to 9 lowercase letters and digits, starting with a letter");
                }
                n
            },
            keep_dynos_on_exit: match args
                .on_exit
                .or(file.on_exit)
                .unwrap_or_else(|| "keep".into())
                .as_str()
            {
                "keep" => true,
                "stop" => false,
                other => bail!("on_exit = {other:?} is not one of keep, stop"),
            },
            drain_ca_file: args.drain_ca_file.or(file.drain_ca_file),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServerArgs {
        let mut v = vec!["server"];
        v.extend_from_slice(list);
        ServerArgs::parse_from(v)
    }

    #[test]
    fn drain_ca_file_from_file_or_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, "drain_ca_file = \"/etc/drain-ca.pem\"\n").unwrap();
        let c = Config::resolve(args(&["--data-dir", "/tmp/x"])).unwrap();
        assert_eq!(c.drain_ca_file, None);
        let c = Config::resolve(args(&["--config", file.to_str().unwrap()])).unwrap();
        assert_eq!(c.drain_ca_file, Some(PathBuf::from("/etc/drain-ca.pem")));
        let c = Config::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--drain-ca-file",
            "/x/ca.pem",
        ]))
        .unwrap();
        assert_eq!(c.drain_ca_file, Some(PathBuf::from("/x/ca.pem")));
    }

    #[test]
    fn flags_override_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(
            &file,
            "base_domain = \"apps.test\"\napi_listen = \"127.0.0.1:6000\"\nstop_timeout = \"5s\"\n",
        )
        .unwrap();
        let c = Config::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--api-listen",
            "127.0.0.1:7000",
            "--data-dir",
            "/tmp/x",
        ]))
        .unwrap();
        assert_eq!(c.api_listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.base_domain, "apps.test");
        // The DNS target domain follows the base domain unless set.
        assert_eq!(c.dns_target_domain, "apps.test");
        let c = Config::resolve(args(&[
            "--config",
            file.to_str().unwrap(),
            "--dns-target-domain",
            "DNS.Example.net",
            "--data-dir",
            "/tmp/x",
        ]))
        .unwrap();
        assert_eq!(c.dns_target_domain, "dns.example.net");
        assert_eq!(c.stop_timeout, Duration::from_secs(5));
        assert_eq!(c.boot_timeout, Duration::from_secs(60));
        assert_eq!(c.router_listen, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn bad_values_name_their_key() {
        let e =
            Config::resolve(args(&["--api-listen", "nope", "--data-dir", "/tmp/x"])).unwrap_err();
        assert!(format!("{e:#}").contains("api_listen"));
        let e =
            Config::resolve(args(&["--stop-timeout", "soon", "--data-dir", "/tmp/x"])).unwrap_err();
        assert!(format!("{e:#}").contains("stop_timeout"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        assert!(Config::resolve(args(&["--config", file.to_str().unwrap()])).is_err());
    }
}
