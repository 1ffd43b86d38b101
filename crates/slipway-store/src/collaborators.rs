//! Collaborators: accounts that may use an app besides its owner.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::{is_unique_violation, now, ts, AccountRow, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct CollaboratorRow {
    pub id: String,
    pub app_id: String,
    pub account: AccountRow,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    fn collaborator_row(row: &SqliteRow) -> Result<CollaboratorRow> {
        Ok(CollaboratorRow {
            id: row.try_get("cid")?,
            app_id: row.try_get("app_id")?,
            account: Self::account_row(row)?,
            created_at: ts(row, "c_created_at")?,
            updated_at: ts(row, "c_updated_at")?,
        })
    }

    const COLLABORATOR_SELECT: &'static str = "SELECT c.id AS cid, c.app_id, \
         c.created_at AS c_created_at, c.updated_at AS c_updated_at, a.* \
         FROM collaborators c JOIN accounts a ON a.id = c.account_id";

    pub async fn add_collaborator(
        &self,
        app_id: &str,
        account_id: &str,
    ) -> Result<CollaboratorRow> {
        let id = uuid::Uuid::new_v4().to_string();
        let t = now().to_rfc3339();
        sqlx::query(
            "INSERT INTO collaborators (id, app_id, account_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(account_id)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("collaborator".into())
            } else {
                e.into()
            }
        })?;
        self.collaborator(app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("collaborator vanished".into()))
    }

    /// One of an app's collaborators, by collaborator id, account id or email.
    pub async fn collaborator(&self, app_id: &str, which: &str) -> Result<Option<CollaboratorRow>> {
        let row = sqlx::query(&format!(
            "{} WHERE c.app_id = ? AND (c.id = ? OR a.id = ? OR a.email = ?)",
            Self::COLLABORATOR_SELECT
        ))
        .bind(app_id)
        .bind(which)
        .bind(which)
        .bind(which.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::collaborator_row).transpose()
    }

    pub async fn collaborators(&self, app_id: &str) -> Result<Vec<CollaboratorRow>> {
        let rows = sqlx::query(&format!(
            "{} WHERE c.app_id = ? ORDER BY a.email",
            Self::COLLABORATOR_SELECT
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::collaborator_row).collect()
    }

    /// The ids of the apps an account collaborates on.
    pub async fn collaborated_app_ids(&self, account_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT app_id FROM collaborators WHERE account_id = ?")
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn is_collaborator(&self, app_id: &str, account_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM collaborators WHERE app_id = ? AND account_id = ?",
        )
        .bind(app_id)
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    pub async fn remove_collaborator(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM collaborators WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
