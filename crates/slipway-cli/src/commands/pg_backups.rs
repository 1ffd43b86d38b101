//! `pg:backups`, `pg:backups:capture`, `pg:backups:info`, `pg:backups:url`,
//! `pg:backups:download`, `pg:backups:restore`, `pg:backups:delete`, `pg:backups:schedule`,
//! `pg:backups:unschedule`, `pg:backups:schedules`: logical (`pg_dump -Fc`) backups of an app's
//! Postgres databases through `/apps/{app}/pg-backups` and `/apps/{app}/pg-backup-schedules`.
//!
//! A database argument is resolved as in the other `pg:*` commands (`POST
//! /actions/addon-attachments/resolve`), which names the add-on in the output and gives the
//! attachment name sent to the server. A backup is named `b001`, by its id, or `latest` (the newest
//! completed one, found by the server).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::addons::Named;
use super::pg::{resolve, DEFAULT_ATTACHMENT};
use super::{Ctx, ExitStatus};
use crate::api::{decode, decode_all, seg, Api};
use crate::args::{
    AppArgsOnly, PgBackupArg, PgBackupsCapture, PgBackupsDelete, PgBackupsDownload,
    PgBackupsRestore, PgBackupsSchedule, PgDatabase,
};
use crate::format::{header, human_size, key_values, titled_table};

/// The backup `latest` names: the newest completed one.
const LATEST: &str = "latest";

/// How long `pg:backups:restore` waits for the server, which answers when the restore is over.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How often progress on a terminal is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// A backup as `/apps/{app}/pg-backups` returns it.
#[derive(Debug, Clone, Deserialize)]
struct Backup {
    name: String,
    status: String,
    /// The attachment name it was taken through (`DATABASE`).
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    addon: Option<Named>,
    /// Bytes of the dump (so far, while running).
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    scheduled: bool,
}

impl Backup {
    /// The database column: the attachment name, else the add-on's.
    fn database(&self) -> String {
        self.source
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| self.addon.as_ref().map(|a| a.name.clone()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "UNKNOWN".to_owned())
    }

    fn size_text(&self) -> String {
        human_size(self.size.unwrap_or(0))
    }

    /// `Completed 2026-11-26 14:10:02 +0000`, `Running`, `Failed 2026-…`.
    fn status_line(&self) -> String {
        let word = status_word(&self.status);
        match (self.status.as_str(), self.finished_at) {
            ("running", _) | (_, None) => word,
            (_, Some(t)) => format!("{word} {}", stamp(t)),
        }
    }
}

/// A daily schedule as `/apps/{app}/pg-backup-schedules` returns it.
#[derive(Debug, Clone, Deserialize)]
struct Schedule {
    database: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    timezone: Option<String>,
}

impl Schedule {
    /// `DATABASE_URL: daily at 2:00 UTC`.
    fn line(&self) -> String {
        let var = if self.database.ends_with("_URL") {
            self.database.clone()
        } else {
            format!("{}_URL", self.database)
        };
        // `2:00`, as Heroku prints the hour.
        let at = match self.at.split_once(':') {
            Some((h, m)) => match h.parse::<u32>() {
                Ok(h) => format!("{h}:{m}"),
                Err(_) => self.at.clone(),
            },
            None => self.at.clone(),
        };
        let tz = self
            .timezone
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or("UTC");
        format!("{var}: daily at {at} {tz}")
    }
}

/// `Completed` from `completed`.
fn status_word(status: &str) -> String {
    let mut chars = status.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => "Pending".to_owned(),
    }
}

/// `2026-11-26 14:10:02 +0000`, as Heroku prints transfer times.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S %z").to_string()
}

fn backups_path(app: &str) -> String {
    format!("/apps/{}/pg-backups", seg(app))
}

fn backup_path(app: &str, backup: &str) -> String {
    format!("/apps/{}/pg-backups/{}", seg(app), seg(backup))
}

fn schedules_path(app: &str) -> String {
    format!("/apps/{}/pg-backup-schedules", seg(app))
}

async fn backup_list(api: &Api, app: &str) -> Result<Vec<Backup>> {
    decode_all(api.list(&backups_path(app), None, true).await?, "a backup")
}

async fn get_backup(api: &Api, app: &str, backup: &str) -> Result<Backup> {
    decode(api.get(&backup_path(app, backup)).await?, "a backup")
}

