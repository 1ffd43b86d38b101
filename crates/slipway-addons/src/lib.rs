//! Add-on providers: the servers behind `addons:create`.
//!
//! [`Catalogue`] lists the services and plans. [`Addons`] provisions, changes and deprovisions
//! the built-in ones, each a real server that Slipway runs for the add-on alone
//! ([`process::Server`]: its own data dir under the add-ons dir, its own port in the add-on
//! range, its own cgroup with the plan's memory cap, run as the service's user, restarted when
//! it dies and adopted across `slipway server` restarts). The API records add-ons and
//! attachments in the store and turns the config a provider returns into config vars; this
//! crate never makes releases.
//!
//! Dynos reach add-on servers on the bridge's gateway address: the dyno network opens the
//! add-on port range there ([`slipway_runtime::net::NetConfig::host_ports`]) and nothing else.

pub mod catalogue;
pub mod dataclips;
pub mod partner;
mod pg;
pub mod postgres;
pub mod process;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use catalogue::{Catalogue, Kind, Plan, PlanLimits, Service};
use nix::sys::signal::Signal;
pub use pg::{Check, CopyKind, Credential, PgInfo};
pub use postgres::Table;
use process::{Server, ServerSpec};
use slipway_logs::{LogRouter, Source};
use slipway_runtime::cgroup::{CgroupDriver, Limits};
use slipway_store::{AddonRow, AddonServerRow, Store};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    /// The request cannot be done as asked (HTTP 422).
    #[error("{0}")]
    Refused(String),
    /// The provider or its server cannot do it now (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Store(#[from] slipway_store::StoreError),
    #[error("{0}")]
    Io(String),
}

/// Where and how add-on servers run.
#[derive(Debug, Clone)]
pub struct AddonsConfig {
    /// Data of every add-on, `<dir>/<add-on id>`: its ancestors must be traversable by the
    /// services' users (`redis`, `postgres`).
    pub dir: PathBuf,
    /// Ports for add-on servers, inclusive.
    pub ports: (u16, u16),
    /// Addresses servers listen on (loopback, and the dyno bridge's gateway).
    pub listen: Vec<Ipv4Addr>,
    /// The host apps are given in URLs (the gateway, or 127.0.0.1 without a dyno network).
    pub dyno_host: String,
    /// This program, run as `addon-exec` to start servers.
    pub exe: PathBuf,
    /// Cgroups for add-on servers (their memory caps); `None` where cgroups are not available.
    pub cgroups: Option<Arc<CgroupDriver>>,
    pub redis_server: PathBuf,
    /// Where PostgreSQL's programs are (`/usr/lib/postgresql/15/bin`).
    pub postgres_bin: PathBuf,
    /// The dyno network (`10.213.0.0/16`), whose addresses may log in to Postgres.
    pub dyno_subnet: Option<String>,
    /// How often row limits are checked.
    pub check_interval: Duration,
    /// How long a database may stay over its row limit before INSERT is revoked.
    pub row_limit_grace: Duration,
    /// Partner add-on manifests (`*.json`), offered beside the built-in services.
    pub manifests_dir: Option<PathBuf>,
    /// The API's URL, for partners' callbacks.
    pub api_url: String,
    /// Where Postgres backups are kept (`<dir>/<app id>/<backup id>.dump`).
    pub backups_dir: PathBuf,
    /// `pg:diagnose`'s thresholds for long queries and transactions.
    pub diagnose: postgres::DiagnoseLimits,
    /// Limits on every dataclip run.
    pub dataclips: dataclips::ClipLimits,
}

struct Inner {
    cfg: AddonsConfig,
    store: Store,
    logs: LogRouter,
    catalogue: Catalogue,
    servers: Mutex<HashMap<String, Arc<Server>>>,
    /// One operation at a time per add-on.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Ends the background tasks (log followers, the row-limit check).
    stopping: tokio::sync::watch::Sender<bool>,
}

