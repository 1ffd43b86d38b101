//! Add-ons, their attachments to apps, and the servers built-in providers run for them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::{is_unique_violation, json, now, to_json, ts, Result, Store, StoreError};

/// An add-on: a resource of a service, billed to one app.
#[derive(Debug, Clone)]
pub struct AddonRow {
    pub id: String,
    pub name: String,
    /// The app it is billed to.
    pub app_id: String,
    pub app_name: String,
    /// The service's name (`heroku-postgresql`).
    pub service: String,
    /// The plan's name without the service (`essential-0`).
    pub plan: String,
    /// `provisioning`, `provisioned` or `deprovisioned`.
    pub state: String,
    pub provider_id: String,
    /// What the provider returned, by suffix: `{"URL": "..."}` gives `<ATTACHMENT>_URL`.
    pub config: BTreeMap<String, String>,
    pub provision_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An add-on seen by an app under a name.
#[derive(Debug, Clone)]
pub struct AttachmentRow {
    pub id: String,
    pub addon_id: String,
    pub addon_name: String,
    /// The app the add-on is billed to.
    pub addon_app_id: String,
    pub addon_app_name: String,
    pub app_id: String,
    pub app_name: String,
    /// `DATABASE`: the app gets `DATABASE_URL`.
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The server a built-in provider runs for an add-on.
#[derive(Debug, Clone)]
pub struct AddonServerRow {
    pub addon_id: String,
    /// `postgres` or `redis`.
    pub kind: String,
    pub port: u16,
    /// The provider's passwords (admin, tenant).
    pub secrets: BTreeMap<String, String>,
    /// Settings the user changed (`maxmemory_policy`).
    pub settings: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

/// A new add-on, before its provider is asked.
#[derive(Debug, Clone)]
pub struct NewAddon {
    pub name: String,
    pub app_id: String,
    pub service: String,
    pub plan: String,
}

const ADDON_SELECT: &str = "SELECT addons.*, apps.name AS app_name FROM addons \
     JOIN apps ON apps.id = addons.app_id";

const ATTACHMENT_SELECT: &str = "SELECT a.*, addons.name AS addon_name, \
     addons.app_id AS addon_app_id, billed.name AS addon_app_name, apps.name AS app_name \
     FROM addon_attachments a JOIN addons ON addons.id = a.addon_id \
     JOIN apps billed ON billed.id = addons.app_id JOIN apps ON apps.id = a.app_id";

impl Store {
    fn addon_row(row: &SqliteRow) -> Result<AddonRow> {
        Ok(AddonRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            app_id: row.try_get("app_id")?,
            app_name: row.try_get("app_name")?,
            service: row.try_get("service")?,
            plan: row.try_get("plan")?,
            state: row.try_get("state")?,
            provider_id: row.try_get("provider_id")?,
            config: json(row, "config")?,
            provision_message: row.try_get("provision_message")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    fn attachment_row(row: &SqliteRow) -> Result<AttachmentRow> {
        Ok(AttachmentRow {
            id: row.try_get("id")?,
            addon_id: row.try_get("addon_id")?,
            addon_name: row.try_get("addon_name")?,
            addon_app_id: row.try_get("addon_app_id")?,
            addon_app_name: row.try_get("addon_app_name")?,
            app_id: row.try_get("app_id")?,
            app_name: row.try_get("app_name")?,
            name: row.try_get("name")?,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    fn addon_server_row(row: &SqliteRow) -> Result<AddonServerRow> {
        let port: i64 = row.try_get("port")?;
        Ok(AddonServerRow {
            addon_id: row.try_get("addon_id")?,
            kind: row.try_get("kind")?,
            port: u16::try_from(port).map_err(|_| StoreError::Corrupt(format!("port {port}")))?,
            secrets: json(row, "secrets")?,
            settings: json(row, "settings")?,
            created_at: ts(row, "created_at")?,
        })
    }

    /// Records a new add-on (state `provisioning`) and its first attachments to its app, in one
    /// transaction. [`StoreError::Conflict`] when the name or an attachment name is taken.
    pub async fn create_addon(
        &self,
        new: &NewAddon,
        attachments: &[String],
    ) -> Result<(AddonRow, Vec<AttachmentRow>)> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        let conflict = |what: &str| {
            let what = what.to_string();
            move |e: sqlx::Error| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(what)
                } else {
                    e.into()
                }
            }
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO addons (id, name, app_id, service, plan, state, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'provisioning', ?, ?)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&new.app_id)
        .bind(&new.service)
        .bind(&new.plan)
        .bind(&t)
        .bind(&t)
        .execute(&mut *tx)
        .await
        .map_err(conflict("add-on name"))?;
        let mut ids = Vec::new();
        for name in attachments {
            let aid = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO addon_attachments (id, addon_id, app_id, name, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&aid)
            .bind(&id)
            .bind(&new.app_id)
            .bind(name)
            .bind(&t)
            .bind(&t)
            .execute(&mut *tx)
            .await
            .map_err(conflict("attachment name"))?;
            ids.push(aid);
        }
        tx.commit().await?;
        let addon = self
            .addon(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("add-on vanished".into()))?;
        let mut made = Vec::new();
        for aid in ids {
            if let Some(a) = self.attachment(&aid).await? {
                made.push(a);
            }
        }
        Ok((addon, made))
    }

    /// An add-on by id or name.
    pub async fn addon(&self, id_or_name: &str) -> Result<Option<AddonRow>> {
        let sql = format!("{ADDON_SELECT} WHERE addons.id = ? OR addons.name = ?");
        let row = sqlx::query(&sql)
            .bind(id_or_name)
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::addon_row).transpose()
    }

    /// The add-ons billed to an app or attached to it, oldest first.
    pub async fn addons_of_app(&self, app_id: &str) -> Result<Vec<AddonRow>> {
        let sql = format!(
            "{ADDON_SELECT} WHERE addons.app_id = ? OR addons.id IN \
             (SELECT addon_id FROM addon_attachments WHERE app_id = ?) \
             ORDER BY addons.created_at, addons.id"
        );
        let rows = sqlx::query(&sql)
            .bind(app_id)
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::addon_row).collect()
    }

