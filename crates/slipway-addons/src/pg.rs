//! The Postgres provider on [`Addons`]: provisioning a cluster, plan changes, credentials,
//! what `pg:*` shows, the cluster's log in the apps' logs, and the row limit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use slipway_runtime::cgroup::Limits;
use slipway_store::{AddonRow, AddonServerRow};

use crate::postgres::{self, Psql, Table};
use crate::process::ServerSpec;
use crate::{random_secret, write_owned, AddonError, Addons, Kind, Plan, READY_DEADLINE};

/// What `pg:info` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgInfo {
    pub status: String,
    pub connections: u64,
    pub connection_limit: u32,
    pub version: String,
    pub data_size: u64,
    pub storage_limit: Option<u64>,
    pub tables: u64,
    pub rows: u64,
    pub row_limit: Option<u64>,
    pub row_status: String,
    /// The leader's add-on name, for a follower.
    pub following: Option<String>,
    /// Bytes of the leader's WAL the follower has not replayed yet.
    pub behind_by_bytes: Option<u64>,
    /// The names of its followers.
    pub followers: Vec<String>,
    /// The earliest time it can be rolled back to (plans with continuous protection).
    pub rollback_earliest: Option<chrono::DateTime<chrono::Utc>>,
}

/// A credential, as `pg:credentials` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Credential {
    pub name: String,
    pub state: String,
    pub username: String,
    pub database: String,
    pub host: String,
    pub port: u16,
    pub connections: u64,
}

/// Plans with continuous protection (WAL archive, base backups, rollback), and their
/// rollback window.
pub fn rollback_window(plan: &Plan) -> Option<chrono::Duration> {
    if plan.name.starts_with("standard") {
        Some(chrono::Duration::days(4))
    } else if plan.name.starts_with("premium") || plan.name.starts_with("private") {
        Some(chrono::Duration::days(7))
    } else {
        None
    }
}

fn protected(plan: &Plan) -> bool {
    rollback_window(plan).is_some()
}

const RECOVER_FROM: &str = "recover_from";
const RECOVER_TO: &str = "recover_to";

/// Where an add-on is in Heroku's row-limit process.
const ROW_STATE: &str = "row_state";
const OVER_SINCE: &str = "over_since";

fn secret(row: &AddonServerRow, k: &str) -> String {
    row.secrets.get(k).cloned().unwrap_or_default()
}

impl Addons {
    /// The config an app gets for a cluster: `{"URL": "postgres://user:password@host:port/db"}`.
    fn app_config(&self, row: &AddonServerRow) -> BTreeMap<String, String> {
        BTreeMap::from([(
            "URL".to_string(),
            format!(
                "postgres://{}:{}@{}:{}/{}",
                secret(row, "user"),
                secret(row, "password"),
                self.inner.cfg.dyno_host,
                row.port,
                secret(row, "database")
            ),
        )])
    }

    pub(crate) fn psql(&self, addon: &AddonRow, row: &AddonServerRow) -> Psql {
        Psql {
            bin: self.inner.cfg.postgres_bin.join("psql"),
            socket_dir: self.dir(&addon.id).join("run"),
            port: row.port,
        }
    }

    pub(crate) fn postgres_spec(
        &self,
        addon: &AddonRow,
        row: &AddonServerRow,
        plan: &Plan,
    ) -> Result<ServerSpec, AddonError> {
        let dir = self.dir(&addon.id);
        let user = self.service_user("postgres")?;
        let archive = protected(plan);
        if archive {
            crate::make_dir(&dir.join("wal-archive"), user)?;
        }
        // A rollback being made recovers from its source's archive until it reaches its time.
        let recover_from = row.settings.get(RECOVER_FROM).map(PathBuf::from);
        let recover = match (&recover_from, row.settings.get(RECOVER_TO)) {
            (Some(from), Some(to)) if dir.join("pgdata/recovery.signal").exists() => {
                Some((from.as_path(), to.clone()))
            }
            _ => None,
        };
        let conf = postgres::Conf {
            listen: &self.inner.cfg.listen,
            port: row.port,
            dir: &dir,
            connections: plan.limits.connections,
            memory_bytes: plan.limits.memory_bytes,
            storage_bytes: plan.limits.storage_bytes,
            archive,
            recover,
        };
        write_owned(&dir.join("pgdata/slipway.conf"), &conf.render(), user)?;
        write_owned(
            &dir.join("pgdata/pg_hba.conf"),
            &postgres::hba(self.inner.cfg.dyno_subnet.as_deref()),
            user,
        )?;
        Ok(ServerSpec {
            name: addon.name.clone(),
            dir: dir.clone(),
            argv: vec![
                self.inner
                    .cfg
                    .postgres_bin
                    .join("postgres")
                    .display()
                    .to_string(),
                "-D".into(),
                dir.join("pgdata").display().to_string(),
            ],
            env: vec![
                ("LANG".into(), "C.UTF-8".into()),
                ("TZ".into(), "UTC".into()),
                // The postmaster is shielded from the OOM killer; its backends are not.
                (
                    "PG_OOM_ADJUST_FILE".into(),
                    "/proc/self/oom_score_adj".into(),
                ),
                ("PG_OOM_ADJUST_VALUE".into(), "0".into()),
            ],
            user,
            limits: Some(Limits {
                memory_bytes: plan.limits.memory_bytes,
                pids: u64::from(plan.limits.connections) + 64,
                cpu_shares: 1024,
            }),
            // Fast shutdown: sessions are ended, everything committed is kept.
            stop_signal: Signal::SIGINT,
        })
    }

    async fn wait_postgres(
        &self,
        addon: &AddonRow,
        row: &AddonServerRow,
    ) -> Result<(), AddonError> {
        let server = self.server_for(addon).await?;
        let psql = self.psql(addon, row);
        let tcp = self.inner.cfg.listen.clone();
        let port = row.port;
        server
            .wait_ready(READY_DEADLINE, || {
                let psql = &psql;
                let tcp = tcp.clone();
                async move {
                    psql.value("postgres", "SELECT 1")
                        .await
                        .map_err(|e| e.to_string())?;
                    // Postgres only warns about an address it cannot listen on; dynos need them all.
                    for addr in tcp {
                        tokio::net::TcpStream::connect((addr, port))
                            .await
                            .map_err(|e| format!("not listening on {addr}:{port}: {e}"))?;
                    }
                    Ok(())
                }
            })
            .await
            .map_err(AddonError::Unavailable)
    }

