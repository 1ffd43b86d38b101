//! Dataclips: saved queries on an app's Postgres add-on, their link and whom they are shared with.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::{is_unique_violation, now, ts, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct DataclipRow {
    pub id: String,
    pub app_id: String,
    pub app_name: String,
    pub addon_id: String,
    pub addon_name: String,
    /// The attachment it was made through (`DATABASE`).
    pub source: String,
    pub title: String,
    pub sql: String,
    pub creator_id: String,
    pub creator_email: String,
    /// Anyone holding the link may read the results.
    pub everyone: bool,
    /// Whether a link works (false once revoked).
    pub link: bool,
    /// Emails of the accounts it is shared with.
    pub shared_with: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewDataclip<'a> {
    pub app_id: &'a str,
    pub addon_id: &'a str,
    pub source: &'a str,
    pub title: &'a str,
    pub sql: &'a str,
    pub creator_id: &'a str,
    pub token_hash: &'a str,
}

const SELECT: &str = "SELECT d.*, apps.name AS app_name, addons.name AS addon_name, \
     accounts.email AS creator_email FROM dataclips d \
     JOIN apps ON apps.id = d.app_id \
     JOIN addons ON addons.id = d.addon_id \
     JOIN accounts ON accounts.id = d.creator_id";

fn conflict(e: sqlx::Error, title: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(format!("dataclip {title}"))
    } else {
        e.into()
    }
}

impl Store {
    async fn dataclip_row(&self, row: &SqliteRow) -> Result<DataclipRow> {
        let id: String = row.try_get("id")?;
        let token: Option<String> = row.try_get("token_hash")?;
        let shared_with = sqlx::query_scalar(
            "SELECT a.email FROM dataclip_shares s JOIN accounts a ON a.id = s.account_id \
             WHERE s.dataclip_id = ? ORDER BY a.email",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        Ok(DataclipRow {
            id,
            app_id: row.try_get("app_id")?,
            app_name: row.try_get("app_name")?,
            addon_id: row.try_get("addon_id")?,
            addon_name: row.try_get("addon_name")?,
            source: row.try_get("source")?,
            title: row.try_get("title")?,
            sql: row.try_get("sql")?,
            creator_id: row.try_get("creator_id")?,
            creator_email: row.try_get("creator_email")?,
            everyone: row.try_get::<i64, _>("everyone")? != 0,
            link: token.is_some(),
            shared_with,
            created_at: ts(row, "created_at")?,
            updated_at: ts(row, "updated_at")?,
        })
    }

    async fn dataclip_rows(&self, rows: Vec<SqliteRow>) -> Result<Vec<DataclipRow>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.dataclip_row(r).await?);
        }
        Ok(out)
    }

    pub async fn create_dataclip(&self, d: &NewDataclip<'_>) -> Result<DataclipRow> {
        let id = uuid::Uuid::new_v4().to_string();
        let t = now().to_rfc3339();
        sqlx::query(
            "INSERT INTO dataclips (id, app_id, addon_id, source, title, sql, creator_id, \
             token_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(d.app_id)
        .bind(d.addon_id)
        .bind(d.source)
        .bind(d.title)
        .bind(d.sql)
        .bind(d.creator_id)
        .bind(d.token_hash)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, d.title))?;
        self.dataclip(d.app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("dataclip vanished".into()))
    }

    /// One of an app's dataclips, by id or title.
    pub async fn dataclip(&self, app_id: &str, which: &str) -> Result<Option<DataclipRow>> {
        let row = sqlx::query(&format!(
            "{SELECT} WHERE d.app_id = ? AND (d.id = ? OR d.title = ?)"
        ))
        .bind(app_id)
        .bind(which)
        .bind(which)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some(self.dataclip_row(&r).await?)),
            None => Ok(None),
        }
    }

    pub async fn dataclips_of_app(&self, app_id: &str) -> Result<Vec<DataclipRow>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE d.app_id = ? ORDER BY d.created_at, d.title"
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        self.dataclip_rows(rows).await
    }

    /// The dataclips shared with an account.
    pub async fn dataclips_shared_with(&self, account_id: &str) -> Result<Vec<DataclipRow>> {
        let rows = sqlx::query(&format!(
            "{SELECT} JOIN dataclip_shares s ON s.dataclip_id = d.id \
             WHERE s.account_id = ? ORDER BY d.created_at, d.title"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        self.dataclip_rows(rows).await
    }

    /// The dataclip a link's token hash opens, if its link has not been revoked or rotated.
    pub async fn dataclip_for_link(&self, token_hash: &str) -> Result<Option<DataclipRow>> {
        let row = sqlx::query(&format!("{SELECT} WHERE d.token_hash = ?"))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some(self.dataclip_row(&r).await?)),
            None => Ok(None),
        }
    }

    /// Changes what is given; `token_hash: Some(None)` revokes the link.
    pub async fn update_dataclip(
        &self,
        id: &str,
        title: Option<&str>,
        sql: Option<&str>,
        everyone: Option<bool>,
        token_hash: Option<Option<&str>>,
    ) -> Result<()> {
        let title_for_error = title.unwrap_or_default().to_string();
        sqlx::query(
            "UPDATE dataclips SET title = COALESCE(?, title), sql = COALESCE(?, sql), \
             everyone = COALESCE(?, everyone), \
             token_hash = CASE WHEN ? THEN ? ELSE token_hash END, updated_at = ? WHERE id = ?",
        )
        .bind(title)
        .bind(sql)
        .bind(everyone.map(i64::from))
        .bind(token_hash.is_some())
        .bind(token_hash.flatten())
        .bind(now().to_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, &title_for_error))?;
        Ok(())
    }

    pub async fn delete_dataclip(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM dataclips WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn share_dataclip(&self, id: &str, account_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO dataclip_shares (dataclip_id, account_id, created_at) \
             VALUES (?, ?, ?)",
        )
        .bind(id)
        .bind(account_id)
        .bind(now().to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes back every clip of an app shared with an account (when it stops being a
    /// collaborator).
    pub async fn unshare_app_dataclips(&self, app_id: &str, account_id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM dataclip_shares WHERE account_id = ? AND dataclip_id IN \
             (SELECT id FROM dataclips WHERE app_id = ?)",
        )
        .bind(account_id)
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn unshare_dataclip(&self, id: &str, account_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM dataclip_shares WHERE dataclip_id = ? AND account_id = ?")
            .bind(id)
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
