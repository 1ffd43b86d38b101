//! Postgres backups (`pg:backups*`): logical dumps (`pg_dump -Fc`) of an app's Postgres add-ons,
//! numbered per app (`b001`), captured by hand or daily on a schedule, kept up to the plan's
//! retention, downloadable through an expiring link, and restorable into any of the app's
//! Postgres add-ons.
//!
//! `/apps/{app}/pg-backups[/{b001|id|latest}[/actions/{public-url|restore}]]`,
//! `/apps/{app}/pg-backup-schedules[/{DATABASE}]`, and the link itself, `/pg-backups/{token}`
//! (no credentials: the 256-bit token is the credential; only its hash is stored).

use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use slipway_addons::Kind;
use slipway_store::{AccountRow, AddonRow, AppRow, BackupRow, BackupScheduleRow};

use crate::auth::Auth;
use crate::error::{parse_json, ApiError, ApiResult};
use crate::handlers::ApiHost;
use crate::AppState;

/// How long a download link works.
const LINK_LIFETIME: Duration = Duration::from_secs(3600);

fn backup_json(b: &BackupRow) -> Value {
    json!({
        "id": b.id,
        "num": b.num,
        "name": b.name(),
        "status": b.status,
        "source": b.source,
        "addon": {"id": b.addon_id, "name": b.addon_name},
        "size": b.size,
        "started_at": b.started_at,
        "finished_at": b.finished_at,
        "error": b.error,
        "scheduled": b.scheduled,
    })
}

fn schedule_json(s: &BackupScheduleRow) -> Value {
    json!({
        "database": s.source,
        "addon": {"id": s.addon_id, "name": s.addon_name},
        "at": s.at,
        "timezone": s.timezone,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "pg-backup",
        "Couldn't find that backup. See slipway pg:backups.",
    )
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Deserialize, Default)]
struct DatabaseBody {
    database: Option<String>,
}

impl AppState {
    /// One of the app's Postgres add-ons, by attachment name (`DATABASE`, `DATABASE_URL`) or
    /// add-on name: (the attachment name, the add-on).
    pub(crate) async fn app_database(
        &self,
        app: &AppRow,
        which: Option<&str>,
    ) -> ApiResult<(String, AddonRow)> {
        let which = which
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .unwrap_or("DATABASE");
        let upper = which.to_ascii_uppercase();
        let name = upper.strip_suffix("_URL").unwrap_or(&upper);
        let attachments = self.store.attachments_of_app(&app.id).await?;
        let found = attachments.iter().find(|a| a.name == name).or_else(|| {
            attachments
                .iter()
                .find(|a| a.addon_name == which || a.addon_id == which)
        });
        let Some(a) = found else {
            return Err(ApiError::not_found(
                "add_on",
                format!(
                    "{} has no Postgres database {which}. See slipway addons -a {}.",
                    app.name, app.name
                ),
            ));
        };
        let addon = self
            .store
            .addon(&a.addon_id)
            .await?
            .ok_or_else(|| ApiError::not_found("add_on", "Couldn't find that add-on."))?;
        let kind = self
            .addons()?
            .catalogue()
            .service(&addon.service)
            .map(|s| s.kind);
        if kind != Some(Kind::Postgres) {
            return Err(ApiError::invalid(format!(
                "{} is not a Heroku Postgres database.",
                a.name
            )));
        }
        Ok((a.name.clone(), addon))
    }

    fn backup_path(&self, b: &BackupRow) -> ApiResult<PathBuf> {
        Ok(self
            .addons()?
            .backups_dir()
            .join(&b.app_id)
            .join(format!("{}.dump", b.id)))
    }

