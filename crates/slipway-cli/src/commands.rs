//! Command implementations, one module per Heroku topic, sharing a [`Ctx`]: the environment, the
//! output writers, the resolved API URL and the clock used for "~ 5s ago".

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api::Api;
use crate::args::{AppArgs, Cmd};
use crate::env::{machine_name, Env, Input};
use crate::git::{app_from_git_url, Git};

mod access;
mod accounts;
mod addons;
mod apps;
mod attach;
mod auth;
mod buildpacks;
mod certs;
mod config;
mod dataclips;
mod domains;
mod drains;
mod features;
mod git_cmds;
mod logs;
mod pg;
mod pg_backups;
mod pg_diagnose;
mod ps;
mod redis;
mod releases;
mod router;
mod stacks;

/// The default git remote name.
pub const DEFAULT_REMOTE: &str = "slipway";

/// What every command works with.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// API base URL, resolved once.
    pub api_url: String,
    pub now: DateTime<Utc>,
    /// Action lines (`Adding x... done`) go to the error writer: set for `--json`, so that
    /// standard output is the JSON alone.
    pub labels_to_err: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(env: &'a Env, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Ctx<'a> {
        Ctx {
            api_url: env.api_url(),
            env,
            out,
            err,
            now: Utc::now(),
            labels_to_err: false,
        }
    }

    /// Where action lines go (see [`Ctx::labels_to_err`]).
    fn labels(&mut self) -> &mut dyn Write {
        if self.labels_to_err {
            &mut *self.err
        } else {
            &mut *self.out
        }
    }

    /// Ends an action's line with `done`.
    pub fn done(&mut self) -> Result<()> {
        writeln!(self.labels(), "done")?;
        Ok(())
    }

    /// The API key in use, or the "not logged in" error.
    pub fn key(&self) -> Result<String> {
        self.env
            .api_key(&self.api_url)?
            .ok_or_else(|| anyhow!("Not logged in. Run slipway login, or set SLIPWAY_API_KEY."))
    }

    /// An authenticated API client.
    pub fn api(&self) -> Result<Api> {
        let key = self.key()?;
        Api::new(&self.api_url, Some(&key))
    }

    /// Git in the working directory.
    pub fn git(&self) -> Git {
        Git::new(&self.env.cwd, self.env.home.as_deref())
    }

    /// The app a command acts on: `--app`, else `SLIPWAY_APP`, else the app named by the
    /// `--remote` (default `slipway`) git remote, else the only app that the repository's remotes
    /// on this Slipway point at.
    pub fn app(&self, args: &AppArgs) -> Result<String> {
        if let Some(app) = args.app.as_ref().or(self.env.app.as_ref()) {
            return Ok(app.clone());
        }
        let git = self.git();
        if let Some(remote) = &args.remote {
            let url = git
                .remote_url(remote)
                .ok_or_else(|| anyhow!("No git remote named {remote} in this directory."))?;
            return app_from_git_url(&url)
                .ok_or_else(|| anyhow!("The git remote {remote} ({url}) does not name an app."));
        }
        if let Some(app) = git
            .remote_url(DEFAULT_REMOTE)
            .and_then(|u| app_from_git_url(&u))
        {
            return Ok(app);
        }
        // Like Heroku, accept any single remote that points at this server.
        let host = machine_name(&self.api_url);
        let mut apps: Vec<String> = git
            .remotes()
            .into_iter()
            .filter(|(_, url)| host.is_some() && machine_name(url) == host)
            .filter_map(|(_, url)| app_from_git_url(&url))
            .collect();
        apps.sort();
        apps.dedup();
        match apps.len() {
            1 => Ok(apps.remove(0)),
            0 => bail!(
                "No app specified. Run this command from an app folder or specify which app to use with --app APP."
            ),
            _ => bail!(
                "Multiple apps in git remotes ({}). Specify which app to use with --app APP or --remote REMOTE.",
                apps.join(", ")
            ),
        }
    }

    /// The git remote named in `git push` hints.
    pub fn remote_name(args: &AppArgs) -> &str {
        args.remote.as_deref().unwrap_or(DEFAULT_REMOTE)
    }

    /// Prints `label... `, runs `work`, and on failure ends the line with `!`. The caller prints
    /// `done...` on success, since what follows `done` depends on the answer.
    pub async fn action<T>(
        &mut self,
        label: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        write!(self.labels(), "{label}... ")?;
        self.labels().flush()?;
        match work.await {
            Ok(v) => Ok(v),
            Err(e) => {
                writeln!(self.labels(), "!")?;
                Err(e)
            }
        }
    }

    /// Prints a value as indented JSON.
    pub fn print_json(&mut self, value: &Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        writeln!(self.out, "{text}")?;
        Ok(())
    }

    /// Prints a warning line on the error writer, in Heroku's style.
    pub fn warn(&mut self, message: &str) -> Result<()> {
        writeln!(self.err, " ▸    Warning: {message}")?;
        Ok(())
    }
}