    /// The add-ons billed to an app only.
    pub async fn addons_billed_to(&self, app_id: &str) -> Result<Vec<AddonRow>> {
        let sql =
            format!("{ADDON_SELECT} WHERE addons.app_id = ? ORDER BY addons.created_at, addons.id");
        let rows = sqlx::query(&sql).bind(app_id).fetch_all(&self.pool).await?;
        rows.iter().map(Self::addon_row).collect()
    }

    /// Every add-on, oldest first.
    pub async fn all_addons(&self) -> Result<Vec<AddonRow>> {
        let sql = format!("{ADDON_SELECT} ORDER BY addons.created_at, addons.id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(Self::addon_row).collect()
    }

    /// Marks an add-on provisioned with what its provider returned.
    pub async fn set_addon_provisioned(
        &self,
        id: &str,
        provider_id: &str,
        config: &BTreeMap<String, String>,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE addons SET state = 'provisioned', provider_id = ?, config = ?, \
             provision_message = ?, updated_at = ? WHERE id = ?",
        )
        .bind(provider_id)
        .bind(to_json(config))
        .bind(message)
        .bind(now().to_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_addon_plan(&self, id: &str, plan: &str) -> Result<()> {
        sqlx::query("UPDATE addons SET plan = ?, updated_at = ? WHERE id = ?")
            .bind(plan)
            .bind(now().to_rfc3339())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_addon_config(
        &self,
        id: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<()> {
        sqlx::query("UPDATE addons SET config = ?, updated_at = ? WHERE id = ?")
            .bind(to_json(config))
            .bind(now().to_rfc3339())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes an add-on with its attachments and server record.
    pub async fn delete_addon(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM pg_backup_schedules WHERE addon_id = ?",
            "DELETE FROM addon_attachments WHERE addon_id = ?",
            "DELETE FROM addon_servers WHERE addon_id = ?",
            "DELETE FROM addons WHERE id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// An attachment by id.
    pub async fn attachment(&self, id: &str) -> Result<Option<AttachmentRow>> {
        let sql = format!("{ATTACHMENT_SELECT} WHERE a.id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::attachment_row).transpose()
    }

    /// An app's attachment by id or name.
    pub async fn app_attachment(&self, app_id: &str, which: &str) -> Result<Option<AttachmentRow>> {
        let sql = format!("{ATTACHMENT_SELECT} WHERE a.app_id = ? AND (a.id = ? OR a.name = ?)");
        let row = sqlx::query(&sql)
            .bind(app_id)
            .bind(which)
            .bind(which)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::attachment_row).transpose()
    }

    /// An app's attachments, oldest first.
    pub async fn attachments_of_app(&self, app_id: &str) -> Result<Vec<AttachmentRow>> {
        let sql = format!("{ATTACHMENT_SELECT} WHERE a.app_id = ? ORDER BY a.created_at, a.rowid");
        let rows = sqlx::query(&sql).bind(app_id).fetch_all(&self.pool).await?;
        rows.iter().map(Self::attachment_row).collect()
    }

    /// An add-on's attachments, oldest first.
    pub async fn attachments_of_addon(&self, addon_id: &str) -> Result<Vec<AttachmentRow>> {
        let sql =
            format!("{ATTACHMENT_SELECT} WHERE a.addon_id = ? ORDER BY a.created_at, a.rowid");
        let rows = sqlx::query(&sql)
            .bind(addon_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::attachment_row).collect()
    }

    /// Attaches an add-on to an app; [`StoreError::Conflict`] when the app has an attachment of
    /// that name.
    pub async fn create_attachment(
        &self,
        addon_id: &str,
        app_id: &str,
        name: &str,
    ) -> Result<AttachmentRow> {
        let t = now().to_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO addon_attachments (id, addon_id, app_id, name, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(addon_id)
        .bind(app_id)
        .bind(name)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("attachment name".into())
            } else {
                e.into()
            }
        })?;
        self.attachment(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("attachment vanished".into()))
    }

    pub async fn delete_attachment(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM addon_attachments WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the server of an add-on; [`StoreError::Conflict`] when the port is taken.
    pub async fn create_addon_server(&self, s: &AddonServerRow) -> Result<()> {
        let t = now().to_rfc3339();
        sqlx::query(
            "INSERT INTO addon_servers (addon_id, kind, port, secrets, settings, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.addon_id)
        .bind(&s.kind)
        .bind(i64::from(s.port))
        .bind(to_json(&s.secrets))
        .bind(to_json(&s.settings))
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("add-on port".into())
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub async fn addon_server(&self, addon_id: &str) -> Result<Option<AddonServerRow>> {
        let row = sqlx::query("SELECT * FROM addon_servers WHERE addon_id = ?")
            .bind(addon_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::addon_server_row).transpose()
    }

    pub async fn addon_servers(&self) -> Result<Vec<AddonServerRow>> {
        let rows = sqlx::query("SELECT * FROM addon_servers ORDER BY created_at, addon_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::addon_server_row).collect()
    }

    pub async fn set_addon_server(
        &self,
        addon_id: &str,
        secrets: &BTreeMap<String, String>,
        settings: &BTreeMap<String, String>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE addon_servers SET secrets = ?, settings = ?, updated_at = ? WHERE addon_id = ?",
        )
        .bind(to_json(secrets))
        .bind(to_json(settings))
        .bind(now().to_rfc3339())
        .bind(addon_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