    /// Starts a backup in the background; the record says how it goes.
    pub(crate) async fn start_backup(
        &self,
        app: &AppRow,
        source: &str,
        addon: &AddonRow,
        scheduled: bool,
    ) -> ApiResult<BackupRow> {
        let b = self
            .store
            .create_backup(&app.id, &addon.id, &addon.name, source, scheduled)
            .await?;
        let path = self.backup_path(&b)?;
        let (this, row, addon) = (self.clone(), b.clone(), addon.clone());
        tokio::spawn(async move {
            let addons = match this.addons() {
                Ok(a) => a.clone(),
                Err(_) => return,
            };
            let result = async {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                let store = this.store.clone();
                let id = row.id.clone();
                let last = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                addons
                    .pg_dump(&addon, &path, move |size| {
                        // Progress, at most every half second (pg_dump's loop).
                        if last.swap(size, std::sync::atomic::Ordering::Relaxed) != size {
                            let (store, id) = (store.clone(), id.clone());
                            tokio::spawn(async move {
                                let _ = store.set_backup_size(&id, size as i64).await;
                            });
                        }
                    })
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok(size) => {
                    let _ = this.store.finish_backup(&row.id, size as i64, None).await;
                    this.api_log(
                        &row.app_id,
                        &format!(
                            "Backup {} of {} completed ({size} bytes)",
                            row.name(),
                            row.source
                        ),
                    );
                    this.prune_backups(&row.app_id, &addon).await;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    let _ = this.store.finish_backup(&row.id, 0, Some(&e)).await;
                    this.api_log(&row.app_id, &format!("Backup {} failed: {e}", row.name()));
                }
            }
        });
        Ok(b)
    }

    /// Keeps the newest completed backups of an add-on up to its plan's retention.
    async fn prune_backups(&self, app_id: &str, addon: &AddonRow) {
        let Ok(addons) = self.addons() else { return };
        let keep = addons.backup_retention(addon);
        let Ok(all) = self.store.backups(app_id).await else {
            return;
        };
        let done: Vec<&BackupRow> = all
            .iter()
            .filter(|b| b.addon_id == addon.id && b.status == "completed")
            .collect();
        for old in done.iter().skip(keep) {
            if let Ok(path) = self.backup_path(old) {
                let _ = std::fs::remove_file(path);
            }
            let _ = self.store.delete_backup(&old.id).await;
        }
    }

    /// Backups a stopped server left running are marked failed; then the daily ones are run
    /// when due, checked every half minute.
    pub fn start_backup_scheduler(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(left) = this.store.running_backups().await {
                for b in left {
                    let _ = this
                        .store
                        .finish_backup(&b.id, b.size, Some("interrupted: the server stopped"))
                        .await;
                }
            }
            loop {
                this.run_backup_schedules().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
    }

    /// Runs the daily backups that are due.
    pub async fn run_backup_schedules(&self) {
        let Ok(schedules) = self.store.all_backup_schedules().await else {
            return;
        };
        let now = chrono::Utc::now();
        for s in schedules {
            if !is_due(&s.at, s.last_run, now) {
                continue;
            }
            let _ = self.store.set_backup_schedule_run(&s.addon_id, now).await;
            let (Ok(Some(app)), Ok(Some(addon))) = (
                self.store.app(&s.app_id).await,
                self.store.addon(&s.addon_id).await,
            ) else {
                continue;
            };
            if let Err(e) = self.start_backup(&app, &s.source, &addon, true).await {
                tracing::warn!(app = %app.name, error = %e.message, "Scheduled backup failed to start.");
            }
        }
    }
}

/// Whether a daily backup at `at` is due: today's time has come and it has not run since.
fn is_due(
    at: &str,
    last_run: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    today_at(at, now).is_some_and(|slot| now >= slot && last_run.is_none_or(|l| l < slot))
}

/// Today's `HH:MM` (UTC) as a time.
fn today_at(at: &str, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
    let (h, m) = at.split_once(':')?;
    let t = chrono::NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)?;
    Some(now.date_naive().and_time(t).and_utc())
}

/// `02:00`, `2:00 UTC` → `02:00`; only UTC for now.
fn parse_at(at: &str) -> Result<String, String> {
    let mut parts = at.split_whitespace();
    let time = parts.next().unwrap_or("");
    let zone = parts.next().unwrap_or("UTC");
    if parts.next().is_some() || !zone.eq_ignore_ascii_case("UTC") {
        return Err(format!(
            "{at:?} is not a time such as '02:00 UTC' (schedules are in UTC)."
        ));
    }
    let (h, m) = time
        .split_once(':')
        .ok_or_else(|| format!("{at:?} is not a time such as '02:00 UTC'."))?;
    match (h.parse::<u32>(), m.parse::<u32>()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 && m.to_string().len() <= 2 => {
            Ok(format!("{h:02}:{m:02}"))
        }
        _ => Err(format!("{at:?} is not a time such as '02:00 UTC'.")),
    }
}