    pub(crate) async fn provision_postgres(
        &self,
        addon: &AddonRow,
        plan: &Plan,
    ) -> Result<BTreeMap<String, String>, AddonError> {
        let bin = &self.inner.cfg.postgres_bin;
        if !bin.join("postgres").exists() {
            return Err(AddonError::Unavailable(format!(
                "PostgreSQL is not installed on this host ({} is missing). Install it with \
                 apt-get install -y postgresql-15 and try again.",
                bin.join("postgres").display()
            )));
        }
        let user = self.service_user("postgres")?;
        let dir = self.dir(&addon.id);
        crate::make_dir(&dir, user)?;
        for sub in ["run", "log"] {
            crate::make_dir(&dir.join(sub), user)?;
        }
        // initdb as postgres (it refuses root), trusting only the private socket.
        let mut initdb = tokio::process::Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(dir.join("pgdata"))
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
            ])
            .args(["--locale=C.UTF-8", "--no-instructions"])
            .current_dir(&dir)
            .env_clear()
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            .kill_on_drop(true);
        run_pg(initdb, user, "initdb").await?;
        let main_conf = dir.join("pgdata/postgresql.conf");
        let mut conf = std::fs::read_to_string(&main_conf)
            .map_err(|e| AddonError::Io(format!("reading {}: {e}", main_conf.display())))?;
        conf.push_str(
            "\n# Slipway's settings for this add-on and its plan.\ninclude 'slipway.conf'\n",
        );
        write_owned(&main_conf, &conf, user)?;

        let (u, h, d) = (
            postgres::ident('u'),
            postgres::ident('h'),
            postgres::ident('d'),
        );
        let password = random_secret();
        let mut row = AddonServerRow {
            addon_id: addon.id.clone(),
            kind: "postgres".into(),
            port: 0,
            secrets: BTreeMap::from([
                ("user".to_string(), u.clone()),
                ("holder".to_string(), h.clone()),
                ("database".to_string(), d.clone()),
                ("password".to_string(), password.clone()),
            ]),
            settings: BTreeMap::new(),
            created_at: chrono::Utc::now(),
        };
        self.claim_port(&mut row).await?;
        self.wait_postgres(addon, &row).await?;
        let psql = self.psql(addon, &row);
        let (in_postgres, in_db) =
            postgres::setup_sql(&u, &h, &d, &password, plan.limits.connections);
        psql.exec("postgres", &in_postgres).await?;
        psql.exec(&d, &in_db).await?;
        // Continuous protection starts with a first base backup.
        self.base_backup(addon).await?;
        self.follow_postgres_log(addon);
        Ok(self.app_config(&row))
    }

    pub(crate) async fn change_postgres_plan(
        &self,
        addon: &AddonRow,
        plan: &Plan,
    ) -> Result<(), AddonError> {
        let row = self.server_row(addon).await?;
        if let Some(limit) = plan.limits.rows {
            let info = self.pg_info(addon).await?;
            if info.rows > limit {
                return Err(AddonError::Refused(format!(
                    "{} has {} rows; the {} plan allows {limit}. Delete rows first, or choose a \
                     larger plan.",
                    addon.name, info.rows, plan.name
                )));
            }
        }
        let spec = self.postgres_spec(addon, &row, plan)?;
        let psql = self.psql(addon, &row);
        psql.exec(
            "postgres",
            &format!(
                "ALTER ROLE {} CONNECTION LIMIT {};",
                secret(&row, "user"),
                plan.limits.connections
            ),
        )
        .await?;
        let server = self.server_for(addon).await?;
        if let Some(limits) = spec.limits {
            let _ = server.with_cgroup(|c| c.write_limits(&limits));
        }
        server.set_spec(spec);
        // max_connections and shared_buffers take a restart; committed data is kept.
        server.restart().await;
        self.wait_postgres(addon, &row).await?;
        // A larger plan may lift the row limit.
        self.check_rows(addon, plan).await;
        Ok(())
    }

    pub(crate) async fn postgres_addon(
        &self,
        addon: &AddonRow,
    ) -> Result<(AddonServerRow, Psql), AddonError> {
        let (service, _) = self.service_of(addon)?;
        if service.kind != Kind::Postgres {
            return Err(AddonError::Refused(format!(
                "{} is not a Heroku Postgres add-on.",
                addon.name
            )));
        }
        let row = self.server_row(addon).await?;
        let psql = self.psql(addon, &row);
        Ok((row, psql))
    }

    /// What `pg:info` shows.
    pub async fn pg_info(&self, addon: &AddonRow) -> Result<PgInfo, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let (_, plan) = self.service_of(addon)?;
        let (user, db) = (secret(&row, "user"), secret(&row, "database"));
        let t = psql
            .query(
                &db,
                &format!(
                    "SELECT pg_database_size(current_database()), \
                     (SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'), \
                     current_setting('server_version'), \
                     (SELECT count(*) FROM pg_stat_user_tables), \
                     (SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables)"
                ),
            )
            .await?;
        let r = t.rows.first().cloned().unwrap_or_default();
        let num = |i: usize| {
            r.get(i)
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let version = r.get(2).cloned().flatten().unwrap_or_default();
        let rows = num(4);
        let state = row.settings.get(ROW_STATE).map_or("", String::as_str);
        let row_status = match (plan.limits.rows, state) {
            (None, _) => String::new(),
            (Some(_), "restricted") => "Write access revoked".into(),
            (Some(limit), _) if rows > limit => "Over the row limit: INSERT will be revoked".into(),
            (Some(limit), _) if rows * 10 >= limit * 7 => {
                "In compliance, close to row limit".into()
            }
            (Some(_), _) => "In compliance".into(),
        };
        Ok(PgInfo {
            status: "Available".into(),
            connections: num(1),
            connection_limit: plan.limits.connections,
            version: version.split_whitespace().next().unwrap_or("").to_string(),
            data_size: num(0),
            storage_limit: plan.limits.storage_bytes,
            tables: num(3),
            rows,
            row_limit: plan.limits.rows,
            row_status,
            following: None,
            behind_by_bytes: None,
            followers: Vec::new(),
            rollback_earliest: rollback_window(plan).and_then(|w| {
                let oldest = self.base_backups(addon).into_iter().min()?;
                let oldest = chrono::DateTime::from_timestamp(oldest, 0)?;
                Some(oldest.max(chrono::Utc::now() - w))
            }),
        })
    }

    fn app_roles(row: &AddonServerRow) -> Vec<String> {
        vec![secret(row, "user"), secret(row, "holder")]
    }

    /// `pg:ps`.
    pub async fn pg_activity(&self, addon: &AddonRow, verbose: bool) -> Result<Table, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let roles = Self::app_roles(&row);
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        let db = secret(&row, "database");
        psql.query(&db, &postgres::activity_sql(&db, &roles, verbose))
            .await
    }

    /// `pg:kill`: cancels (or, `force`, terminates) one of the app's sessions; false when the
    /// pid is not one.
    pub async fn pg_kill(
        &self,
        addon: &AddonRow,
        pid: u32,
        force: bool,
    ) -> Result<bool, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let f = if force {
            "pg_terminate_backend"
        } else {
            "pg_cancel_backend"
        };
        let v = psql
            .value(
                "postgres",
                &format!(
                    "SELECT coalesce((SELECT {f}(pid) FROM pg_stat_activity WHERE pid = {pid} \
                     AND usename = '{}' AND datname = '{}'), false)",
                    secret(&row, "user"),
                    secret(&row, "database")
                ),
            )
            .await?;
        Ok(v.as_deref() == Some("t"))
    }

    /// `pg:killall`: ends every session of the app's role.
    pub async fn pg_killall(&self, addon: &AddonRow) -> Result<(), AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        psql.query(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{}'",
                secret(&row, "user")
            ),
        )
        .await
        .map(|_| ())
    }

    /// `pg:locks`.
    pub async fn pg_locks(&self, addon: &AddonRow) -> Result<Table, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let roles = Self::app_roles(&row);
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        let db = secret(&row, "database");
        psql.query(&db, &postgres::locks_sql(&db, &roles)).await
    }

    /// `pg:outliers`.
    pub async fn pg_outliers(&self, addon: &AddonRow, limit: u32) -> Result<Table, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let roles = Self::app_roles(&row);
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        let db = secret(&row, "database");
        psql.query(
            &db,
            &postgres::outliers_sql(&db, &roles, limit.clamp(1, 1000)),
        )
        .await
    }

    /// `pg:outliers --reset`: forgets the app's statement statistics.
    pub async fn pg_outliers_reset(&self, addon: &AddonRow) -> Result<(), AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let db = secret(&row, "database");
        let mut sql = String::new();
        for role in Self::app_roles(&row) {
            sql.push_str(&format!(
                "SELECT slipway_admin.pg_stat_statements_reset('{role}'::regrole::oid, \
                 (SELECT oid FROM pg_database WHERE datname = '{db}'), 0);\n"
            ));
        }
        psql.exec(&db, &sql).await
    }

    /// `pg:credentials`.
    pub async fn pg_credentials(&self, addon: &AddonRow) -> Result<Vec<Credential>, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let user = secret(&row, "user");
        let n = psql
            .value(
                "postgres",
                &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"),
            )
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(vec![Credential {
            name: "default".into(),
            state: "active".into(),
            username: user,
            database: secret(&row, "database"),
            host: self.inner.cfg.dyno_host.clone(),
            port: row.port,
            connections: n,
        }])
    }

    /// `pg:credentials:rotate`: a new password; the old one stops working at once and its
    /// sessions are ended. Returns the add-on's new config.
    pub async fn pg_rotate(
        &self,
        addon: &AddonRow,
    ) -> Result<BTreeMap<String, String>, AddonError> {
        let (mut row, psql) = self.postgres_addon(addon).await?;
        let user = secret(&row, "user");
        let password = random_secret();
        psql.exec(
            "postgres",
            &format!(
                "ALTER ROLE {user} PASSWORD '{password}';\n\
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}';\n"
            ),
        )
        .await?;
        row.secrets.insert("password".into(), password);
        self.inner
            .store
            .set_addon_server(&addon.id, &row.secrets, &row.settings)
            .await?;
        Ok(self.app_config(&row))
    }

    // ---- the cluster's log ----------------------------------------------------------------

    /// Follows the cluster's log into the apps' logs, as `app[postgres.<pid>]`, from where the
    /// last run left off.
    pub(crate) fn follow_postgres_log(&self, addon: &AddonRow) {
        let this = self.clone();
        let id = addon.id.clone();
        let dir = self.dir(&id);
        let mut stop = self.inner.stopping.subscribe();
        tokio::spawn(async move {
            let offset_file = dir.join("logtail.offset");
            let saved = std::fs::read_to_string(&offset_file).unwrap_or_default();
            let (mut file, mut offset) = match saved.trim().split_once(' ') {
                Some((o, f)) => (f.to_string(), o.parse::<u64>().unwrap_or(0)),
                None => (String::new(), 0),
            };
            let mut partial = String::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                if !dir.exists() {
                    return;
                }
                let current = std::fs::read_to_string(dir.join("pgdata/current_logfiles"))
                    .unwrap_or_default();
                let Some(path) = current.lines().find_map(|l| l.strip_prefix("stderr ")) else {
                    continue;
                };
                let path = path.trim().to_string();
                if path != file {
                    file = path.clone();
                    offset = 0;
                    partial.clear();
                }
                let Ok(mut f) = std::fs::File::open(&file) else {
                    continue;
                };
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    // Truncated on rotation: start again.
                    offset = 0;
                    partial.clear();
                }
                if len == offset {
                    continue;
                }
                use std::io::{Read, Seek};
                let _ = f.seek(std::io::SeekFrom::Start(offset));
                let mut buf = Vec::new();
                let _ = f.take(1 << 20).read_to_end(&mut buf);
                offset += buf.len() as u64;
                partial.push_str(&String::from_utf8_lossy(&buf));
                let Some(cut) = partial.rfind('\n') else {
                    continue;
                };
                let done: String = partial.drain(..=cut).collect();
                this.emit_postgres_lines(&id, &done).await;
                let _ = slipway_types::files::write_atomic(
                    &offset_file,
                    format!("{offset} {file}").as_bytes(),
                    0o600,
                );
            }
        });
    }

    async fn emit_postgres_lines(&self, addon_id: &str, text: &str) {
        let attachments = self
            .inner
            .store
            .attachments_of_addon(addon_id)
            .await
            .unwrap_or_default();
        // Each app sees the lines once, under its first attachment's name.
        let mut seen = std::collections::HashSet::new();
        for a in attachments {
            if !seen.insert(a.app_id.clone()) {
                continue;
            }
            for line in text.lines() {
                if let Some((pid, msg)) = postgres::log_line(&a.name, line) {
                    self.inner.logs.emit(
                        &a.app_id,
                        slipway_logs::Source::App,
                        &format!("postgres.{pid}"),
                        &msg,
                    );
                }
            }
        }
    }

    // ---- the row limit ----------------------------------------------------------------------

    /// Checks every Postgres add-on whose plan has a row limit, every `check_interval`.
    pub(crate) fn watch_row_limits(&self) {
        let this = self.clone();
        let mut stop = self.inner.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(this.inner.cfg.check_interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Ok(addons) = this.inner.store.all_addons().await else {
                    continue;
                };
                for addon in addons {
                    if addon.state != "provisioned" {
                        continue;
                    }
                    let Ok((service, plan)) = this.service_of(&addon) else {
                        continue;
                    };
                    if service.kind != Kind::Postgres || plan.limits.rows.is_none() {
                        continue;
                    }
                    let plan = plan.clone();
                    let _guard = this.lock(&addon.id).await;
                    this.check_rows(&addon, &plan).await;
                }
            }
        });
    }

    /// One step of Heroku's row and storage limits: a warning at 70 % of the rows (80 % of the
    /// storage), INSERT revoked once over a limit for the grace period, given back once under.
    pub(crate) async fn check_rows(&self, addon: &AddonRow, plan: &Plan) {
        let Ok(mut row) = self.server_row(addon).await else {
            return;
        };
        let Ok(info) = self.pg_info(addon).await else {
            return;
        };
        let state = row.settings.get(ROW_STATE).cloned().unwrap_or_default();
        let now = chrono::Utc::now();
        let psql = self.psql(addon, &row);
        let (user, holder, db) = (
            secret(&row, "user"),
            secret(&row, "holder"),
            secret(&row, "database"),
        );
        let over_rows = plan.limits.rows.filter(|l| info.rows > *l);
        let over_storage = plan.limits.storage_bytes.filter(|l| info.data_size > *l);
        let near = plan.limits.rows.is_some_and(|l| info.rows * 10 >= l * 7)
            || plan
                .limits
                .storage_bytes
                .is_some_and(|l| info.data_size * 10 >= l * 8);
        let usage = match (over_rows, over_storage) {
            (Some(l), _) => format!(
                "has {} rows, over the {} plan's limit of {}",
                thousands(info.rows),
                plan.name,
                thousands(l)
            ),
            (None, Some(l)) => format!(
                "uses {} MB, over the {} plan's storage limit of {} MB",
                info.data_size / (1024 * 1024),
                plan.name,
                l / (1024 * 1024)
            ),
            _ => String::new(),
        };
        let over = !usage.is_empty();
        let mut new_state = state.clone();
        if over {
            let since = row
                .settings
                .get(OVER_SINCE)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&chrono::Utc));
            let since = match since {
                Some(t) => t,
                None => {
                    row.settings.insert(OVER_SINCE.into(), now.to_rfc3339());
                    let grace = self.inner.cfg.row_limit_grace.as_secs();
                    self.tell(
                        &addon.id,
                        format!(
                            "{usage}. INSERT privileges will be revoked {}.",
                            if grace == 0 {
                                "now".to_string()
                            } else {
                                format!("in {} hours", grace.div_ceil(3600))
                            }
                        ),
                    );
                    now
                }
            };
            let grace_over = now
                .signed_duration_since(since)
                .to_std()
                .unwrap_or_default()
                >= self.inner.cfg.row_limit_grace;
            if state != "restricted" && grace_over {
                if let Err(e) = psql
                    .exec(&db, &postgres::restrict_sql(&user, &holder, &db))
                    .await
                {
                    tracing::warn!(addon = %addon.name, error = %e, "Could not revoke INSERT.");
                    return;
                }
                self.tell(
                    &addon.id,
                    format!(
                        "{usage}: INSERT privileges revoked. Delete data, or move to a larger \
                         plan: slipway addons:upgrade {} PLAN",
                        addon.name
                    ),
                );
                new_state = "restricted".into();
            } else if state != "restricted" {
                new_state = "over".into();
            }
        } else {
            if state == "restricted" {
                if psql
                    .exec(&db, &postgres::restore_sql(&user, &holder))
                    .await
                    .is_err()
                {
                    return;
                }
                self.tell(
                    &addon.id,
                    format!(
                        "has {} rows and uses {} MB, within the {} plan's limits: INSERT \
                         privileges restored.",
                        thousands(info.rows),
                        info.data_size / (1024 * 1024),
                        plan.name
                    ),
                );
            }
            row.settings.remove(OVER_SINCE);
            new_state = if near { "warned".into() } else { String::new() };
            if near && state != "warned" {
                let rows = match plan.limits.rows {
                    Some(l) => format!(
                        "has {} of {} rows ({}%). At {} rows INSERT privileges are revoked.",
                        thousands(info.rows),
                        thousands(l),
                        info.rows * 100 / l.max(1),
                        thousands(l)
                    ),
                    None => String::new(),
                };
                let message = if plan.limits.rows.is_some_and(|l| info.rows * 10 >= l * 7) {
                    rows
                } else {
                    format!(
                        "uses {} MB of its {} MB of storage. Beyond it INSERT privileges are \
                         revoked.",
                        info.data_size / (1024 * 1024),
                        plan.limits.storage_bytes.unwrap_or(0) / (1024 * 1024)
                    )
                };
                self.tell(&addon.id, message);
            }
        }
        if new_state.is_empty() {
            row.settings.remove(ROW_STATE);
        } else {
            row.settings.insert(ROW_STATE.into(), new_state);
        }
        let _ = self
            .inner
            .store
            .set_addon_server(&addon.id, &row.secrets, &row.settings)
            .await;
    }
}