/// The add-on providers; cheap to clone.
#[derive(Clone)]
pub struct Addons {
    inner: Arc<Inner>,
}

/// What `redis:info` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RedisInfo {
    pub version: String,
    pub maxmemory_policy: String,
    pub used_memory: u64,
    pub maxmemory: u64,
    /// The cap outside Redis (its cgroup), when enforced.
    pub memory_cap: Option<u64>,
    pub clients: u64,
    pub maxclients: u64,
    pub timeout: u64,
    pub persistence: String,
    pub status: String,
}

pub(crate) const READY_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Addons {
    pub fn new(cfg: AddonsConfig, store: Store, logs: LogRouter) -> Addons {
        let mut catalogue = Catalogue::default();
        if let Some(dir) = &cfg.manifests_dir {
            for service in partner::load_manifests(dir) {
                let name = service.name.clone();
                match catalogue.add(service) {
                    Ok(()) => info!(service = %name, "Offering a partner add-on."),
                    Err(error) => warn!(service = %name, %error, "Skipped a partner add-on."),
                }
            }
        }
        Addons {
            inner: Arc::new(Inner {
                cfg,
                store,
                logs,
                catalogue,
                servers: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                stopping: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    /// Where Postgres backups are kept.
    pub fn backups_dir(&self) -> &std::path::Path {
        &self.inner.cfg.backups_dir
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    /// Serialises operations on one add-on.
    pub async fn lock(&self, addon_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addon_id.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    pub(crate) fn service_of(&self, addon: &AddonRow) -> Result<(&Service, &Plan), AddonError> {
        self.inner
            .catalogue
            .resolve(&format!("{}:{}", addon.service, addon.plan))
            .map_err(AddonError::Refused)
    }

    /// Tells every app the add-on is attached to, as `heroku[<service>]`.
    pub(crate) fn tell(&self, addon_id: &str, message: String) {
        let (store, logs, id) = (
            self.inner.store.clone(),
            self.inner.logs.clone(),
            addon_id.to_string(),
        );
        tokio::spawn(async move {
            let Ok(Some(addon)) = store.addon(&id).await else {
                return;
            };
            let dyno = if addon.service.contains("redis") {
                "redis"
            } else {
                "postgres"
            };
            let attachments = store.attachments_of_addon(&id).await.unwrap_or_default();
            let mut apps: Vec<(String, String)> = attachments
                .iter()
                .map(|a| (a.app_id.clone(), a.name.clone()))
                .collect();
            if apps.is_empty() {
                apps.push((addon.app_id.clone(), String::new()));
            }
            for (app_id, name) in apps {
                let who = if name.is_empty() {
                    addon.name.clone()
                } else {
                    format!("{name} ({})", addon.name)
                };
                logs.emit(&app_id, Source::Heroku, dyno, &format!("{who} {message}"));
            }
        });
    }

    fn events(&self, addon_id: &str) -> process::Events {
        let this = self.clone();
        let id = addon_id.to_string();
        Arc::new(move |m: &str| this.tell(&id, m.to_string()))
    }

    pub(crate) fn dir(&self, addon_id: &str) -> PathBuf {
        self.inner.cfg.dir.join(addon_id)
    }

    /// A free port in the add-on range: not recorded for another add-on, and bindable now.
    async fn free_port(&self) -> Result<u16, AddonError> {
        let used: Vec<u16> = self
            .inner
            .store
            .addon_servers()
            .await?
            .iter()
            .map(|s| s.port)
            .collect();
        let (first, last) = self.inner.cfg.ports;
        for port in first..=last {
            if used.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err(AddonError::Unavailable(format!(
            "No free port is left for add-on servers in {first}-{last}. Destroy unused add-ons, or \
             give the server a wider range with --addon-ports."
        )))
    }

    /// Records the add-on's server with a free port.
    pub(crate) async fn claim_port(&self, row: &mut AddonServerRow) -> Result<(), AddonError> {
        // Two provisions may race for a port; the store's uniqueness settles it.
        for _ in 0..5 {
            row.port = self.free_port().await?;
            match self.inner.store.create_addon_server(row).await {
                Ok(()) => return Ok(()),
                Err(slipway_store::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AddonError::Unavailable(
            "Could not claim a port for the add-on's server; try again.".into(),
        ))
    }

    /// Provisions an add-on recorded as `provisioning`: its provider's id for it, its config
    /// (by suffix) and the provider's message.
    pub async fn provision(
        &self,
        addon: &AddonRow,
        options: &BTreeMap<String, String>,
    ) -> Result<partner::Provisioned, AddonError> {
        let (service, plan) = self.service_of(addon)?;
        let built_in = |config| partner::Provisioned {
            provider_id: addon.id.clone(),
            config,
            message: None,
        };
        match (service.kind, &service.partner) {
            (Kind::Redis, _) => Ok(built_in(self.provision_redis(addon, plan).await?)),
            (Kind::Postgres, _) => Ok(built_in(self.provision_postgres(addon, plan).await?)),
            (Kind::Partner, Some(api)) => {
                api.provision(
                    &addon.id,
                    &addon.name,
                    &plan.name,
                    options,
                    &format!("{}/addons/{}", self.inner.cfg.api_url, addon.id),
                )
                .await
            }
            (Kind::Partner, None) => Err(AddonError::Unavailable("no partner API".into())),
        }
    }

    /// Stops an add-on's server and removes its data (a partner's: asks the partner; a
    /// follower's: its replication slot on the leader goes too).
    pub async fn deprovision(&self, addon: &AddonRow) -> Result<(), AddonError> {
        let following = self.server_row(addon).await.ok().and_then(|r| {
            Some((
                r.settings.get("following")?.clone(),
                r.settings.get("slot")?.clone(),
            ))
        });
        if let Ok((service, _)) = self.service_of(addon) {
            if let Some(api) = &service.partner {
                if addon.provider_id.is_empty() {
                    return Ok(());
                }
                return api.deprovision(&addon.provider_id).await;
            }
        }
        let server = self
            .inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addon.id);
        match server {
            Some(s) => s.stop().await,
            None => {
                // Not supervised here (a failed start): stop what its record names, if anything.
                let s = self.server_for(addon).await.ok();
                if let Some(s) = s {
                    s.stop().await;
                }
            }
        }
        self.inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addon.id);
        if let Some((leader, slot)) = following {
            self.drop_slot(&leader, &slot).await;
        }
        let dir = self.dir(&addon.id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| AddonError::Io(format!("removing {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Moves an add-on to another plan of its service, keeping its data; new config (by
    /// suffix) when the provider changed it.
    pub async fn change_plan(
        &self,
        addon: &AddonRow,
        plan: &Plan,
    ) -> Result<Option<BTreeMap<String, String>>, AddonError> {
        let (service, _) = self.service_of(addon)?;
        if let Some(api) = &service.partner {
            return api
                .change_plan(&addon.provider_id, &addon.id, &plan.name)
                .await;
        }
        self.change_built_in_plan(addon, plan).await.map(|()| None)
    }

    async fn change_built_in_plan(&self, addon: &AddonRow, plan: &Plan) -> Result<(), AddonError> {
        let (service, _) = self.service_of(addon)?;
        match service.kind {
            Kind::Redis => {
                let row = self.server_row(addon).await?;
                let mut admin = self.redis_admin(&row).await?;
                let l = plan.limits;
                admin
                    .config_set("maxmemory", &l.maxmemory_bytes.unwrap_or(0).to_string())
                    .await?;
                admin
                    .config_set("maxclients", &l.connections.to_string())
                    .await?;
                let spec = self.redis_spec(addon, &row, plan)?;
                if let Some(server) = self.running(&addon.id) {
                    if let Some(limits) = spec.limits {
                        let _ = server.with_cgroup(|c| c.write_limits(&limits));
                    }
                    server.set_spec(spec);
                }
                Ok(())
            }
            Kind::Postgres => self.change_postgres_plan(addon, plan).await,
            Kind::Partner => Ok(()),
        }
    }

    pub(crate) fn running(&self, addon_id: &str) -> Option<Arc<Server>> {
        self.inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(addon_id)
            .cloned()
    }

    pub(crate) async fn server_row(&self, addon: &AddonRow) -> Result<AddonServerRow, AddonError> {
        self.inner
            .store
            .addon_server(&addon.id)
            .await?
            .ok_or_else(|| AddonError::Unavailable(format!("{} has no server.", addon.name)))
    }

    /// The supervised server of an add-on, adopted or started if this process has none yet.
    pub(crate) async fn server_for(&self, addon: &AddonRow) -> Result<Arc<Server>, AddonError> {
        if let Some(s) = self.running(&addon.id) {
            return Ok(s);
        }
        let (service, plan) = self.service_of(addon)?;
        let row = self.server_row(addon).await?;
        let spec = match service.kind {
            Kind::Redis => self.redis_spec(addon, &row, plan)?,
            Kind::Postgres => self.postgres_spec(addon, &row, plan)?,
            Kind::Partner => {
                return Err(AddonError::Refused(format!(
                    "{} is run by its partner, not by Slipway.",
                    addon.name
                )))
            }
        };
        let server = Server::run(
            spec,
            self.inner.cfg.exe.clone(),
            self.inner.cfg.cgroups.clone(),
            self.events(&addon.id),
        );
        self.inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(addon.id.clone(), server.clone());
        Ok(server)
    }

    /// Adopts or starts the server of every provisioned add-on (at server start).
    pub async fn start_all(&self) {
        self.watch_row_limits();
        self.watch_base_backups();
        let addons = match self.inner.store.all_addons().await {
            Ok(a) => a,
            Err(error) => {
                warn!(%error, "Could not list add-ons.");
                return;
            }
        };
        for addon in addons {
            if addon.state == "provisioning" {
                // Cut short by a crash: nothing was handed to an app yet; undo what was made.
                warn!(addon = %addon.name, "Removing an add-on whose provisioning was cut short.");
                if let Err(error) = self.deprovision(&addon).await {
                    warn!(addon = %addon.name, %error, "Could not clean up the add-on.");
                }
                let _ = self.inner.store.delete_addon(&addon.id).await;
                continue;
            }
            if addon.state != "provisioned" {
                continue;
            }
            match self.inner.store.addon_server(&addon.id).await {
                Ok(Some(_)) => {}
                _ => continue,
            }
            if self
                .service_of(&addon)
                .is_ok_and(|(s, _)| s.kind == Kind::Postgres)
            {
                self.follow_postgres_log(&addon);
            }
            match self.server_for(&addon).await {
                Ok(s) if s.pid() > 0 => {
                    info!(addon = %addon.name, pid = s.pid(), "Add-on server running.")
                }
                Ok(_) => info!(addon = %addon.name, "Add-on server starting."),
                Err(error) => {
                    warn!(addon = %addon.name, %error, "Could not start an add-on server.")
                }
            }
        }
    }

    /// At `slipway server`'s exit: stops every add-on server (`stop`), or leaves them running
    /// for the next start to adopt.
    pub async fn shutdown(&self, stop: bool) {
        self.inner.stopping.send_replace(true);
        let servers: Vec<Arc<Server>> = self
            .inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        if stop {
            let mut stops = tokio::task::JoinSet::new();
            for s in servers {
                stops.spawn(async move { s.stop().await });
            }
            while stops.join_next().await.is_some() {}
            if let Some(cg) = &self.inner.cfg.cgroups {
                let _ = cg.remove_base();
            }
        } else {
            for s in servers {
                s.release();
            }
        }
    }

    // ---- Redis ----------------------------------------------------------------------------

    pub(crate) fn service_user(&self, name: &str) -> Result<Option<(u32, u32)>, AddonError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(Some((u.uid.as_raw(), u.gid.as_raw()))),
            _ => Err(AddonError::Unavailable(format!(
                "The {name} user does not exist on this host. Install the server package \
                 (apt-get install -y redis-server postgresql-15) and try again."
            ))),
        }
    }

    fn redis_spec(
        &self,
        addon: &AddonRow,
        row: &AddonServerRow,
        plan: &Plan,
    ) -> Result<ServerSpec, AddonError> {
        let dir = self.dir(&addon.id);
        let secret = |k: &str| row.secrets.get(k).cloned().unwrap_or_default();
        let policy = row
            .settings
            .get("maxmemory_policy")
            .map_or("noeviction", String::as_str);
        let conf = redis::Conf {
            listen: &self.inner.cfg.listen,
            port: row.port,
            dir: &dir,
            maxmemory: plan.limits.maxmemory_bytes.unwrap_or(0),
            maxclients: plan.limits.connections,
            policy,
            tenant_password: &secret("tenant"),
            admin_password: &secret("admin"),
        };
        let user = self.service_user("redis")?;
        write_owned(&dir.join("redis.conf"), &conf.render(), user)?;
        Ok(ServerSpec {
            name: addon.name.clone(),
            dir,
            argv: vec![
                self.inner.cfg.redis_server.display().to_string(),
                self.dir(&addon.id).join("redis.conf").display().to_string(),
            ],
            env: vec![("LANG".into(), "C.UTF-8".into())],
            user,
            limits: Some(Limits {
                memory_bytes: plan.limits.memory_bytes,
                pids: 64,
                cpu_shares: 1024,
            }),
            stop_signal: Signal::SIGTERM,
        })
    }

    async fn redis_admin(&self, row: &AddonServerRow) -> Result<redis::Admin, AddonError> {
        let pw = row.secrets.get("admin").cloned().unwrap_or_default();
        redis::Admin::connect(row.port, &pw).await
    }

    async fn provision_redis(
        &self,
        addon: &AddonRow,
        plan: &Plan,
    ) -> Result<BTreeMap<String, String>, AddonError> {
        if !self.inner.cfg.redis_server.exists() {
            return Err(AddonError::Unavailable(format!(
                "{} is not installed on this host. Install it with apt-get install -y \
                 redis-server and try again.",
                self.inner.cfg.redis_server.display()
            )));
        }
        let user = self.service_user("redis")?;
        let dir = self.dir(&addon.id);
        make_dir(&dir, user)?;
        make_dir(&dir.join("data"), user)?;
        let tenant = random_secret();
        let row = AddonServerRow {
            addon_id: addon.id.clone(),
            kind: "redis".into(),
            port: 0,
            secrets: BTreeMap::from([
                ("tenant".to_string(), tenant.clone()),
                ("admin".to_string(), random_secret()),
            ]),
            settings: BTreeMap::new(),
            created_at: chrono::Utc::now(),
        };
        let mut row = row;
        self.claim_port(&mut row).await?;
        let _ = plan;
        let server = self.server_for(addon).await?;
        let port = row.port;
        let admin_pw = row.secrets.get("admin").cloned().unwrap_or_default();
        server
            .wait_ready(READY_DEADLINE, || {
                let pw = admin_pw.clone();
                async move {
                    let mut a = redis::Admin::connect(port, &pw)
                        .await
                        .map_err(|e| e.to_string())?;
                    match a.call(&["PING"]).await.map_err(|e| e.to_string())? {
                        redis::Reply::Status(s) if s == "PONG" => Ok(()),
                        other => Err(other.text()),
                    }
                }
            })
            .await
            .map_err(AddonError::Unavailable)?;
        Ok(BTreeMap::from([(
            "URL".to_string(),
            format!("redis://:{tenant}@{}:{port}", self.inner.cfg.dyno_host),
        )]))
    }

    /// What `redis:info` shows.
    pub async fn redis_info(&self, addon: &AddonRow) -> Result<RedisInfo, AddonError> {
        let row = self.server_row(addon).await?;
        let mut admin = self.redis_admin(&row).await?;
        let mut all = admin.info("server").await?;
        all.extend(admin.info("memory").await?);
        all.extend(admin.info("clients").await?);
        all.extend(admin.info("persistence").await?);
        let get = |k: &str| all.get(k).cloned().unwrap_or_default();
        let num = |k: &str| get(k).parse::<u64>().unwrap_or(0);
        let maxclients = admin.config_get("maxclients").await.parse().unwrap_or(0);
        let timeout = admin.config_get("timeout").await.parse().unwrap_or(0);
        let cap = self
            .running(&addon.id)
            .and_then(|s| s.with_cgroup(|_| ()))
            .and_then(|_| self.service_of(addon).ok())
            .map(|(_, p)| p.limits.memory_bytes);
        Ok(RedisInfo {
            version: get("redis_version"),
            maxmemory_policy: get("maxmemory_policy"),
            used_memory: num("used_memory"),
            maxmemory: num("maxmemory"),
            memory_cap: cap,
            clients: num("connected_clients").saturating_sub(1),
            maxclients,
            timeout,
            persistence: if get("aof_enabled") == "1" {
                "AOF (everysec)".into()
            } else {
                "none".into()
            },
            status: "available".into(),
        })
    }

    /// `redis:maxmemory --policy`: set now and kept across restarts.
    pub async fn set_redis_policy(&self, addon: &AddonRow, policy: &str) -> Result<(), AddonError> {
        if !redis::POLICIES.contains(&policy) {
            return Err(AddonError::Refused(format!(
                "{policy} is not a maxmemory policy. Use one of: {}.",
                redis::POLICIES.join(", ")
            )));
        }
        let mut row = self.server_row(addon).await?;
        self.redis_admin(&row)
            .await?
            .config_set("maxmemory-policy", policy)
            .await?;
        row.settings
            .insert("maxmemory_policy".into(), policy.to_string());
        self.inner
            .store
            .set_addon_server(&addon.id, &row.secrets, &row.settings)
            .await?;
        let (_, plan) = self.service_of(addon)?;
        let spec = self.redis_spec(addon, &row, plan)?;
        if let Some(s) = self.running(&addon.id) {
            s.set_spec(spec);
        }
        Ok(())
    }

    /// The pid of an add-on's server, if it runs.
    pub fn server_pid(&self, addon_id: &str) -> Option<i32> {
        self.running(addon_id).map(|s| s.pid()).filter(|p| *p > 0)
    }
}

pub(crate) fn make_dir(dir: &std::path::Path, user: Option<(u32, u32)>) -> Result<(), AddonError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| AddonError::Io(format!("creating {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    chown(dir, user)
}

fn chown(path: &std::path::Path, user: Option<(u32, u32)>) -> Result<(), AddonError> {
    if let Some((uid, gid)) = user {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| AddonError::Io(format!("giving {} to its server: {e}", path.display())))?;
    }
    Ok(())
}

pub(crate) fn write_owned(
    path: &std::path::Path,
    text: &str,
    user: Option<(u32, u32)>,
) -> Result<(), AddonError> {
    // Replaced whole: a server (re)starting while the file is rewritten reads the old one or the
    // new one, never an empty one, and the new one is its user's before it is in place.
    let io = |e: std::io::Error| AddonError::Io(format!("writing {}: {e}", path.display()));
    slipway_types::files::write_atomic_with(path, text.as_bytes(), 0o600, |tmp| {
        chown(tmp, user).map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(io)
}
