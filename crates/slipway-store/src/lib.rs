//! Slipway's persistent state: accounts and API keys, apps, slugs, releases and formation, and
//! what the router needs per app (custom domains, SNI certificates, router timeouts), and log drains.
//!
//! [`Store`] wraps an SQLite database in WAL mode under the data dir. Every write that has to be
//! atomic (a new release number, a formation batch) runs in one transaction. Rows come back as the
//! plain `*Row` structs below; the API turns them into Heroku's wire shapes.

mod addons;
mod backups;
mod collaborators;
mod dataclips;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

pub use addons::{AddonRow, AddonServerRow, AttachmentRow, NewAddon};
pub use backups::{BackupRow, BackupScheduleRow};
use chrono::{DateTime, Utc};
pub use collaborators::CollaboratorRow;
pub use dataclips::{DataclipRow, NewDataclip};
use slipway_types::ConfigVars;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_stacks.sql"),
    include_str!("../migrations/0003_dyno_manager.sql"),
    include_str!("../migrations/0004_routing.sql"),
    include_str!("../migrations/0005_log_drains.sql"),
    include_str!("../migrations/0006_log_retention.sql"),
    include_str!("../migrations/0007_addons.sql"),
    include_str!("../migrations/0008_pg_backups.sql"),
    include_str!("../migrations/0009_pg_diagnose.sql"),
    include_str!("../migrations/0010_dataclips.sql"),
    include_str!("../migrations/0011_collaborators.sql"),
];

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    /// The first account, the owner: it adds the others.
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AppRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub owner_email: String,
    /// Buildpack URLs or built-in names, in order; empty means detect.
    pub buildpacks: Vec<String>,
    /// The stack the next build runs on.
    pub stack: String,
    /// The router answers 503 (H80) while on.
    pub maintenance: bool,
    /// Seconds a web dyno has to bind `$PORT`; `None` means the server's default.
    pub boot_timeout: Option<u32>,
    /// Daily dyno cycling: `daily`, `off`, or `HH:MM` (UTC).
    pub cycling: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct SlugRow {
    pub id: String,
    pub app_id: String,
    /// SHA-256 of the compressed slug; its key in the slug store.
    pub sha256: String,
    pub size: u64,
    pub commit: Option<String>,
    pub buildpack_description: Option<String>,
    /// Process type → command.
    pub process_types: BTreeMap<String, String>,
    /// The stack it was built on; its dynos run there.
    pub stack: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ReleaseRow {
    pub id: String,
    pub app_id: String,
    pub version: i64,
    pub slug_id: Option<String>,
    pub config: ConfigVars,
    pub description: String,
    pub status: String,
    pub user_email: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a new slug is.
#[derive(Debug, Clone)]
pub struct NewSlug<'a> {
    /// SHA-256 of the compressed slug.
    pub sha256: &'a str,
    pub size: u64,
    pub commit: Option<&'a str>,
    pub buildpack_description: Option<&'a str>,
    pub process_types: &'a BTreeMap<String, String>,
    /// The stack it was built on.
    pub stack: &'a str,
}

/// Where a new release's config vars come from. Inheriting and patching read the current
/// release inside the same transaction, so concurrent changes are never lost.
#[derive(Debug, Clone)]
pub enum ReleaseConfig {
    /// The current release's config vars (a deploy).
    Inherit,
    /// The current config vars with these set (`Some`) or removed (`None`).
    Patch(BTreeMap<String, Option<String>>),
    /// Exactly these (a rollback).
    Exactly(ConfigVars),
}

/// Which slug a new release runs.
#[derive(Debug, Clone)]
pub enum ReleaseSlug {
    /// The current release's slug (a config change).
    Inherit,
    /// This one (a deploy or a rollback).
    Exactly(Option<String>),
}

/// What a new release is made of.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub slug: ReleaseSlug,
    pub config: ReleaseConfig,
    pub description: String,
    pub user_email: String,
    pub user_id: String,
}