/// Ends the CLI with this exit status (an attached command's) without an error message.
#[derive(Debug)]
pub struct ExitStatus(pub i32);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Process exited with code {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

/// Runs a local program (`psql`, `redis-cli`) set up by a command. From a terminal
/// (`Input::Inherit`) the CLI becomes the program (exec), so it owns the terminal and its exit
/// status is the CLI's; with fixed input (tests, `Input::Text`) it runs as a child fed that input,
/// and its output and exit status are passed through.
pub fn run_local(ctx: &mut Ctx<'_>, mut cmd: Command, program: &Path) -> Result<()> {
    match &ctx.env.input {
        Input::Inherit => {
            use std::os::unix::process::CommandExt;
            ctx.out.flush()?;
            ctx.err.flush()?;
            // Only returns on failure.
            let e = cmd.exec();
            Err(e).with_context(|| format!("Cannot run {}", program.display()))
        }
        Input::Text(text) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("Cannot run {}", program.display()))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A program that exits without reading its input is not an error here.
                let _ = stdin.write_all(text.as_bytes());
            }
            let output = child.wait_with_output()?;
            ctx.out.write_all(&output.stdout)?;
            ctx.err.write_all(&output.stderr)?;
            match output.status.code() {
                Some(0) => Ok(()),
                Some(code) => Err(ExitStatus(code).into()),
                None => Err(ExitStatus(1).into()),
            }
        }
    }
}