async fn schedule_list(api: &Api, app: &str) -> Result<Vec<Schedule>> {
    decode_all(
        api.list(&schedules_path(app), None, true).await?,
        "a backup schedule",
    )
}

/// The `=== Backups` section.
fn backups_section(backups: &[Backup]) -> String {
    let mut out = header("Backups");
    if backups.is_empty() {
        out.push_str("No backups. Capture one with slipway pg:backups:capture\n");
        return out;
    }
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.started_at.map(stamp).unwrap_or_default(),
                b.status_line(),
                b.size_text(),
                b.database(),
            ]
        })
        .collect();
    out.push_str(&titled_table(
        &["ID", "Created at", "Status", "Size", "Database"],
        &rows,
    ));
    out
}

/// The `=== Backup Schedules` section.
fn schedules_section(schedules: &[Schedule]) -> String {
    let mut out = header("Backup Schedules");
    if schedules.is_empty() {
        out.push_str("No backup schedules found. Use slipway pg:backups:schedule to set one up\n");
    }
    for s in schedules {
        out.push_str(&s.line());
        out.push('\n');
    }
    out
}

/// `pg:backups`: the app's backups, newest first, then its schedules.
pub async fn list(ctx: &mut Ctx<'_>, a: AppArgsOnly) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let backups = backup_list(&api, &app).await?;
    let schedules = schedule_list(&api, &app).await?;
    write!(
        ctx.out,
        "{}\n{}",
        backups_section(&backups),
        schedules_section(&schedules)
    )?;
    Ok(())
}

/// `pg:backups:schedules`.
pub async fn schedules(ctx: &mut Ctx<'_>, a: AppArgsOnly) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let schedules = schedule_list(&api, &app).await?;
    write!(ctx.out, "{}", schedules_section(&schedules))?;
    Ok(())
}

/// A line that ends in a changing value: `Backing up DATABASE to b001... 1.2 MB`. On a terminal
/// the value is redrawn in place; elsewhere only the label and the final value are printed.
struct Progress {
    label: String,
    tty: bool,
    drawn: Option<Instant>,
}

impl Progress {
    fn start(out: &mut dyn Write, label: String, tty: bool) -> Result<Progress> {
        write!(out, "{label}... ")?;
        out.flush()?;
        Ok(Progress {
            label,
            tty,
            drawn: None,
        })
    }

    /// Shows `value` on a terminal, at most every [`REDRAW_EVERY`] unless `now`.
    fn update(&mut self, out: &mut dyn Write, value: &str, now: bool) -> Result<()> {
        if !self.tty || (!now && self.drawn.is_some_and(|t| t.elapsed() < REDRAW_EVERY)) {
            return Ok(());
        }
        write!(out, "\r{}... {value}\x1b[K", self.label)?;
        out.flush()?;
        self.drawn = Some(Instant::now());
        Ok(())
    }

    /// Ends the line with `value` (`done`, `!`).
    fn finish(self, out: &mut dyn Write, value: &str) -> Result<()> {
        if self.tty && self.drawn.is_some() {
            writeln!(out, "\r{}... {value}\x1b[K", self.label)?;
        } else {
            writeln!(out, "{value}")?;
        }
        out.flush()?;
        Ok(())
    }
}

/// `pg:backups:capture [DATABASE] [--wait-interval SECONDS]`: starts a backup, then follows it
/// until it ends (Ctrl-C stops following; the backup goes on).
pub async fn capture(ctx: &mut Ctx<'_>, a: PgBackupsCapture) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let body = json!({ "database": attachment.name });
    let label = format!("Starting backup of {}", attachment.addon.name);
    let value = ctx
        .action(
            &label,
            api.call(Method::POST, &backups_path(&app), Some(&body)),
        )
        .await?;
    writeln!(ctx.out, "done")?;
    let mut backup: Backup = decode(value, "a backup")?;
    writeln!(
        ctx.out,
        "\nUse Ctrl-C at any time to stop monitoring progress; the backup will continue running.\n\
         Use slipway pg:backups:info to check progress.\n"
    )?;
    let source = backup
        .source
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| attachment.name.clone());
    let label = format!("Backing up {source} to {}", backup.name);
    let mut progress = Progress::start(&mut *ctx.out, label, ctx.env.out_is_tty)?;
    let interval = Duration::from_secs(a.wait_interval.max(1));
    let path = backup_path(&app, &backup.name);
    while backup.status == "running" {
        progress.update(&mut *ctx.out, &backup.size_text(), true)?;
        tokio::time::sleep(interval).await;
        backup = match api.get(&path).await.and_then(|v| decode(v, "a backup")) {
            Ok(b) => b,
            Err(e) => {
                progress.finish(&mut *ctx.out, "!")?;
                return Err(e.context(format!(
                    "Lost track of backup {}, which goes on running. Check it with slipway pg:backups:info {}",
                    backup.name, backup.name
                )));
            }
        };
    }
    if backup.status == "completed" {
        progress.finish(&mut *ctx.out, "done")?;
        return Ok(());
    }
    progress.finish(&mut *ctx.out, "!")?;
    let reason = backup
        .error
        .as_deref()
        .map(|e| e.trim().trim_end_matches('.'))
        .filter(|e| !e.is_empty())
        .map_or_else(|| format!("it ended {}", backup.status), str::to_owned);
    bail!(
        "An error occurred and the backup did not finish: {reason}. See slipway pg:backups:info {}.",
        backup.name
    )
}

