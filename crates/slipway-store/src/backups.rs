//! Postgres backups, their schedules and their download links.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::{is_unique_violation, now, ts, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct BackupRow {
    pub id: String,
    pub app_id: String,
    pub num: i64,
    pub addon_id: String,
    pub addon_name: String,
    pub source: String,
    pub status: String,
    pub size: i64,
    pub scheduled: bool,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BackupRow {
    /// `b001`.
    pub fn name(&self) -> String {
        format!("b{:03}", self.num)
    }
}

#[derive(Debug, Clone)]
pub struct BackupScheduleRow {
    pub addon_id: String,
    pub addon_name: String,
    pub app_id: String,
    pub source: String,
    /// `02:00`.
    pub at: String,
    pub timezone: String,
    pub last_run: Option<DateTime<Utc>>,
}

fn opt_ts(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    let v: Option<String> = row.try_get(col)?;
    v.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    })
    .transpose()
}

impl Store {
    fn backup_row(row: &SqliteRow) -> Result<BackupRow> {
        let scheduled: i64 = row.try_get("scheduled")?;
        Ok(BackupRow {
            id: row.try_get("id")?,
            app_id: row.try_get("app_id")?,
            num: row.try_get("num")?,
            addon_id: row.try_get("addon_id")?,
            addon_name: row.try_get("addon_name")?,
            source: row.try_get("source")?,
            status: row.try_get("status")?,
            size: row.try_get("size")?,
            scheduled: scheduled != 0,
            error: row.try_get("error")?,
            started_at: ts(row, "started_at")?,
            finished_at: opt_ts(row, "finished_at")?,
        })
    }

    /// Starts a backup record (`running`) with the app's next number.
    pub async fn create_backup(
        &self,
        app_id: &str,
        addon_id: &str,
        addon_name: &str,
        source: &str,
        scheduled: bool,
    ) -> Result<BackupRow> {
        let id = uuid::Uuid::new_v4().to_string();
        for _ in 0..5 {
            let t = now().to_rfc3339();
            let r = sqlx::query(
                "INSERT INTO pg_backups (id, app_id, num, addon_id, addon_name, source, status, \
                 scheduled, started_at) VALUES (?, ?, \
                 (SELECT coalesce(max(num), 0) + 1 FROM pg_backups WHERE app_id = ?), \
                 ?, ?, ?, 'running', ?, ?)",
            )
            .bind(&id)
            .bind(app_id)
            .bind(app_id)
            .bind(addon_id)
            .bind(addon_name)
            .bind(source)
            .bind(i64::from(scheduled))
            .bind(&t)
            .execute(&self.pool)
            .await;
            match r {
                Err(e) if is_unique_violation(&e) => continue,
                other => {
                    other?;
                    break;
                }
            }
        }
        self.backup(app_id, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("backup vanished".into()))
    }

    /// An app's backup by id, `bNNN` or `latest` (the newest completed one).
    pub async fn backup(&self, app_id: &str, which: &str) -> Result<Option<BackupRow>> {
        let which = which.trim();
        let row = if which == "latest" {
            sqlx::query(
                "SELECT * FROM pg_backups WHERE app_id = ? AND status = 'completed' \
                 ORDER BY num DESC LIMIT 1",
            )
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?
        } else {
            let num = which
                .strip_prefix(['b', 'B'])
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(-1);
            sqlx::query("SELECT * FROM pg_backups WHERE app_id = ? AND (id = ? OR num = ?)")
                .bind(app_id)
                .bind(which)
                .bind(num)
                .fetch_optional(&self.pool)
                .await?
        };
        row.as_ref().map(Self::backup_row).transpose()
    }