/// Runs one parsed command.
pub async fn dispatch(ctx: &mut Ctx<'_>, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Apps(a) => apps::list(ctx, a.json).await,
        Cmd::AppsCreate(a) => apps::create(ctx, a).await,
        Cmd::AppsInfo(a) => apps::info(ctx, a).await,
        Cmd::AppsDestroy(a) => apps::destroy(ctx, a).await,
        Cmd::Config(a) => config::show(ctx, a).await,
        Cmd::ConfigGet(a) => config::get(ctx, a).await,
        Cmd::ConfigSet(a) => config::set(ctx, a).await,
        Cmd::ConfigUnset(a) => config::unset(ctx, a).await,
        Cmd::Releases(a) => releases::list(ctx, a).await,
        Cmd::ReleasesInfo(a) => releases::info(ctx, a).await,
        Cmd::Rollback(a) => releases::rollback(ctx, a).await,
        Cmd::Ps(a) => ps::list(ctx, a).await,
        Cmd::PsScale(a) => ps::scale(ctx, a).await,
        Cmd::PsType(a) => ps::resize(ctx, a).await,
        Cmd::Stacks(a) => stacks::list(ctx, a).await,
        Cmd::Stack(a) => stacks::show(ctx, a).await,
        Cmd::StackSet(a) => stacks::set(ctx, a).await,
        Cmd::PsStop(a) => ps::stop(ctx, a).await,
        Cmd::PsWait(a) => ps::wait(ctx, a).await,
        Cmd::PsBootTimeout(a) => ps::setting(ctx, a, "boot_timeout").await,
        Cmd::PsCycling(a) => ps::setting(ctx, a, "dyno_cycling").await,
        Cmd::Features(a) => features::list(ctx, a).await,
        Cmd::FeaturesInfo(a) => features::info(ctx, a).await,
        Cmd::FeaturesEnable(a) => features::set(ctx, a, true).await,
        Cmd::FeaturesDisable(a) => features::set(ctx, a, false).await,
        Cmd::Maintenance(a) => features::show_maintenance(ctx, a).await,
        Cmd::MaintenanceOn(a) => features::set_maintenance(ctx, a, true).await,
        Cmd::MaintenanceOff(a) => features::set_maintenance(ctx, a, false).await,
        Cmd::Domains(a) => domains::list(ctx, a).await,
        Cmd::DomainsAdd(a) => domains::add(ctx, a).await,
        Cmd::DomainsInfo(a) => domains::info(ctx, a).await,
        Cmd::DomainsRemove(a) => domains::remove(ctx, a).await,
        Cmd::Drains(a) => drains::list(ctx, a).await,
        Cmd::DrainsAdd(a) => drains::add(ctx, a).await,
        Cmd::DrainsRemove(a) => drains::remove(ctx, a).await,
        Cmd::Certs(a) => certs::list(ctx, a).await,
        Cmd::CertsAdd(a) => certs::add(ctx, a).await,
        Cmd::CertsInfo(a) => certs::info(ctx, a).await,
        Cmd::CertsUpdate(a) => certs::update(ctx, a).await,
        Cmd::CertsRemove(a) => certs::remove(ctx, a).await,
        Cmd::LogsRetention(a) => logs::retention(ctx, a).await,
        Cmd::LogsRetentionSet(a) => logs::retention_set(ctx, a).await,
        Cmd::RouterTimeouts(a) => router::list(ctx, a).await,
        Cmd::RouterTimeoutsSet(a) => router::set(ctx, a).await,
        Cmd::RouterTimeoutsUnset(a) => router::unset(ctx, a).await,
        Cmd::Run(a) => ps::run(ctx, a, true).await,
        Cmd::RunDetached(a) => ps::run(ctx, a, false).await,
        Cmd::PsRestart(a) => ps::restart(ctx, a).await,
        Cmd::Logs(a) => logs::logs(ctx, a).await,
        Cmd::Buildpacks(a) => buildpacks::list(ctx, a).await,
        Cmd::BuildpacksSet(a) => buildpacks::set(ctx, a).await,
        Cmd::BuildpacksAdd(a) => buildpacks::add(ctx, a).await,
        Cmd::BuildpacksRemove(a) => buildpacks::remove(ctx, a).await,
        Cmd::BuildpacksClear(a) => buildpacks::clear(ctx, a.app).await,
        Cmd::Addons(a) => addons::list(ctx, a).await,
        Cmd::AddonsServices(a) => addons::services(ctx, a).await,
        Cmd::AddonsPlans(a) => addons::plans(ctx, a).await,
        Cmd::AddonsCreate(a) => addons::create(ctx, a).await,
        Cmd::AddonsInfo(a) => addons::info(ctx, a).await,
        Cmd::AddonsAttach(a) => addons::attach(ctx, a).await,
        Cmd::AddonsDetach(a) => addons::detach(ctx, a).await,
        Cmd::AddonsUpgrade(a) => addons::upgrade(ctx, a).await,
        Cmd::AddonsDestroy(a) => addons::destroy(ctx, a).await,
        Cmd::PgInfo(a) => pg::info(ctx, a).await,
        Cmd::PgPsql(a) => pg::psql(ctx, a).await,
        Cmd::PgCredentials(a) => pg::credentials(ctx, a).await,
        Cmd::PgCredentialsUrl(a) => pg::credentials_url(ctx, a).await,
        Cmd::PgCredentialsRotate(a) => pg::credentials_rotate(ctx, a).await,
        Cmd::PgUnfollow(a) => pg::unfollow(ctx, a).await,
        Cmd::PgPs(a) => pg::ps(ctx, a).await,
        Cmd::PgKill(a) => pg::kill(ctx, a).await,
        Cmd::PgKillall(a) => pg::killall(ctx, a).await,
        Cmd::PgLocks(a) => pg::locks(ctx, a).await,
        Cmd::PgOutliers(a) => pg::outliers(ctx, a).await,
        Cmd::PgDiagnose(a) => pg_diagnose::diagnose(ctx, a).await,
        Cmd::PgBloat(a) => pg_diagnose::table(ctx, a, "/bloat").await,
        Cmd::PgIndexUsage(a) => pg_diagnose::table(ctx, a, "/index-usage").await,
        Cmd::PgCacheHit(a) => pg_diagnose::table(ctx, a, "/cache-hit").await,
        Cmd::PgExplain(a) => pg_diagnose::explain(ctx, a).await,
        Cmd::PgBackups(a) => pg_backups::list(ctx, a).await,
        Cmd::PgBackupsCapture(a) => pg_backups::capture(ctx, a).await,
        Cmd::PgBackupsInfo(a) => pg_backups::info(ctx, a).await,
        Cmd::PgBackupsUrl(a) => pg_backups::url(ctx, a).await,
        Cmd::PgBackupsDownload(a) => pg_backups::download(ctx, a).await,
        Cmd::PgBackupsRestore(a) => pg_backups::restore(ctx, a).await,
        Cmd::PgBackupsDelete(a) => pg_backups::delete(ctx, a).await,
        Cmd::PgBackupsSchedule(a) => pg_backups::schedule(ctx, a).await,
        Cmd::PgBackupsUnschedule(a) => pg_backups::unschedule(ctx, a).await,
        Cmd::PgBackupsSchedules(a) => pg_backups::schedules(ctx, a).await,
        Cmd::RedisInfo(a) => redis::info(ctx, a).await,
        Cmd::RedisMaxmemory(a) => redis::maxmemory(ctx, a).await,
        Cmd::RedisCli(a) => redis::cli(ctx, a).await,
        Cmd::Dataclips(a) => dataclips::list(ctx, a).await,
        Cmd::DataclipsCreate(a) => dataclips::create(ctx, a).await,
        Cmd::DataclipsInfo(a) => dataclips::info(ctx, a).await,
        Cmd::DataclipsUpdate(a) => dataclips::update(ctx, a).await,
        Cmd::DataclipsDestroy(a) => dataclips::destroy(ctx, a).await,
        Cmd::DataclipsRun(a) => dataclips::run(ctx, a).await,
        Cmd::DataclipsShare(a) => dataclips::share(ctx, a).await,
        Cmd::DataclipsUnshare(a) => dataclips::unshare(ctx, a).await,
        Cmd::DataclipsRotate(a) => dataclips::rotate(ctx, a).await,
        Cmd::DataclipsRevoke(a) => dataclips::revoke(ctx, a).await,
        Cmd::Access(a) => access::list(ctx, a).await,
        Cmd::AccessAdd(a) => access::add(ctx, a).await,
        Cmd::AccessRemove(a) => access::remove(ctx, a).await,
        Cmd::Accounts(a) => accounts::list(ctx, a).await,
        Cmd::AccountsAdd(a) => accounts::add(ctx, a).await,
        Cmd::Login(a) => auth::login(ctx, a).await,
        Cmd::Logout => auth::logout(ctx),
        Cmd::AuthToken => auth::token(ctx),
        Cmd::AuthWhoami => auth::whoami(ctx).await,
        Cmd::GitRemote(a) => git_cmds::remote(ctx, a).await,
        Cmd::GitCredentials(a) => git_cmds::credentials(ctx, a),
    }
}

/// Parses a release argument: `v3` or `3` becomes `3`; anything else (a release id) passes as is.
pub fn release_ref(arg: &str) -> String {
    let trimmed = arg.trim();
    match trimmed.strip_prefix(['v', 'V']) {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.to_owned(),
        _ => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_refs() {
        assert_eq!(release_ref("v3"), "3");
        assert_eq!(release_ref("12"), "12");
        assert_eq!(release_ref("abc-uuid"), "abc-uuid");
        assert_eq!(release_ref("v"), "v");
    }
}