/// `pg:backups:info [BACKUP]`: one backup, by default the newest (running or not).
pub async fn info(ctx: &mut Ctx<'_>, a: PgBackupArg) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let backup = match &a.backup {
        Some(name) => get_backup(&api, &app, name).await?,
        None => backup_list(&api, &app)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("No backups. Capture one with slipway pg:backups:capture."))?,
    };
    let mut rows: Vec<(String, String)> = vec![("Database".into(), backup.database())];
    if let Some(t) = backup.started_at {
        rows.push(("Started at".into(), stamp(t)));
    }
    if let Some(t) = backup.finished_at {
        rows.push(("Finished at".into(), stamp(t)));
    }
    rows.push(("Status".into(), status_word(&backup.status)));
    let kind = if backup.scheduled {
        "Scheduled"
    } else {
        "Manual"
    };
    rows.push(("Type".into(), kind.into()));
    rows.push(("Backup Size".into(), backup.size_text()));
    if let Some(e) = backup.error.as_deref().filter(|e| !e.is_empty()) {
        rows.push(("Error".into(), e.to_owned()));
    }
    write!(
        ctx.out,
        "{}{}",
        header(&format!("Backup {}", backup.name)),
        key_values(&rows)
    )?;
    Ok(())
}

/// The backup's public URL (valid for an hour), made absolute when the server gave a path.
async fn public_url(api: &Api, app: &str, backup: &str) -> Result<String> {
    let path = format!("{}/actions/public-url", backup_path(app, backup));
    let value = api.call(Method::POST, &path, None).await?;
    let url = value
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow!("Slipway sent no URL for backup {backup}."))?;
    Ok(if url.starts_with('/') {
        format!("{}{url}", api.base())
    } else {
        url.to_owned()
    })
}

/// `pg:backups:url [BACKUP]`.
pub async fn url(ctx: &mut Ctx<'_>, a: PgBackupArg) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let url = public_url(&api, &app, a.backup.as_deref().unwrap_or(LATEST)).await?;
    writeln!(ctx.out, "{url}")?;
    Ok(())
}

/// `pg:backups:download [BACKUP] [-o FILE]`: writes the dump next to the file first and renames
/// it when complete, so a broken download leaves no truncated `latest.dump`.
pub async fn download(ctx: &mut Ctx<'_>, a: PgBackupsDownload) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let wanted = a.backup.as_deref().unwrap_or(LATEST);
    let (backup, url) = ctx
        .action(&format!("Getting backup from ⬢ {app}"), async {
            let backup = get_backup(&api, &app, wanted).await?;
            let url = public_url(&api, &app, &backup.name).await?;
            Ok((backup, url))
        })
        .await?;
    writeln!(ctx.out, "done, #{}", backup.name)?;
    let target = ctx.env.cwd.join(&a.output);
    let mut progress = Progress::start(
        &mut *ctx.out,
        format!("Downloading {}", a.output),
        ctx.env.out_is_tty,
    )?;
    match fetch_to(&api, &url, &target, &mut progress, &mut *ctx.out).await {
        Ok(()) => progress.finish(&mut *ctx.out, "done"),
        Err(e) => {
            progress.finish(&mut *ctx.out, "!")?;
            Err(e)
        }
    }
}

/// The temporary name a download is written under: `.latest.dump.partial` next to the target.
fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".to_owned());
    target.with_file_name(format!(".{name}.partial"))
}