    /// An app's backups, newest first.
    pub async fn backups(&self, app_id: &str) -> Result<Vec<BackupRow>> {
        let rows = sqlx::query("SELECT * FROM pg_backups WHERE app_id = ? ORDER BY num DESC")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::backup_row).collect()
    }

    /// Backups left `running` (by a server that stopped mid-way).
    pub async fn running_backups(&self) -> Result<Vec<BackupRow>> {
        let rows = sqlx::query("SELECT * FROM pg_backups WHERE status = 'running'")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::backup_row).collect()
    }

    pub async fn set_backup_size(&self, id: &str, size: i64) -> Result<()> {
        sqlx::query("UPDATE pg_backups SET size = ? WHERE id = ?")
            .bind(size)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a backup: `completed` with its size, or `failed` with why.
    pub async fn finish_backup(&self, id: &str, size: i64, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE pg_backups SET status = ?, size = ?, error = ?, finished_at = ? WHERE id = ?",
        )
        .bind(if error.is_some() {
            "failed"
        } else {
            "completed"
        })
        .bind(size)
        .bind(error)
        .bind(now().to_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_backup(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM pg_backup_links WHERE backup_id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM pg_backups WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a download link by its token's hash.
    pub async fn create_backup_link(
        &self,
        token_hash: &str,
        backup_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM pg_backup_links WHERE expires_at < ?")
            .bind(now().to_rfc3339())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO pg_backup_links (token_hash, backup_id, expires_at) VALUES (?, ?, ?)",
        )
        .bind(token_hash)
        .bind(backup_id)
        .bind(expires_at.to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The backup a link's token hash names, if the link has not expired.
    pub async fn backup_for_link(&self, token_hash: &str) -> Result<Option<BackupRow>> {
        let row = sqlx::query(
            "SELECT b.* FROM pg_backup_links l JOIN pg_backups b ON b.id = l.backup_id \
             WHERE l.token_hash = ? AND l.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now().to_rfc3339())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::backup_row).transpose()
    }

    fn schedule_row(row: &SqliteRow) -> Result<BackupScheduleRow> {
        Ok(BackupScheduleRow {
            addon_id: row.try_get("addon_id")?,
            addon_name: row.try_get("addon_name")?,
            app_id: row.try_get("app_id")?,
            source: row.try_get("source")?,
            at: row.try_get("at")?,
            timezone: row.try_get("timezone")?,
            last_run: opt_ts(row, "last_run")?,
        })
    }

    const SCHEDULE_SELECT: &'static str = "SELECT s.*, addons.name AS addon_name FROM \
         pg_backup_schedules s JOIN addons ON addons.id = s.addon_id";

    /// Sets (or replaces) an add-on's daily backup time.
    pub async fn set_backup_schedule(
        &self,
        addon_id: &str,
        app_id: &str,
        source: &str,
        at: &str,
        timezone: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO pg_backup_schedules (addon_id, app_id, source, at, timezone, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (addon_id) DO UPDATE SET app_id = \
             excluded.app_id, source = excluded.source, at = excluded.at, timezone = \
             excluded.timezone",
        )
        .bind(addon_id)
        .bind(app_id)
        .bind(source)
        .bind(at)
        .bind(timezone)
        .bind(now().to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_backup_schedule(&self, addon_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM pg_backup_schedules WHERE addon_id = ?")
            .bind(addon_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An app's backup schedules.
    pub async fn backup_schedules(&self, app_id: &str) -> Result<Vec<BackupScheduleRow>> {
        let sql = format!(
            "{} WHERE s.app_id = ? ORDER BY s.created_at",
            Self::SCHEDULE_SELECT
        );
        let rows = sqlx::query(&sql).bind(app_id).fetch_all(&self.pool).await?;
        rows.iter().map(Self::schedule_row).collect()
    }

    /// Every schedule (for the scheduler).
    pub async fn all_backup_schedules(&self) -> Result<Vec<BackupScheduleRow>> {
        let rows = sqlx::query(Self::SCHEDULE_SELECT)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::schedule_row).collect()
    }

    pub async fn set_backup_schedule_run(&self, addon_id: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE pg_backup_schedules SET last_run = ? WHERE addon_id = ?")
            .bind(at.to_rfc3339())
            .bind(addon_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps a `pg:diagnose` report (JSON); reports older than a month are removed.
    pub async fn save_diagnose_report(
        &self,
        id: &str,
        app_id: &str,
        addon_id: &str,
        report: &str,
    ) -> Result<()> {
        let month_ago = (now() - chrono::Duration::days(31)).to_rfc3339();
        sqlx::query("DELETE FROM pg_diagnose_reports WHERE created_at < ?")
            .bind(month_ago)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO pg_diagnose_reports (id, app_id, addon_id, report, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(app_id)
        .bind(addon_id)
        .bind(report)
        .bind(now().to_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A report younger than a month: (app id, report JSON).
    pub async fn diagnose_report(&self, id: &str) -> Result<Option<(String, String)>> {
        let month_ago = (now() - chrono::Duration::days(31)).to_rfc3339();
        let row = sqlx::query(
            "SELECT app_id, report FROM pg_diagnose_reports WHERE id = ? AND created_at >= ?",
        )
        .bind(id)
        .bind(month_ago)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("app_id")?, r.try_get("report")?)))
            .transpose()
    }
}