async fn owned_backup(
    s: &AppState,
    who: &AccountRow,
    app: &str,
    which: &str,
) -> ApiResult<(AppRow, BackupRow)> {
    let app = s.load_app(who, app).await?;
    let b = s
        .store
        .backup(&app.id, which)
        .await?
        .ok_or_else(not_found)?;
    Ok((app, b))
}

/// `POST /apps/{app}/pg-backups` with `{"database": "DATABASE"}`: starts a capture (202).
pub async fn capture(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let app = s.load_app(&who, &app).await?;
    let req: DatabaseBody = if body.iter().all(u8::is_ascii_whitespace) {
        DatabaseBody::default()
    } else {
        parse_json(&body)?
    };
    let (source, addon) = s.app_database(&app, req.database.as_deref()).await?;
    let b = s.start_backup(&app, &source, &addon, false).await?;
    s.api_log(
        &app.id,
        &format!(
            "Capture backup {} of {source} by user {}",
            b.name(),
            who.email
        ),
    );
    Ok((StatusCode::ACCEPTED, Json(backup_json(&b))).into_response())
}

/// `GET /apps/{app}/pg-backups`: newest first.
pub async fn list(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(
        s.store
            .backups(&app.id)
            .await?
            .iter()
            .map(backup_json)
            .collect(),
    ))
}

/// `GET /apps/{app}/pg-backups/{b001|id|latest}`.
pub async fn info(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, b) = owned_backup(&s, &who, &app, &which).await?;
    Ok(Json(backup_json(&b)))
}

/// `DELETE /apps/{app}/pg-backups/{b001|id}`.
pub async fn delete(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (app, b) = owned_backup(&s, &who, &app, &which).await?;
    if b.status == "running" {
        return Err(ApiError::invalid(format!(
            "Backup {} is still running; delete it once it has finished.",
            b.name()
        )));
    }
    let _ = std::fs::remove_file(s.backup_path(&b)?);
    s.store.delete_backup(&b.id).await?;
    s.api_log(
        &app.id,
        &format!("Delete backup {} by user {}", b.name(), who.email),
    );
    Ok(Json(backup_json(&b)))
}

/// `POST /apps/{app}/pg-backups/{b001}/actions/public-url`: a link valid for an hour.
pub async fn public_url(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiHost(host): ApiHost,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, b) = owned_backup(&s, &who, &app, &which).await?;
    if b.status != "completed" {
        return Err(ApiError::invalid(format!(
            "Backup {} is {}; only a completed backup can be downloaded.",
            b.name(),
            b.status
        )));
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let expires = chrono::Utc::now()
        + chrono::Duration::from_std(LINK_LIFETIME).unwrap_or_else(|_| chrono::Duration::hours(1));
    s.store
        .create_backup_link(&hash(&token), &b.id, expires)
        .await?;
    Ok(Json(json!({
        "url": format!("{host}/pg-backups/{token}"),
        "expires_at": expires,
    })))
}

/// `GET /pg-backups/{token}`: the dump, to whoever holds an unexpired link.
pub async fn download(State(s): State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let b = s
        .store
        .backup_for_link(&hash(token.trim()))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "pg-backup",
                "This backup link has expired or does not exist. Get a new one with slipway pg:backups:url.",
            )
        })?;
    let file = tokio::fs::File::open(s.backup_path(&b)?)
        .await
        .map_err(|_| not_found())?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}.dump\"", b.name()),
        )
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `POST /apps/{app}/pg-backups/{b001|latest}/actions/restore` with `{"database": ...}`: replaces
/// that database's contents with the backup's (synchronous).
pub async fn restore(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (app, b) = owned_backup(&s, &who, &app, &which).await?;
    if b.status != "completed" {
        return Err(ApiError::invalid(format!(
            "Backup {} is {}; only a completed backup can be restored.",
            b.name(),
            b.status
        )));
    }
    let req: DatabaseBody = if body.iter().all(u8::is_ascii_whitespace) {
        DatabaseBody::default()
    } else {
        parse_json(&body)?
    };
    let (target, addon) = s.app_database(&app, req.database.as_deref()).await?;
    // Shared with this app is not enough to replace a database: it must be the app's own, or
    // its owner's people must be the ones asking.
    s.must_manage(&who, &addon).await?;
    let addons = s.addons()?.clone();
    s.api_log(
        &app.id,
        &format!(
            "Restore backup {} to {target} by user {}",
            b.name(),
            who.email
        ),
    );
    {
        let _guard = addons.lock(&addon.id).await;
        addons.pg_restore(&addon, &s.backup_path(&b)?).await?;
    }
    Ok(Json(
        json!({"status": "completed", "backup": b.name(), "database": target}),
    ))
}