async fn fetch_to(
    api: &Api,
    url: &str,
    target: &Path,
    progress: &mut Progress,
    out: &mut dyn Write,
) -> Result<()> {
    let resp = api.download(url).await?;
    let partial = partial_path(target);
    let result = async {
        let mut file = std::fs::File::create(&partial)
            .with_context(|| format!("Cannot write {}", target.display()))?;
        let mut stream = resp.bytes_stream();
        let mut done: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow!("The download broke off: {e}."))?;
            file.write_all(&chunk)
                .with_context(|| format!("Cannot write {}", target.display()))?;
            done += chunk.len() as u64;
            progress.update(out, &human_size(done), false)?;
        }
        file.sync_all()
            .with_context(|| format!("Cannot write {}", target.display()))?;
        std::fs::rename(&partial, target)
            .with_context(|| format!("Cannot write {}", target.display()))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Whether a lone argument reads as an attachment name (`DATABASE_URL`, `HEROKU_POSTGRESQL_ONYX`)
/// rather than a backup (`b001`, an id, `latest`).
fn looks_like_attachment(arg: &str) -> bool {
    let mut chars = arg.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `pg:backups:restore [BACKUP] [DATABASE] --confirm APP`: refuses without the app's name,
/// before any request. A lone upper-case argument (`DATABASE_URL`) is taken as the database.
pub async fn restore(ctx: &mut Ctx<'_>, a: PgBackupsRestore) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let (backup, database) = match (&a.backup, &a.database) {
        (Some(only), None) if looks_like_attachment(only) => (None, Some(only.as_str())),
        (b, d) => (b.as_deref(), d.as_deref()),
    };
    if a.confirm.as_deref() != Some(app.as_str()) {
        let what = match backup {
            Some(b) => format!("backup {b}"),
            None => "the latest completed backup".to_owned(),
        };
        let mut command = String::from("slipway pg:backups:restore");
        for arg in [&a.backup, &a.database].into_iter().flatten() {
            command.push(' ');
            command.push_str(arg);
        }
        writeln!(
            ctx.err,
            " ▸    This will replace all data in {} on {app} with {what}. To proceed, run: {command} -a {app} --confirm {app}",
            database.unwrap_or(DEFAULT_ATTACHMENT)
        )?;
        ctx.err.flush()?;
        return Err(ExitStatus(1).into());
    }
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, database).await?;
    let backup = get_backup(&api, &app, backup.unwrap_or(LATEST)).await?;
    if backup.status != "completed" {
        bail!(
            "Backup {} is {}; only a completed backup can be restored.",
            backup.name,
            backup.status
        );
    }
    writeln!(
        ctx.out,
        "Starting restore of {} to {}... done",
        backup.name, attachment.addon.name
    )?;
    let path = format!("{}/actions/restore", backup_path(&app, &backup.name));
    let body = json!({ "database": attachment.name });
    let api = api.with_timeout(RESTORE_TIMEOUT);
    ctx.action("Restoring", api.call(Method::POST, &path, Some(&body)))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `pg:backups:delete BACKUP --confirm APP`: refuses without the app's name, before any request.