#[derive(Debug, Clone)]
pub struct FormationRow {
    pub id: String,
    pub app_id: String,
    pub process_type: String,
    pub quantity: u32,
    pub size: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A custom domain of an app.
#[derive(Debug, Clone)]
pub struct DomainRow {
    pub id: String,
    pub app_id: String,
    /// Lower case; unique across apps. May start with `*.`.
    pub hostname: String,
    /// `custom` (the `heroku` domain is not stored).
    pub kind: String,
    /// The DNS target users point their CNAME (or ALIAS) at.
    pub cname: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A log drain of an app. Its `Debug` leaves the URL out (it may hold a password).
#[derive(Clone)]
pub struct LogDrainRow {
    pub id: String,
    pub app_id: String,
    /// As given: `syslog://`, `syslog+tls://` or `https://user:pass@host/path`.
    pub url: String,
    /// `d.<uuid>`.
    pub token: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for LogDrainRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDrainRow")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A certificate an app serves by SNI. Its `Debug` leaves the private key out.
#[derive(Clone)]
pub struct SniEndpointRow {
    pub id: String,
    pub app_id: String,
    /// Heroku-style (`quiet-heron-48213`), unique per app.
    pub name: String,
    /// PEM, leaf first.
    pub certificate_chain: String,
    /// PEM. Never in API answers or logs.
    pub private_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for SniEndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniEndpointRow")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Router timeouts for requests under a path prefix; `None` inherits (`/` from the defaults,
/// other prefixes from `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterTimeoutRow {
    /// `/` is app-wide.
    pub path: String,
    pub response_secs: Option<u32>,
    pub idle_secs: Option<u32>,
}

/// The default dyno size of a new process type.
pub const DEFAULT_SIZE: &str = "basic";

/// Handle to the state database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn ts(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
    let s: String = row.try_get(col)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn json<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Maps of strings always serialise.
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- accounts -------------------------------------------------------------------------