/// `GET /apps/{app}/pg-backup-schedules`.
pub async fn schedules(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Value>>> {
    let app = s.load_app(&who, &app).await?;
    Ok(Json(
        s.store
            .backup_schedules(&app.id)
            .await?
            .iter()
            .map(schedule_json)
            .collect(),
    ))
}

#[derive(Deserialize)]
struct ScheduleBody {
    at: Option<String>,
}

/// `PUT /apps/{app}/pg-backup-schedules/{DATABASE}` with `{"at": "02:00 UTC"}`.
pub async fn schedule(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let req: ScheduleBody = parse_json(&body)?;
    let at = parse_at(req.at.as_deref().unwrap_or("02:00 UTC")).map_err(ApiError::invalid)?;
    let (source, addon) = s.app_database(&app, Some(&which)).await?;
    s.store
        .set_backup_schedule(&addon.id, &app.id, &source, &at, "UTC")
        .await?;
    // The first run is the next time the clock reaches it, not a catch-up for today.
    if today_at(&at, chrono::Utc::now()).is_some_and(|t| t <= chrono::Utc::now()) {
        s.store
            .set_backup_schedule_run(&addon.id, chrono::Utc::now())
            .await?;
    }
    s.api_log(
        &app.id,
        &format!(
            "Schedule daily backups of {source} at {at} UTC by user {}",
            who.email
        ),
    );
    let row = s
        .store
        .backup_schedules(&app.id)
        .await?
        .into_iter()
        .find(|x| x.addon_id == addon.id)
        .ok_or_else(|| ApiError::internal("schedule vanished"))?;
    Ok(Json(schedule_json(&row)))
}

/// `DELETE /apps/{app}/pg-backup-schedules/{DATABASE}`.
pub async fn unschedule(
    State(s): State<AppState>,
    Auth(who): Auth,
    Path((app, which)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let app = s.load_app(&who, &app).await?;
    let (_, addon) = s.app_database(&app, Some(&which)).await?;
    let row = s
        .store
        .backup_schedules(&app.id)
        .await?
        .into_iter()
        .find(|x| x.addon_id == addon.id)
        .ok_or_else(|| {
            ApiError::not_found(
                "pg-backup-schedule",
                format!("{which} has no backup schedule. See slipway pg:backups:schedules."),
            )
        })?;
    s.store.delete_backup_schedule(&addon.id).await?;
    Ok(Json(schedule_json(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_times() {
        assert_eq!(parse_at("02:00 UTC").unwrap(), "02:00");
        assert_eq!(parse_at("2:05").unwrap(), "02:05");
        assert!(parse_at("25:00").is_err());
        assert!(parse_at("02:00 PST").is_err());
        assert!(parse_at("noon").is_err());
    }

    #[test]
    fn daily_backups_run_once_a_day_after_their_time() {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        assert!(!is_due("02:00", None, t("2026-11-26T01:59:00Z")));
        assert!(is_due("02:00", None, t("2026-11-26T02:00:30Z")));
        assert!(!is_due(
            "02:00",
            Some(t("2026-11-26T02:00:31Z")),
            t("2026-11-26T02:01:00Z")
        ));
        assert!(is_due(
            "02:00",
            Some(t("2026-11-25T02:00:31Z")),
            t("2026-11-26T02:00:30Z")
        ));
        // Set up at 14:00 for 02:00: the next run is tomorrow's.
        assert!(!is_due(
            "02:00",
            Some(t("2026-11-26T14:00:00Z")),
            t("2026-11-26T23:00:00Z")
        ));
    }
}