pub async fn delete(ctx: &mut Ctx<'_>, a: PgBackupsDelete) -> Result<()> {
    let app = ctx.app(&a.app)?;
    if a.confirm.as_deref() != Some(app.as_str()) {
        writeln!(
            ctx.err,
            " ▸    This will permanently delete backup {} of {app}. To proceed, run: slipway pg:backups:delete {} -a {app} --confirm {app}",
            a.backup, a.backup
        )?;
        ctx.err.flush()?;
        return Err(ExitStatus(1).into());
    }
    let api = ctx.api()?;
    let label = format!("Deleting backup {} on ⬢ {app}", a.backup);
    ctx.action(
        &label,
        api.call(Method::DELETE, &backup_path(&app, &a.backup), None),
    )
    .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// Checks `--at`: `HH:MM` (24-hour; `2:00` too) and an optional time zone, which must be UTC.
/// Returns it as sent: `02:00 UTC`.
pub fn parse_schedule_at(at: &str) -> Result<String> {
    let bad = || {
        anyhow!(
            "Invalid --at {at:?}: give the time as HH:MM in 24-hour form, optionally followed by the time zone, e.g. --at '02:00 UTC'."
        )
    };
    let mut words = at.split_whitespace();
    let time = words.next().ok_or_else(bad)?;
    let zone = words.next();
    if words.next().is_some() {
        return Err(bad());
    }
    let (h, m) = time.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str, max_len: usize| {
        !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
        return Err(bad());
    }
    let (hour, minute): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    if let Some(zone) = zone {
        if !zone.eq_ignore_ascii_case("UTC") {
            bail!(
                "Backup schedules only support the UTC time zone for now, not {zone}. Give the time in UTC, e.g. --at '02:00 UTC'."
            );
        }
    }
    Ok(format!("{hour:02}:{minute:02} UTC"))
}

/// `pg:backups:schedule [DATABASE] --at 'HH:MM UTC'`: the time is checked before any request.
pub async fn schedule(ctx: &mut Ctx<'_>, a: PgBackupsSchedule) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let at = parse_schedule_at(&a.at)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let path = format!("{}/{}", schedules_path(&app), seg(&attachment.name));
    let body = json!({ "at": at });
    let label = format!(
        "Scheduling automatic daily backups of {} at {at}",
        attachment.addon.name
    );
    ctx.action(&label, api.call(Method::PUT, &path, Some(&body)))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

/// `pg:backups:unschedule [DATABASE]`.
pub async fn unschedule(ctx: &mut Ctx<'_>, a: PgDatabase) -> Result<()> {
    let app = ctx.app(&a.app)?;
    let api = ctx.api()?;
    let attachment = resolve(&api, &app, a.database.as_deref()).await?;
    let path = format!("{}/{}", schedules_path(&app), seg(&attachment.name));
    let label = format!("Stopping automatic backups of {}", attachment.addon.name);
    ctx.action(&label, api.call(Method::DELETE, &path, None))
        .await?;
    writeln!(ctx.out, "done")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_times() {
        assert_eq!(parse_schedule_at("02:00 UTC").unwrap(), "02:00 UTC");
        assert_eq!(parse_schedule_at("2:30").unwrap(), "02:30 UTC");
        assert_eq!(parse_schedule_at(" 23:59  utc ").unwrap(), "23:59 UTC");
        for bad in [
            "",
            "24:00",
            "12:60",
            "2",
            "02:0",
            "02:000",
            "aa:00",
            "02:00 UTC x",
            "-1:00",
        ] {
            let e = parse_schedule_at(bad).unwrap_err().to_string();
            assert!(e.starts_with("Invalid --at"), "{bad}: {e}");
        }
        let e = parse_schedule_at("02:00 America/New_York")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Backup schedules only support the UTC time zone for now, not America/New_York. Give the time in UTC, e.g. --at '02:00 UTC'."
        );
    }

    #[test]
    fn schedule_lines() {
        let s = |db: &str, at: &str| Schedule {
            database: db.into(),
            at: at.into(),
            timezone: Some("UTC".into()),
        };
        assert_eq!(
            s("DATABASE", "02:00").line(),
            "DATABASE_URL: daily at 2:00 UTC"
        );
        assert_eq!(
            s("HEROKU_POSTGRESQL_ONYX_URL", "14:30").line(),
            "HEROKU_POSTGRESQL_ONYX_URL: daily at 14:30 UTC"
        );
        assert_eq!(
            s("DATABASE", "00:05").line(),
            "DATABASE_URL: daily at 0:05 UTC"
        );
    }

    #[test]
    fn attachment_like_arguments() {
        assert!(looks_like_attachment("DATABASE_URL"));
        assert!(looks_like_attachment("HEROKU_POSTGRESQL_ONYX"));
        assert!(!looks_like_attachment("b001"));
        assert!(!looks_like_attachment("latest"));
        assert!(!looks_like_attachment("postgresql-concave-52656"));
        assert!(!looks_like_attachment("_X"));
    }

    #[test]
    fn progress_lines() {
        let mut out = Vec::new();
        let mut p = Progress::start(&mut out, "Backing up DATABASE to b001".into(), false).unwrap();
        p.update(&mut out, "1 MB", true).unwrap();
        p.finish(&mut out, "done").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Backing up DATABASE to b001... done\n"
        );
        let mut out = Vec::new();
        let mut p = Progress::start(&mut out, "Backing up DATABASE to b001".into(), true).unwrap();
        p.update(&mut out, "1.2 MB", true).unwrap();
        p.finish(&mut out, "done").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Backing up DATABASE to b001... \r\
             Backing up DATABASE to b001... 1.2 MB\x1b[K\r\
             Backing up DATABASE to b001... done\x1b[K\n"
        );
    }
}