    fn account_row(row: &SqliteRow) -> Result<AccountRow> {
        Ok(AccountRow {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            admin: row.try_get::<i64, _>("admin")? != 0,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    /// Number of accounts; zero on a fresh data dir.
    pub async fn account_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Adds an account; the first one is the admin.
    pub async fn create_account(&self, email: &str, name: Option<&str>) -> Result<AccountRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO accounts (id, email, name, created_at, updated_at, admin) \
             VALUES (?, ?, ?, ?, ?, (SELECT COUNT(*) = 0 FROM accounts))",
        )
        .bind(&id)
        .bind(email)
        .bind(name)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("account {email}"))
            } else {
                e.into()
            }
        })?;
        self.account(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("account vanished".into()))
    }

    pub async fn account(&self, id: &str) -> Result<Option<AccountRow>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    pub async fn accounts(&self) -> Result<Vec<AccountRow>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY created_at, rowid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::account_row).collect()
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<AccountRow>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    /// Records an API key by its hash.
    pub async fn add_api_key(
        &self,
        account_id: &str,
        key_hash: &str,
        description: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO api_keys (key_hash, account_id, description, created_at) VALUES (?, ?, ?, ?)")
            .bind(key_hash)
            .bind(account_id)
            .bind(description)
            .bind(now().to_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An account's API keys: (hash, description, created at).
    pub async fn api_keys(&self, account_id: &str) -> Result<Vec<(String, String, DateTime<Utc>)>> {
        let rows = sqlx::query(
            "SELECT key_hash, description, created_at FROM api_keys WHERE account_id = ? \
             ORDER BY created_at",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("key_hash")?,
                    r.try_get("description")?,
                    ts(r, "created_at")?,
                ))
            })
            .collect()
    }

    pub async fn delete_api_key(&self, key_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn account_by_key_hash(&self, key_hash: &str) -> Result<Option<AccountRow>> {
        let row = sqlx::query(
            "SELECT a.* FROM accounts a JOIN api_keys k ON k.account_id = a.id WHERE k.key_hash = ?",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::account_row).transpose()
    }

    // ---- apps -----------------------------------------------------------------------------

    fn app_row(row: &SqliteRow) -> Result<AppRow> {
        Ok(AppRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            owner_id: row.try_get("owner_id")?,
            owner_email: row.try_get("owner_email")?,
            buildpacks: json(row, "buildpacks")?,
            stack: row.try_get("stack")?,
            maintenance: row.try_get::<i64, _>("maintenance")? != 0,
            boot_timeout: row
                .try_get::<Option<i64>, _>("boot_timeout")?
                .map(|v| v.clamp(0, u32::MAX as i64) as u32),
            cycling: row.try_get("cycling")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    const APP_SELECT: &'static str =
        "SELECT apps.*, accounts.email AS owner_email FROM apps JOIN accounts ON accounts.id = apps.owner_id";

    /// Creates an app and its v1 "Initial release" with no slug and no config.
    pub async fn create_app(&self, name: &str, owner: &AccountRow) -> Result<AppRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO apps (id, name, owner_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(name)
        .bind(&owner.id)
        .bind(&t)
        .bind(&t)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("app {name}"))
            } else {
                e.into()
            }
        })?;
        sqlx::query(
            "INSERT INTO releases (id, app_id, version, slug_id, config, description, status, user_email, user_id, created_at, updated_at) \
             VALUES (?, ?, 1, NULL, '{}', 'Initial release', 'succeeded', ?, ?, ?, ?)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&id)
        .bind(&owner.email)
        .bind(&owner.id)
        .bind(&t)
        .bind(&t)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.app(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("app vanished".into()))
    }

    /// Finds an app by id or by name.
    pub async fn app(&self, name_or_id: &str) -> Result<Option<AppRow>> {
        let sql = format!("{} WHERE apps.id = ? OR apps.name = ?", Self::APP_SELECT);
        let row = sqlx::query(&sql)
            .bind(name_or_id)
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::app_row).transpose()
    }

    /// All apps, by name.
    pub async fn apps(&self) -> Result<Vec<AppRow>> {
        let sql = format!("{} ORDER BY apps.name", Self::APP_SELECT);
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(Self::app_row).collect()
    }

    pub async fn delete_app(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Attachments to this app, then add-ons billed to it (their providers are the caller's
        // to deprovision first) with whatever still refers to them.
        sqlx::query("DELETE FROM addon_attachments WHERE app_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for sql in [
            "DELETE FROM pg_backup_links WHERE backup_id IN (SELECT id FROM pg_backups WHERE app_id = ?)",
            "DELETE FROM pg_backups WHERE app_id = ?",
            "DELETE FROM pg_diagnose_reports WHERE app_id = ?",
            "DELETE FROM pg_backup_schedules WHERE app_id = ?",
            "DELETE FROM addon_attachments WHERE addon_id IN (SELECT id FROM addons WHERE app_id = ?)",
            "DELETE FROM addon_servers WHERE addon_id IN (SELECT id FROM addons WHERE app_id = ?)",
            "DELETE FROM addons WHERE app_id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        for table in [
            "app_features",
            "domains",
            "log_drains",
            "sni_endpoints",
            "router_timeouts",
            "formation",
            "releases",
            "slugs",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE app_id = ?"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM apps WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets the stack the app's next build runs on.
    pub async fn set_stack(&self, app_id: &str, stack: &str) -> Result<()> {
        sqlx::query("UPDATE apps SET stack = ?, updated_at = ? WHERE id = ?")
            .bind(stack)
            .bind(now().to_rfc3339())
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Turns maintenance mode on or off.
    pub async fn set_maintenance(&self, app_id: &str, on: bool) -> Result<()> {
        self.set_app_column(app_id, "maintenance", on as i64).await
    }

    /// Sets the boot timeout in seconds (`None`: the server's default).
    pub async fn set_boot_timeout(&self, app_id: &str, secs: Option<u32>) -> Result<()> {
        sqlx::query("UPDATE apps SET boot_timeout = ?, updated_at = ? WHERE id = ?")
            .bind(secs.map(i64::from))
            .bind(now().to_rfc3339())
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How much of an app's log history is kept: (bytes, seconds); `None` = the default.
    pub async fn log_retention(&self, app_id: &str) -> Result<(Option<u64>, Option<u64>)> {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT log_max_bytes, log_max_age_secs FROM apps WHERE id = ?")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await?;
        let (b, a) = row.unwrap_or((None, None));
        Ok((b.map(|v| v as u64), a.map(|v| v as u64)))
    }

    /// Sets how much of an app's log history is kept; `None` goes back to the default.
    pub async fn set_log_retention(
        &self,
        app_id: &str,
        max_bytes: Option<u64>,
        max_age_secs: Option<u64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE apps SET log_max_bytes = ?, log_max_age_secs = ?, updated_at = ? WHERE id = ?",
        )
        .bind(max_bytes.map(|v| v as i64))
        .bind(max_age_secs.map(|v| v as i64))
        .bind(now().to_rfc3339())
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets daily cycling: `daily`, `off` or `HH:MM` (validated by the caller).
    pub async fn set_cycling(&self, app_id: &str, cycling: &str) -> Result<()> {
        sqlx::query("UPDATE apps SET cycling = ?, updated_at = ? WHERE id = ?")
            .bind(cycling)
            .bind(now().to_rfc3339())
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_app_column(&self, app_id: &str, column: &str, value: i64) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE apps SET {column} = ?, updated_at = ? WHERE id = ?"
        ))
        .bind(value)
        .bind(now().to_rfc3339())
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The features turned on for an app, with when.
    pub async fn features(&self, app_id: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows =
            sqlx::query("SELECT name, created_at FROM app_features WHERE app_id = ? ORDER BY name")
                .bind(app_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, ts(r, "created_at")?)))
            .collect()
    }

    /// Whether a feature is on for an app.
    pub async fn feature(&self, app_id: &str, name: &str) -> Result<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM app_features WHERE app_id = ? AND name = ?")
                .bind(app_id)
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        Ok(n > 0)
    }

    /// Turns a feature on or off for an app.
    pub async fn set_feature(&self, app_id: &str, name: &str, enabled: bool) -> Result<()> {
        if enabled {
            sqlx::query(
                "INSERT OR IGNORE INTO app_features (app_id, name, created_at) VALUES (?, ?, ?)",
            )
            .bind(app_id)
            .bind(name)
            .bind(now().to_rfc3339())
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM app_features WHERE app_id = ? AND name = ?")
                .bind(app_id)
                .bind(name)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub async fn set_buildpacks(&self, app_id: &str, buildpacks: &[String]) -> Result<()> {
        sqlx::query("UPDATE apps SET buildpacks = ?, updated_at = ? WHERE id = ?")
            .bind(to_json(&buildpacks))
            .bind(now().to_rfc3339())
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- log drains -----------------------------------------------------------------------

    fn log_drain_row(row: &SqliteRow) -> Result<LogDrainRow> {
        Ok(LogDrainRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            url: row.try_get("url")?,
            token: row.try_get("token")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    /// An app's log drains, oldest first.
    pub async fn log_drains(&self, app_id: &str) -> Result<Vec<LogDrainRow>> {
        let rows = sqlx::query("SELECT * FROM log_drains WHERE app_id = ? ORDER BY created_at, id")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::log_drain_row).collect()
    }

    /// Every app's log drains (to start them when the server starts).
    pub async fn all_log_drains(&self) -> Result<Vec<LogDrainRow>> {
        let rows = sqlx::query("SELECT * FROM log_drains ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::log_drain_row).collect()
    }

    /// One of an app's log drains, by id, URL or token.
    pub async fn log_drain(&self, app_id: &str, which: &str) -> Result<Option<LogDrainRow>> {
        let row = sqlx::query(
            "SELECT * FROM log_drains WHERE app_id = ? AND (id = ? OR url = ? OR token = ?)",
        )
        .bind(app_id)
        .bind(which)
        .bind(which)
        .bind(which)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::log_drain_row).transpose()
    }

    /// Adds a log drain with a new `d.<uuid>` token; [`StoreError::Conflict`] when the app has
    /// a drain with this URL already. The limit per app is the caller's to check.
    pub async fn create_log_drain(&self, app_id: &str, url: &str) -> Result<LogDrainRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        let token = format!("d.{}", uuid::Uuid::new_v4());
        sqlx::query(
            "INSERT INTO log_drains (id, app_id, url, token, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(url)
        .bind(&token)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("log drain".into())
            } else {
                e.into()
            }
        })?;
        self.log_drain(app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("log drain vanished".into()))
    }

    pub async fn delete_log_drain(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM log_drains WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- domains --------------------------------------------------------------------------

    fn domain_row(row: &SqliteRow) -> Result<DomainRow> {
        Ok(DomainRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            hostname: row.try_get("hostname")?,
            kind: row.try_get("kind")?,
            cname: row.try_get("cname")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    /// An app's custom domains, by host name.
    pub async fn domains(&self, app_id: &str) -> Result<Vec<DomainRow>> {
        let rows = sqlx::query("SELECT * FROM domains WHERE app_id = ? ORDER BY hostname")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::domain_row).collect()
    }

    /// A custom domain by host name, whichever app has it.
    pub async fn domain_by_hostname(&self, hostname: &str) -> Result<Option<DomainRow>> {
        let row = sqlx::query("SELECT * FROM domains WHERE hostname = ?")
            .bind(hostname)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::domain_row).transpose()
    }

    /// One of an app's custom domains, by id or host name.
    pub async fn domain(&self, app_id: &str, id_or_hostname: &str) -> Result<Option<DomainRow>> {
        let row =
            sqlx::query("SELECT * FROM domains WHERE app_id = ? AND (id = ? OR hostname = ?)")
                .bind(app_id)
                .bind(id_or_hostname)
                .bind(id_or_hostname.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::domain_row).transpose()
    }

    /// Adds a custom domain; [`StoreError::Conflict`] when any app has the host name already.
    pub async fn create_domain(
        &self,
        app_id: &str,
        hostname: &str,
        cname: &str,
    ) -> Result<DomainRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO domains (id, app_id, hostname, kind, cname, created_at, updated_at) \
             VALUES (?, ?, ?, 'custom', ?, ?, ?)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(hostname)
        .bind(cname)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("domain {hostname}"))
            } else {
                e.into()
            }
        })?;
        self.domain(app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("domain vanished".into()))
    }

    /// Marks a domain updated (a `PATCH` that changed nothing stored).
    pub async fn touch_domain(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE domains SET updated_at = ? WHERE id = ?")
            .bind(now().to_rfc3339())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_domain(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM domains WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- SNI endpoints --------------------------------------------------------------------

    fn sni_endpoint_row(row: &SqliteRow) -> Result<SniEndpointRow> {
        Ok(SniEndpointRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            name: row.try_get("name")?,
            certificate_chain: row.try_get("certificate_chain")?,
            private_key: row.try_get("private_key")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    /// An app's certificates, oldest first.
    pub async fn sni_endpoints(&self, app_id: &str) -> Result<Vec<SniEndpointRow>> {
        let rows =
            sqlx::query("SELECT * FROM sni_endpoints WHERE app_id = ? ORDER BY created_at, name")
                .bind(app_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(Self::sni_endpoint_row).collect()
    }

    /// One of an app's certificates, by id or name.
    pub async fn sni_endpoint(
        &self,
        app_id: &str,
        id_or_name: &str,
    ) -> Result<Option<SniEndpointRow>> {
        let row =
            sqlx::query("SELECT * FROM sni_endpoints WHERE app_id = ? AND (id = ? OR name = ?)")
                .bind(app_id)
                .bind(id_or_name)
                .bind(id_or_name)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::sni_endpoint_row).transpose()
    }

    /// Adds a certificate (checked by the caller); [`StoreError::Conflict`] when the app has
    /// one of that name.
    pub async fn create_sni_endpoint(
        &self,
        app_id: &str,
        name: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<SniEndpointRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO sni_endpoints (id, app_id, name, certificate_chain, private_key, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(name)
        .bind(certificate_chain)
        .bind(private_key)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("SNI endpoint {name}"))
            } else {
                e.into()
            }
        })?;
        self.sni_endpoint(app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("SNI endpoint vanished".into()))
    }

    /// Replaces a certificate's chain and key.
    pub async fn update_sni_endpoint(
        &self,
        id: &str,
        certificate_chain: &str,
        private_key: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sni_endpoints SET certificate_chain = ?, private_key = ?, updated_at = ? WHERE id = ?",
        )
        .bind(certificate_chain)
        .bind(private_key)
        .bind(now().to_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_sni_endpoint(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sni_endpoints WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- router timeouts ------------------------------------------------------------------

    /// An app's stored router timeouts, by path.
    pub async fn router_timeouts(&self, app_id: &str) -> Result<Vec<RouterTimeoutRow>> {
        let rows = sqlx::query(
            "SELECT path_prefix, response_secs, idle_secs FROM router_timeouts WHERE app_id = ? ORDER BY path_prefix",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        let secs = |v: Option<i64>| v.map(|v| v.clamp(0, u32::MAX as i64) as u32);
        rows.iter()
            .map(|r| {
                Ok(RouterTimeoutRow {
                    path: r.try_get("path_prefix")?,
                    response_secs: secs(r.try_get("response_secs")?),
                    idle_secs: secs(r.try_get("idle_secs")?),
                })
            })
            .collect()
    }

    /// Sets the timeouts of a path prefix (`None`: inherit).
    pub async fn set_router_timeout(&self, app_id: &str, t: &RouterTimeoutRow) -> Result<()> {
        let at = now().to_rfc3339();
        sqlx::query(
            "INSERT INTO router_timeouts (app_id, path_prefix, response_secs, idle_secs, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (app_id, path_prefix) DO UPDATE SET response_secs = excluded.response_secs, \
             idle_secs = excluded.idle_secs, updated_at = excluded.updated_at",
        )
        .bind(app_id)
        .bind(&t.path)
        .bind(t.response_secs.map(i64::from))
        .bind(t.idle_secs.map(i64::from))
        .bind(&at)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a path prefix's timeouts; whether there were any.
    pub async fn delete_router_timeout(&self, app_id: &str, path: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM router_timeouts WHERE app_id = ? AND path_prefix = ?")
            .bind(app_id)
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- slugs ----------------------------------------------------------------------------

    fn slug_row(row: &SqliteRow) -> Result<SlugRow> {
        Ok(SlugRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            sha256: row.try_get("sha256")?,
            size: row.try_get::<i64, _>("size")? as u64,
            commit: row.try_get("commit_sha")?,
            buildpack_description: row.try_get("buildpack_description")?,
            process_types: json(row, "process_types")?,
            stack: row.try_get("stack")?,
            created_at: ts(row, "created_at")?,
        })
    }

    pub async fn create_slug(&self, app_id: &str, new: NewSlug<'_>) -> Result<SlugRow> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO slugs (id, app_id, sha256, size, commit_sha, buildpack_description, process_types, stack, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(new.sha256)
        .bind(new.size as i64)
        .bind(new.commit)
        .bind(new.buildpack_description)
        .bind(to_json(new.process_types))
        .bind(new.stack)
        .bind(now().to_rfc3339())
        .execute(&self.pool)
        .await?;
        self.slug(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("slug vanished".into()))
    }

    pub async fn slug(&self, id: &str) -> Result<Option<SlugRow>> {
        let row = sqlx::query("SELECT * FROM slugs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::slug_row).transpose()
    }

    // ---- releases -------------------------------------------------------------------------

    fn release_row(row: &SqliteRow) -> Result<ReleaseRow> {
        Ok(ReleaseRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            version: row.try_get("version")?,
            slug_id: row.try_get("slug_id")?,
            config: json(row, "config")?,
            description: row.try_get("description")?,
            status: row.try_get("status")?,
            user_email: row.try_get("user_email")?,
            user_id: row.try_get("user_id")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    /// Adds the next numbered release, atomically: the version number, and any inherited slug or
    /// config vars, are read and written in one write transaction.
    pub async fn create_release(&self, app_id: &str, new: NewRelease) -> Result<ReleaseRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Built on the newest release that has not failed: one still in its release phase counts,
        // so a config change made meanwhile keeps its slug and the deploy keeps the change.
        let current = sqlx::query(
            "SELECT * FROM releases WHERE app_id = ? AND status != 'failed' ORDER BY version DESC LIMIT 1",
        )
        .bind(app_id)
        .fetch_optional(&mut *tx)
        .await?;
        let current = current.as_ref().map(Self::release_row).transpose()?;
        let config = match new.config {
            ReleaseConfig::Exactly(c) => c,
            ReleaseConfig::Inherit => current
                .as_ref()
                .map(|r| r.config.clone())
                .unwrap_or_default(),
            ReleaseConfig::Patch(changes) => {
                let mut c = current
                    .as_ref()
                    .map(|r| r.config.clone())
                    .unwrap_or_default();
                for (k, v) in changes {
                    match v {
                        Some(v) => c.insert(k, v),
                        None => c.remove(&k),
                    };
                }
                c
            }
        };
        let slug_id = match new.slug {
            ReleaseSlug::Exactly(s) => s,
            ReleaseSlug::Inherit => current.as_ref().and_then(|r| r.slug_id.clone()),
        };
        // A slug with a `release` process makes a pending release until its release phase passes.
        let process_types: Option<String> = match &slug_id {
            Some(sid) => {
                sqlx::query_scalar("SELECT process_types FROM slugs WHERE id = ?")
                    .bind(sid)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let has_release_phase = process_types
            .and_then(|p| serde_json::from_str::<BTreeMap<String, String>>(&p).ok())
            .is_some_and(|p| p.contains_key("release"));
        let status = if has_release_phase {
            "pending"
        } else {
            "succeeded"
        };
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app_id = ?",
        )
        .bind(app_id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO releases (id, app_id, version, slug_id, config, description, status, user_email, user_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(version)
        .bind(&slug_id)
        .bind(to_json(&config))
        .bind(&new.description)
        .bind(status)
        .bind(&new.user_email)
        .bind(&new.user_id)
        .bind(&t)
        .bind(&t)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE apps SET updated_at = ? WHERE id = ?")
            .bind(&t)
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.release(app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("release vanished".into()))
    }

    /// All releases of an app, oldest first.
    pub async fn releases(&self, app_id: &str) -> Result<Vec<ReleaseRow>> {
        let rows = sqlx::query("SELECT * FROM releases WHERE app_id = ? ORDER BY version")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::release_row).collect()
    }

    /// A release by id or by version number (`3` or `v3`).
    pub async fn release(&self, app_id: &str, id_or_version: &str) -> Result<Option<ReleaseRow>> {
        let version = id_or_version.trim_start_matches('v').parse::<i64>().ok();
        let row =
            sqlx::query("SELECT * FROM releases WHERE app_id = ? AND (id = ? OR version = ?)")
                .bind(app_id)
                .bind(id_or_version)
                .bind(version.unwrap_or(-1))
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(Self::release_row).transpose()
    }

    /// Marks a pending release `succeeded` or `failed` (after its release phase).
    pub async fn set_release_status(&self, release_id: &str, status: &str) -> Result<()> {
        sqlx::query("UPDATE releases SET status = ?, updated_at = ? WHERE id = ?")
            .bind(status)
            .bind(now().to_rfc3339())
            .bind(release_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Releases still pending, oldest first (their release phase has yet to finish).
    pub async fn pending_releases(&self) -> Result<Vec<ReleaseRow>> {
        let rows =
            sqlx::query("SELECT * FROM releases WHERE status = 'pending' ORDER BY app_id, version")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(Self::release_row).collect()
    }

    /// The newest release that has not failed: the one the next release is built on (see
    /// [`Store::create_release`]), which may still be in its release phase.
    pub async fn newest_release(&self, app_id: &str) -> Result<Option<ReleaseRow>> {
        let row = sqlx::query(
            "SELECT * FROM releases WHERE app_id = ? AND status != 'failed' ORDER BY version DESC LIMIT 1",
        )
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::release_row).transpose()
    }

    /// The newest succeeded release; every app has one from creation on.
    pub async fn current_release(&self, app_id: &str) -> Result<Option<ReleaseRow>> {
        let row = sqlx::query(
            "SELECT * FROM releases WHERE app_id = ? AND status = 'succeeded' ORDER BY version DESC LIMIT 1",
        )
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::release_row).transpose()
    }

    // ---- formation ------------------------------------------------------------------------

    fn formation_row(row: &SqliteRow) -> Result<FormationRow> {
        Ok(FormationRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            process_type: row.try_get("process_type")?,
            quantity: row.try_get::<i64, _>("quantity")?.max(0) as u32,
            size: row.try_get("size")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    /// The stored formation of an app, by process type.
    pub async fn formation(&self, app_id: &str) -> Result<Vec<FormationRow>> {
        let rows = sqlx::query("SELECT * FROM formation WHERE app_id = ? ORDER BY process_type")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::formation_row).collect()
    }

    /// Makes sure every process type has a formation entry. New types start at zero, except
    /// `web`, which starts at one, as on Heroku's first deploy.
    pub async fn ensure_formation(
        &self,
        app_id: &str,
        types: impl IntoIterator<Item = &str>,
    ) -> Result<()> {
        let t = now().to_rfc3339();
        // The release phase is not a formation process: it runs once per release.
        for ty in types.into_iter().filter(|t| *t != "release") {
            sqlx::query(
                "INSERT INTO formation (id, app_id, process_type, quantity, size, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, process_type) DO NOTHING",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(app_id)
            .bind(ty)
            .bind(if ty == "web" { 1 } else { 0 })
            .bind(DEFAULT_SIZE)
            .bind(&t)
            .bind(&t)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Sets quantities and sizes of several process types in one transaction.
    pub async fn update_formation(
        &self,
        app_id: &str,
        updates: &[(String, u32, Option<String>)],
    ) -> Result<()> {
        let t = now().to_rfc3339();
        let mut tx = self.pool.begin().await?;
        for (ty, quantity, size) in updates {
            sqlx::query(
                "INSERT INTO formation (id, app_id, process_type, quantity, size, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (app_id, process_type) DO UPDATE SET quantity = excluded.quantity, \
                 size = COALESCE(?, formation.size), updated_at = excluded.updated_at",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(app_id)
            .bind(ty)
            .bind(*quantity as i64)
            .bind(size.as_deref().unwrap_or(DEFAULT_SIZE))
            .bind(&t)
            .bind(&t)
            .bind(size.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn releases_are_numbered_and_survive_reopen() {
        let (dir, s) = store().await;
        let owner = s.create_account("owner@example.com", None).await.unwrap();
        let app = s.create_app("demo", &owner).await.unwrap();
        assert!(matches!(
            s.create_app("demo", &owner).await,
            Err(StoreError::Conflict(_))
        ));
        let mut config = ConfigVars::new();
        config.insert("A".into(), "1".into());
        let r = s
            .create_release(
                &app.id,
                NewRelease {
                    slug: ReleaseSlug::Exactly(None),
                    config: ReleaseConfig::Exactly(config.clone()),
                    description: "Set A config vars".into(),
                    user_email: owner.email.clone(),
                    user_id: owner.id.clone(),
                },
            )
            .await
            .unwrap();
        assert_eq!(r.version, 2);
        drop(s);
        let s = Store::open(&dir.path().join("state.db")).await.unwrap();
        let cur = s.current_release(&app.id).await.unwrap().unwrap();
        assert_eq!(cur.version, 2);
        assert_eq!(cur.config, config);
        // Concurrent patches are both kept.
        let patch = |k: &str| NewRelease {
            slug: ReleaseSlug::Inherit,
            config: ReleaseConfig::Patch(
                [(k.to_string(), Some("x".to_string()))]
                    .into_iter()
                    .collect(),
            ),
            description: format!("Set {k} config vars"),
            user_email: owner.email.clone(),
            user_id: owner.id.clone(),
        };
        let (a, b) = tokio::join!(
            s.create_release(&app.id, patch("P")),
            s.create_release(&app.id, patch("Q"))
        );
        let mut versions = [a.unwrap().version, b.unwrap().version];
        versions.sort();
        assert_eq!(versions, [3, 4]);
        let cur = s.current_release(&app.id).await.unwrap().unwrap();
        assert_eq!(cur.config.get("P").map(String::as_str), Some("x"));
        assert_eq!(cur.config.get("Q").map(String::as_str), Some("x"));
        assert_eq!(cur.config.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            s.release(&app.id, "v1").await.unwrap().unwrap().description,
            "Initial release"
        );
        assert_eq!(s.app("demo").await.unwrap().unwrap().id, app.id);
        assert_eq!(s.app(&app.id).await.unwrap().unwrap().name, "demo");
    }

    #[tokio::test]
    async fn formation_defaults_and_updates() {
        let (_dir, s) = store().await;
        let owner = s.create_account("owner@example.com", None).await.unwrap();
        let app = s.create_app("demo", &owner).await.unwrap();
        s.ensure_formation(&app.id, ["web", "worker"])
            .await
            .unwrap();
        let f = s.formation(&app.id).await.unwrap();
        assert_eq!((f[0].process_type.as_str(), f[0].quantity), ("web", 1));
        assert_eq!((f[1].process_type.as_str(), f[1].quantity), ("worker", 0));
        s.update_formation(&app.id, &[("web".into(), 3, Some("standard-2x".into()))])
            .await
            .unwrap();
        s.ensure_formation(&app.id, ["web"]).await.unwrap();
        let f = s.formation(&app.id).await.unwrap();
        assert_eq!((f[0].quantity, f[0].size.as_str()), (3, "standard-2x"));
    }

    #[tokio::test]
    async fn domains_certs_and_timeouts() {
        let (_dir, s) = store().await;
        let owner = s.create_account("owner@example.com", None).await.unwrap();
        let a = s.create_app("one", &owner).await.unwrap();
        let b = s.create_app("two", &owner).await.unwrap();
        let d = s
            .create_domain(&a.id, "www.example.com", "misty-river-abc123.example.net")
            .await
            .unwrap();
        assert_eq!(d.kind, "custom");
        // Host names are unique across apps.
        assert!(matches!(
            s.create_domain(&b.id, "www.example.com", "x").await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.domain(&a.id, "WWW.example.com")
                .await
                .unwrap()
                .unwrap()
                .id,
            d.id
        );
        assert!(s.domain(&b.id, &d.id).await.unwrap().is_none());
        let e = s
            .create_sni_endpoint(&a.id, "quiet-heron-1", "CHAIN", "SECRET-KEY")
            .await
            .unwrap();
        assert!(!format!("{e:?}").contains("SECRET-KEY"));
        assert!(matches!(
            s.create_sni_endpoint(&a.id, "quiet-heron-1", "C", "K")
                .await,
            Err(StoreError::Conflict(_))
        ));
        s.update_sni_endpoint(&e.id, "CHAIN2", "KEY2")
            .await
            .unwrap();
        let e = s
            .sni_endpoint(&a.id, "quiet-heron-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.certificate_chain, "CHAIN2");
        let t = RouterTimeoutRow {
            path: "/reports".into(),
            response_secs: Some(120),
            idle_secs: None,
        };
        s.set_router_timeout(&a.id, &t).await.unwrap();
        assert_eq!(s.router_timeouts(&a.id).await.unwrap(), vec![t]);
        assert!(s.delete_router_timeout(&a.id, "/reports").await.unwrap());
        assert!(!s.delete_router_timeout(&a.id, "/reports").await.unwrap());
        s.set_router_timeout(
            &a.id,
            &RouterTimeoutRow {
                path: "/".into(),
                response_secs: None,
                idle_secs: Some(5),
            },
        )
        .await
        .unwrap();
        // Deleting the app takes its domains (freeing the host name), certificates and timeouts.
        s.delete_app(&a.id).await.unwrap();
        assert!(s
            .domain_by_hostname("www.example.com")
            .await
            .unwrap()
            .is_none());
        assert!(s.sni_endpoints(&a.id).await.unwrap().is_empty());
        assert!(s.router_timeouts(&a.id).await.unwrap().is_empty());
        s.create_domain(&b.id, "www.example.com", "x")
            .await
            .unwrap();
    }
}