/// `10000` → `10,000`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Addons {
    /// `pg_dump -Fc` of the add-on's database into `path` (the app's objects, not Slipway's
    /// schema); `progress` is told the size written so far. Returns the final size.
    pub async fn pg_dump(
        &self,
        addon: &AddonRow,
        path: &std::path::Path,
        progress: impl Fn(u64),
    ) -> Result<u64, AddonError> {
        let (row, _) = self.postgres_addon(addon).await?;
        let db = secret(&row, "database");
        let mut child = tokio::process::Command::new(self.inner.cfg.postgres_bin.join("pg_dump"))
            .args(["-Fc", "-N", "slipway_admin", "--no-owner", "--no-acl", "-h"])
            .arg(self.dir(&addon.id).join("run"))
            .args([
                "-p",
                &row.port.to_string(),
                "-U",
                "postgres",
                "-d",
                &db,
                "-f",
            ])
            .arg(path)
            .env_clear()
            .env("LANG", "C.UTF-8")
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| AddonError::Unavailable(format!("cannot run pg_dump: {e}")))?;
        let mut stderr = child.stderr.take();
        let err_text = tokio::spawn(async move {
            let mut s = String::new();
            if let Some(e) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut s).await;
            }
            s
        });
        let status = loop {
            tokio::select! {
                s = child.wait() => break s,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    progress(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
                }
            }
        };
        let err = err_text.await.unwrap_or_default();
        match status {
            Ok(s) if s.success() => Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)),
            _ => Err(AddonError::Unavailable(format!(
                "pg_dump failed: {}",
                err.trim()
            ))),
        }
    }

    /// Replaces the add-on's database with a dump's contents, in one transaction: the app's
    /// schemas are emptied and the dump's objects recreated as the app's role. If anything
    /// fails, the database is left as it was.
    ///
    /// The dump is the app's own SQL: its functions run while it loads (CHECK constraints,
    /// triggers, defaults), so it is applied in a session logged in as the app's role, never as
    /// the superuser (a `SET ROLE` inside a superuser's session is no boundary: the code can
    /// reset it).
    pub async fn pg_restore(
        &self,
        addon: &AddonRow,
        path: &std::path::Path,
    ) -> Result<(), AddonError> {
        let (row, _) = self.postgres_addon(addon).await?;
        let (user, holder, db) = (
            secret(&row, "user"),
            secret(&row, "holder"),
            secret(&row, "database"),
        );
        let bin = &self.inner.cfg.postgres_bin;
        let fail = |what: &str, e: String| AddonError::Unavailable(format!("{what}: {e}"));
        let run = |cmd: &mut tokio::process::Command| {
            cmd.env_clear()
                .env("LANG", "C.UTF-8")
                .env("PGCONNECT_TIMEOUT", "10")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
        };
        let work = tempfile_dir(path)?;
        // The dump's table of contents without extensions (those are Slipway's to manage).
        let mut list = tokio::process::Command::new(bin.join("pg_restore"));
        list.arg("-l").arg(path);
        run(&mut list);
        let out = list
            .output()
            .await
            .map_err(|e| fail("cannot run pg_restore", e.to_string()))?;
        if !out.status.success() {
            return Err(AddonError::Refused(format!(
                "The backup cannot be read: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let toc: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains(" EXTENSION "))
            .map(|l| format!("{l}\n"))
            .collect();
        let (toc_path, script, wipe) = (
            work.join("toc"),
            work.join("restore.sql"),
            work.join("wipe.sql"),
        );
        let io = |e: std::io::Error| AddonError::Io(e.to_string());
        std::fs::write(&toc_path, toc).map_err(io)?;
        std::fs::write(
            &wipe,
            format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity\n\
                   WHERE usename = '{user}' AND pid <> pg_backend_pid();\n\
                 DO $$ DECLARE s record; BEGIN\n\
                   FOR s IN SELECT nspname FROM pg_namespace WHERE nspowner IN ('{user}'::regrole, '{holder}'::regrole)\n\
                            OR nspname = 'public' LOOP\n\
                     EXECUTE format('DROP SCHEMA %I CASCADE', s.nspname);\n\
                   END LOOP;\n\
                 END $$;\n\
                 CREATE SCHEMA public AUTHORIZATION pg_database_owner;\n\
                 GRANT USAGE ON SCHEMA public TO PUBLIC;\n"
            ),
        )
        .map_err(io)?;
        let mut sql = tokio::process::Command::new(bin.join("pg_restore"));
        sql.args(["--no-owner", "--no-acl", "-L"])
            .arg(&toc_path)
            .arg("-f")
            .arg(&script)
            .arg(path);
        run(&mut sql);
        let out = sql
            .output()
            .await
            .map_err(|e| fail("cannot run pg_restore", e.to_string()))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&work);
            return Err(fail(
                "pg_restore failed",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        // What only the superuser may do, and which runs none of the app's code: the app's
        // sessions end, and whatever the row limit gave to the holder role comes back.
        let restricted = row.settings.get(ROW_STATE).map(String::as_str) == Some("restricted");
        let store = &self.inner.store;
        if restricted {
            // The hold is lifted for the restore. Recorded first: should the restore be cut
            // short (a client gone, a crash), the next limit check finds the database over its
            // limit, not restricted, past its grace, and revokes INSERT again.
            let mut settings = row.settings.clone();
            settings.remove(ROW_STATE);
            store
                .set_addon_server(&addon.id, &row.secrets, &settings)
                .await?;
        }
        let psql = self.psql(addon, &row);
        let prepare = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{user}';\n{}",
            postgres::restore_sql(&user, &holder)
        );
        let mut attempt = 0;
        let out = loop {
            attempt += 1;
            if let Err(e) = psql.exec(&db, &prepare).await {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
            let mut apply = tokio::process::Command::new(bin.join("psql"));
            apply
                .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                .args(["-p", &row.port.to_string(), "-U", &user, "-d", &db, "-f"])
                .arg(&wipe)
                .arg("-f")
                .arg(&script)
                .stdout(std::process::Stdio::null());
            run(&mut apply);
            apply.env("PGPASSWORD", secret(&row, "password"));
            let out = apply
                .output()
                .await
                .map_err(|e| fail("cannot run psql", e.to_string()));
            // The app's pools may have taken every connection its role has again in between:
            // their sessions are ended once more and the restore tried again.
            let crowded = out.as_ref().is_ok_and(|o| {
                !o.status.success()
                    && String::from_utf8_lossy(&o.stderr).contains("too many connections")
            });
            if !crowded || attempt >= 3 {
                break out;
            }
        };
        let _ = std::fs::remove_dir_all(&work);
        let failed = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(fail(
                "The restore failed and was rolled back",
                String::from_utf8_lossy(&o.stderr).trim().to_string(),
            )),
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            // The database is as it was; so must the row limit's hold on it be.
            if restricted
                && psql
                    .exec(&db, &postgres::restrict_sql(&user, &holder, &db))
                    .await
                    .is_ok()
            {
                let _ = store
                    .set_addon_server(&addon.id, &row.secrets, &row.settings)
                    .await;
            }
            return Err(e);
        }
        let mut settings = row.settings.clone();
        settings.remove(ROW_STATE);
        settings.remove(OVER_SINCE);
        let _ = self
            .inner
            .store
            .set_addon_server(&addon.id, &row.secrets, &settings)
            .await;
        Ok(())
    }

    /// How many backups the add-on's plan keeps.
    pub fn backup_retention(&self, addon: &AddonRow) -> usize {
        match self.service_of(addon) {
            Ok((_, plan)) if plan.name.starts_with("essential") => 5,
            Ok(_) => 25,
            Err(_) => 5,
        }
    }
}

/// A fresh working dir beside `path` (same filesystem, same owner).
fn tempfile_dir(path: &std::path::Path) -> Result<std::path::PathBuf, AddonError> {
    let dir = path
        .parent()
        .unwrap_or(std::path::Path::new("/tmp"))
        .join(format!(
            ".restore-{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| AddonError::Io(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

/// One graded `pg:diagnose` check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub status: postgres::Grade,
    pub message: Option<String>,
    pub results: Table,
}

impl Addons {
    /// Runs Heroku's `pg:diagnose` checks on the add-on's database.
    pub async fn pg_diagnose(&self, addon: &AddonRow) -> Result<Vec<Check>, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        let (_, plan) = self.service_of(addon)?;
        let roles = Self::app_roles(&row);
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        let db = secret(&row, "database");
        let mut out = Vec::new();
        for (name, sql) in postgres::diagnose_checks(&db, &roles, &self.inner.cfg.diagnose) {
            let check = match psql.query(&db, &sql).await {
                Ok(t) => {
                    let (status, message) = postgres::grade(name, &t, plan.limits.connections);
                    Check {
                        name: name.into(),
                        status,
                        message,
                        results: t,
                    }
                }
                Err(e) => Check {
                    name: name.into(),
                    status: postgres::Grade::Skipped,
                    message: Some(e.to_string()),
                    results: Table::default(),
                },
            };
            out.push(check);
        }
        out.push(load_check());
        Ok(out)
    }

    async fn pg_table(&self, addon: &AddonRow, sql: &str) -> Result<Table, AddonError> {
        let (row, psql) = self.postgres_addon(addon).await?;
        psql.query(&secret(&row, "database"), sql).await
    }

    /// `pg:bloat`.
    pub async fn pg_bloat(&self, addon: &AddonRow) -> Result<Table, AddonError> {
        self.pg_table(addon, postgres::bloat_sql()).await
    }

    /// `pg:index-usage`.
    pub async fn pg_index_usage(&self, addon: &AddonRow) -> Result<Table, AddonError> {
        self.pg_table(addon, postgres::index_usage_sql()).await
    }

    /// `pg:cache-hit`.
    pub async fn pg_cache_hit(&self, addon: &AddonRow) -> Result<Table, AddonError> {
        self.pg_table(addon, postgres::cache_hit_sql()).await
    }

    /// `pg:explain`: the plan of one statement, run as the app's role (with `analyze`, executed
    /// inside a transaction that is rolled back).
    pub async fn pg_explain(
        &self,
        addon: &AddonRow,
        sql: &str,
        analyze: bool,
    ) -> Result<String, AddonError> {
        let (row, _) = self.postgres_addon(addon).await?;
        let sql = sql.trim().trim_end_matches([';', ' ', '\n', '\t', '\r']);
        if sql.is_empty() || sql.contains(';') {
            return Err(AddonError::Refused(
                "Give one SQL statement to explain (no ';' inside).".into(),
            ));
        }
        let options = if analyze { "(ANALYZE, BUFFERS)" } else { "" };
        // One simple query, as the app's own role over TCP: nothing in it runs with more rights
        // than the app has, and a leading EXPLAIN keeps psql from reading it as a meta-command.
        let command = format!("EXPLAIN {options} {sql}");
        let out = tokio::process::Command::new(self.inner.cfg.postgres_bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &row.port.to_string(),
                "-U",
                &secret(&row, "user"),
                "-d",
                &secret(&row, "database"),
            ])
            .arg("-c")
            .arg(format!(
                "BEGIN; SET LOCAL statement_timeout = '60s'; {command}; ROLLBACK"
            ))
            .env_clear()
            .env("LANG", "C.UTF-8")
            .env("PGPASSWORD", secret(&row, "password"))
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "slipway-explain")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| AddonError::Unavailable(format!("cannot run psql: {e}")))?;
        if !out.status.success() {
            return Err(AddonError::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

/// The host's load per CPU: red above 2, yellow above 1.
fn load_check() -> Check {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    match load {
        None => Check {
            name: "Load".into(),
            status: postgres::Grade::Skipped,
            message: Some("The host's load is not available.".into()),
            results: Table::default(),
        },
        Some(l) => {
            let per_cpu = l / cpus;
            let status = if per_cpu > 2.0 {
                postgres::Grade::Red
            } else if per_cpu > 1.0 {
                postgres::Grade::Yellow
            } else {
                postgres::Grade::Green
            };
            Check {
                name: "Load".into(),
                status,
                message: (status != postgres::Grade::Green)
                    .then(|| format!("Load {l:.2} on {cpus} CPUs.")),
                results: Table {
                    columns: vec!["load_1m".into(), "cpus".into()],
                    rows: vec![vec![Some(format!("{l:.2}")), Some(cpus.to_string())]],
                },
            }
        }
    }
}

/// How a new database is made from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// A read-only streaming replica (`--follow`).
    Follower,
    /// A writable copy as of now (`--fork`).
    Fork,
}

const FOLLOWING: &str = "following";
const SLOT: &str = "slot";

impl Addons {
    /// The names of the add-ons following `addon_id`.
    pub async fn followers_of(&self, addon_id: &str) -> Vec<String> {
        let mut out = Vec::new();
        for row in self.inner.store.addon_servers().await.unwrap_or_default() {
            if row.settings.get(FOLLOWING).map(String::as_str) == Some(addon_id) {
                if let Ok(Some(a)) = self.inner.store.addon(&row.addon_id).await {
                    out.push(a.name);
                }
            }
        }
        out
    }

    /// The add-on a follower follows, if it is one.
    pub async fn leader_of(&self, addon: &AddonRow) -> Option<String> {
        let row = self.server_row(addon).await.ok()?;
        row.settings.get(FOLLOWING).cloned()
    }

    /// Makes the source's replication role (once) and lets it in.
    async fn replication_login(
        &self,
        source: &AddonRow,
    ) -> Result<(AddonServerRow, String, String), AddonError> {
        let (mut row, psql) = self.postgres_addon(source).await?;
        // Rewrites the source's settings and access rules (which let replication in from this
        // host, for clusters made before they did); the reload below applies them.
        let (_, plan) = self.service_of(source)?;
        self.postgres_spec(source, &row, plan)?;
        let (user, password) = match (
            row.secrets.get("repl_user"),
            row.secrets.get("repl_password"),
        ) {
            (Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => {
                let (u, p) = (postgres::ident('r'), random_secret());
                psql.exec(
                    "postgres",
                    &format!("CREATE ROLE {u} REPLICATION LOGIN PASSWORD '{p}';"),
                )
                .await?;
                row.secrets.insert("repl_user".into(), u.clone());
                row.secrets.insert("repl_password".into(), p.clone());
                self.inner
                    .store
                    .set_addon_server(&source.id, &row.secrets, &row.settings)
                    .await?;
                (u, p)
            }
        };
        psql.exec("postgres", "SELECT pg_reload_conf();").await?;
        Ok((row, user, password))
    }

    /// Provisions a Postgres add-on as a follower or a fork of `source`.
    pub async fn provision_postgres_copy(
        &self,
        addon: &AddonRow,
        source: &AddonRow,
        kind: CopyKind,
    ) -> Result<BTreeMap<String, String>, AddonError> {
        let (service, _) = self.service_of(source)?;
        if service.kind != Kind::Postgres || source.state != "provisioned" {
            return Err(AddonError::Refused(format!(
                "{} is not a provisioned Heroku Postgres database.",
                source.name
            )));
        }
        if kind == CopyKind::Follower && self.leader_of(source).await.is_some() {
            return Err(AddonError::Refused(format!(
                "{} is itself a follower; followers of followers are not supported. Follow its \
                 leader instead.",
                source.name
            )));
        }
        let (_, plan) = self.service_of(addon)?;
        let plan = plan.clone();
        let user = self.service_user("postgres")?;
        let (source_row, repl_user, repl_password) = self.replication_login(source).await?;
        let dir = self.dir(&addon.id);
        crate::make_dir(&dir, user)?;
        for sub in ["run", "log"] {
            crate::make_dir(&dir.join(sub), user)?;
        }
        let slot = format!("f_{}", addon.id.replace('-', ""));
        let source_psql = self.psql(source, &source_row);
        if kind == CopyKind::Follower {
            source_psql
                .exec(
                    "postgres",
                    &format!("SELECT pg_create_physical_replication_slot('{slot}');"),
                )
                .await?;
        }
        let mut base =
            tokio::process::Command::new(self.inner.cfg.postgres_bin.join("pg_basebackup"));
        base.args([
            "-h",
            "127.0.0.1",
            "-p",
            &source_row.port.to_string(),
            "-U",
            &repl_user,
            "-D",
        ])
        .arg(dir.join("pgdata"))
        .args(["-X", "stream", "--checkpoint=fast", "--no-password"])
        .current_dir(&dir)
        .env_clear()
        .env("LANG", "C.UTF-8")
        .env("PGPASSWORD", &repl_password)
        .kill_on_drop(true);
        if kind == CopyKind::Follower {
            base.args(["-S", &slot, "-R"]);
        }
        if let Err(e) = run_pg(base, user, "pg_basebackup").await {
            if kind == CopyKind::Follower {
                let _ = source_psql
                    .exec(
                        "postgres",
                        &format!("SELECT pg_drop_replication_slot('{slot}');"),
                    )
                    .await;
            }
            return Err(e);
        }
        // The copy is the source's: same roles and database. A fork gets its own password.
        let mut secrets = source_row.secrets.clone();
        secrets.remove("repl_user");
        secrets.remove("repl_password");
        let mut settings = BTreeMap::new();
        if kind == CopyKind::Follower {
            settings.insert(FOLLOWING.to_string(), source.id.clone());
            settings.insert(SLOT.to_string(), slot.clone());
        }
        let mut row = AddonServerRow {
            addon_id: addon.id.clone(),
            kind: "postgres".into(),
            port: 0,
            secrets,
            settings,
            created_at: chrono::Utc::now(),
        };
        self.claim_port(&mut row).await?;
        self.wait_postgres(addon, &row).await?;
        let psql = self.psql(addon, &row);
        if kind == CopyKind::Fork {
            let password = random_secret();
            psql.exec(
                "postgres",
                &format!(
                    "ALTER ROLE {} PASSWORD '{password}';\nDROP ROLE IF EXISTS {};",
                    secret(&row, "user"),
                    repl_user
                ),
            )
            .await?;
            row.secrets.insert("password".into(), password);
            self.inner
                .store
                .set_addon_server(&addon.id, &row.secrets, &row.settings)
                .await?;
            let _ = plan;
        }
        self.follow_postgres_log(addon);
        Ok(self.app_config(&row))
    }

    /// How far a follower is behind its leader: (leader add-on id, bytes of WAL not yet
    /// replayed).
    pub async fn follower_lag(&self, addon: &AddonRow) -> Option<(String, u64)> {
        let row = self.server_row(addon).await.ok()?;
        let leader_id = row.settings.get(FOLLOWING)?.clone();
        let slot = row.settings.get(SLOT)?.clone();
        let leader = self.inner.store.addon(&leader_id).await.ok()??;
        let leader_row = self.server_row(&leader).await.ok()?;
        let lag = self
            .psql(&leader, &leader_row)
            .value(
                "postgres",
                &format!(
                    "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), \
                     (SELECT replay_lsn FROM pg_stat_replication r JOIN pg_replication_slots s \
                      ON s.active_pid = r.pid WHERE s.slot_name = '{slot}')), -1)::bigint"
                ),
            )
            .await
            .ok()??
            .parse::<i64>()
            .ok()?;
        Some((leader.name, lag.max(0) as u64))
    }

    /// `pg:unfollow`: promotes a follower to a writable database and drops its slot on the
    /// leader.
    pub async fn pg_unfollow(&self, addon: &AddonRow) -> Result<(), AddonError> {
        let (mut row, psql) = self.postgres_addon(addon).await?;
        let (Some(leader_id), Some(slot)) = (
            row.settings.get(FOLLOWING).cloned(),
            row.settings.get(SLOT).cloned(),
        ) else {
            return Err(AddonError::Refused(format!(
                "{} is not a follower.",
                addon.name
            )));
        };
        psql.exec("postgres", "SELECT pg_promote(true, 60);")
            .await?;
        row.settings.remove(FOLLOWING);
        row.settings.remove(SLOT);
        self.inner
            .store
            .set_addon_server(&addon.id, &row.secrets, &row.settings)
            .await?;
        self.drop_slot(&leader_id, &slot).await;
        Ok(())
    }

    /// Drops a follower's slot on its leader once the follower has let go of it.
    pub(crate) async fn drop_slot(&self, leader_id: &str, slot: &str) {
        let Ok(Some(leader)) = self.inner.store.addon(leader_id).await else {
            return;
        };
        let Ok(leader_row) = self.server_row(&leader).await else {
            return;
        };
        let psql = self.psql(&leader, &leader_row);
        for _ in 0..50 {
            let sql = format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}' AND NOT active;"
            );
            if psql.exec("postgres", &sql).await.is_ok() {
                let left = psql
                    .value(
                        "postgres",
                        &format!(
                            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
                        ),
                    )
                    .await;
                if matches!(left.as_ref().map(|v| v.as_deref()), Ok(Some("0"))) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!(leader = %leader.name, slot, "Could not drop a follower's replication slot.");
    }
}

impl Addons {
    /// Takes a base backup of a protected cluster into `<dir>/base/<unix seconds>` (plain
    /// format, with the WAL it needs), then prunes base backups and archived WAL older than
    /// the plan's rollback window (the newest base backup is always kept).
    pub async fn base_backup(&self, addon: &AddonRow) -> Result<(), AddonError> {
        let (row, _) = self.postgres_addon(addon).await?;
        let (_, plan) = self.service_of(addon)?;
        let Some(window) = rollback_window(plan) else {
            return Ok(());
        };
        let dir = self.dir(&addon.id);
        let user = self.service_user("postgres")?;
        crate::make_dir(&dir.join("base"), user)?;
        let started = chrono::Utc::now().timestamp();
        let target = dir.join("base").join(started.to_string());
        let mut cmd =
            tokio::process::Command::new(self.inner.cfg.postgres_bin.join("pg_basebackup"));
        cmd.args(["-h"])
            .arg(dir.join("run"))
            .args(["-p", &row.port.to_string(), "-U", "postgres", "-D"])
            .arg(&target)
            .args(["-X", "stream", "--checkpoint=fast", "--no-password"])
            .current_dir(&dir)
            .env_clear()
            .env("LANG", "C.UTF-8")
            .kill_on_drop(true);
        if let Err(e) = run_pg(cmd, user, "pg_basebackup").await {
            let _ = std::fs::remove_dir_all(&target);
            return Err(e);
        }
        // Prune: base backups older than the window, but never the newest; then the WAL the
        // oldest remaining one no longer needs.
        let oldest_allowed = (chrono::Utc::now() - window).timestamp();
        let mut bases = self.base_backups(addon);
        bases.sort();
        let newest = bases.last().copied();
        for b in &bases {
            if *b < oldest_allowed && Some(*b) != newest {
                let _ = std::fs::remove_dir_all(dir.join("base").join(b.to_string()));
            }
        }
        if let Some(oldest) = self.base_backups(addon).into_iter().min() {
            let label = std::fs::read_to_string(
                dir.join("base")
                    .join(oldest.to_string())
                    .join("backup_label"),
            )
            .unwrap_or_default();
            // "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)"
            if let Some(file) = label
                .lines()
                .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
                .and_then(|l| l.split("(file ").nth(1))
                .map(|f| f.trim_end_matches(')').to_string())
            {
                let _ = tokio::process::Command::new(
                    self.inner.cfg.postgres_bin.join("pg_archivecleanup"),
                )
                .arg(dir.join("wal-archive"))
                .arg(file)
                .output()
                .await;
            }
        }
        Ok(())
    }

    /// Start times (unix seconds) of a cluster's base backups.
    fn base_backups(&self, addon: &AddonRow) -> Vec<i64> {
        std::fs::read_dir(self.dir(&addon.id).join("base"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("backup_label").exists())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// Takes each protected cluster's daily base backup when it is due.
    pub(crate) fn watch_base_backups(&self) {
        let this = self.clone();
        let mut stop = self.inner.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                let Ok(addons) = this.inner.store.all_addons().await else {
                    return;
                };
                for addon in addons {
                    if addon.state != "provisioned" {
                        continue;
                    }
                    let Ok((service, plan)) = this.service_of(&addon) else {
                        continue;
                    };
                    if service.kind != Kind::Postgres || !protected(plan) {
                        continue;
                    }
                    if this.leader_of(&addon).await.is_some() {
                        continue;
                    }
                    let newest = this.base_backups(&addon).into_iter().max().unwrap_or(0);
                    if chrono::Utc::now().timestamp() - newest >= 24 * 3600 {
                        let _guard = this.lock(&addon.id).await;
                        if let Err(e) = this.base_backup(&addon).await {
                            tracing::warn!(addon = %addon.name, error = %e, "Base backup failed.");
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(600)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    /// `--rollback DATABASE --to TIME`: a new database as `source` was at `to`, recovered from
    /// its newest base backup before that time and its WAL archive; the source is untouched.
    pub async fn provision_postgres_rollback(
        &self,
        addon: &AddonRow,
        source: &AddonRow,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<String, String>, AddonError> {
        let (source_row, source_psql) = self.postgres_addon(source).await?;
        let (_, source_plan) = self.service_of(source)?;
        let Some(window) = rollback_window(source_plan) else {
            return Err(AddonError::Refused(format!(
                "{} is on the {} plan, which has no rollback. Standard and premium plans keep \
                 4 and 7 days.",
                source.name, source_plan.name
            )));
        };
        let now = chrono::Utc::now();
        let bases = self.base_backups(source);
        let earliest = bases
            .iter()
            .copied()
            .min()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.max(now - window));
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let Some(earliest) = earliest else {
            return Err(AddonError::Refused(format!(
                "{} has no base backup yet to roll back from.",
                source.name
            )));
        };
        if to < earliest || to > now {
            return Err(AddonError::Refused(format!(
                "{} can be rolled back to a time between {} and {} (its rollback window).",
                source.name,
                fmt(earliest),
                fmt(now)
            )));
        }
        let base = bases
            .iter()
            .copied()
            .filter(|b| *b <= to.timestamp())
            .max()
            .ok_or_else(|| {
                AddonError::Refused(format!(
                    "No base backup of {} precedes {}.",
                    source.name,
                    fmt(to)
                ))
            })?;
        // A commit after the target (recovery stops at the first one at or after it), then
        // everything up to now to the archive, so the recovery finds its target.
        source_psql
            .value("postgres", "SELECT txid_current()")
            .await?;
        let segment = source_psql
            .value("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
            .await?
            .unwrap_or_default();
        let archive = self.dir(&source.id).join("wal-archive");
        for _ in 0..300 {
            if archive.join(&segment).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let user = self.service_user("postgres")?;
        let dir = self.dir(&addon.id);
        crate::make_dir(&dir, user)?;
        for sub in ["run", "log"] {
            crate::make_dir(&dir.join(sub), user)?;
        }
        let out = tokio::process::Command::new("cp")
            .arg("-a")
            .arg(self.dir(&source.id).join("base").join(base.to_string()))
            .arg(dir.join("pgdata"))
            .output()
            .await
            .map_err(|e| AddonError::Io(format!("copying the base backup: {e}")))?;
        if !out.status.success() {
            return Err(AddonError::Io(format!(
                "copying the base backup: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        write_owned_file(&dir.join("pgdata/recovery.signal"), "", user)?;
        let mut secrets = source_row.secrets.clone();
        secrets.remove("repl_user");
        secrets.remove("repl_password");
        let mut row = AddonServerRow {
            addon_id: addon.id.clone(),
            kind: "postgres".into(),
            port: 0,
            secrets,
            settings: BTreeMap::from([
                (RECOVER_FROM.to_string(), archive.display().to_string()),
                (
                    RECOVER_TO.to_string(),
                    to.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
                ),
            ]),
            created_at: chrono::Utc::now(),
        };
        self.claim_port(&mut row).await?;
        self.wait_postgres(addon, &row).await?;
        let psql = self.psql(addon, &row);
        // Recovery ends at the target and the cluster is promoted: wait for it to take writes.
        let mut promoted = false;
        for _ in 0..600 {
            if psql
                .value("postgres", "SELECT pg_is_in_recovery()")
                .await?
                .as_deref()
                == Some("f")
            {
                promoted = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !promoted {
            return Err(AddonError::Unavailable(
                "the rollback did not finish recovering within a minute".into(),
            ));
        }
        // From now on it is a database of its own: no recovery settings, its own password.
        row.settings.clear();
        let password = random_secret();
        psql.exec(
            "postgres",
            &format!("ALTER ROLE {} PASSWORD '{password}';", secret(&row, "user")),
        )
        .await?;
        row.secrets.insert("password".into(), password);
        self.inner
            .store
            .set_addon_server(&addon.id, &row.secrets, &row.settings)
            .await?;
        let (_, plan) = self.service_of(addon)?;
        let spec = self.postgres_spec(addon, &row, plan)?;
        if let Some(server) = self.running(&addon.id) {
            server.set_spec(spec);
        }
        let _ = self.base_backup(addon).await;
        self.follow_postgres_log(addon);
        Ok(self.app_config(&row))
    }
}

/// Runs one of PostgreSQL's programs, as the service's user when given; a failure says what the
/// program printed.
async fn run_pg(
    mut cmd: tokio::process::Command,
    user: Option<(u32, u32)>,
    what: &str,
) -> Result<(), AddonError> {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| AddonError::Unavailable(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(AddonError::Unavailable(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn write_owned_file(
    path: &std::path::Path,
    text: &str,
    user: Option<(u32, u32)>,
) -> Result<(), AddonError> {
    crate::write_owned(path, text, user)
}
