//! Command-line grammar (clap derive, Heroku's `topic:command` names) and the parsers for
//! `config:set KEY=value` and `ps:scale web=2:standard-2x` arguments.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use slipway_types::{validate_config_key, validate_process_type};

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "slipway",
    version,
    about = "Deploy and run apps on your own server, the Heroku way.",
    arg_required_else_help = true,
    color = clap::ColorChoice::Never,
    after_help = "Run `slipway help COMMAND` for a command's options. `slipway server` starts the server.\n\
                  `slipway proxy URL [--listen ADDR] [--ca-file FILE]`: serve a remote Slipway's API on a \
                  loopback address, for Heroku's CLI."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

/// Selects the app: `--app`, else `SLIPWAY_APP`, else the git remote.
#[derive(Debug, Clone, Default, Args)]
pub struct AppArgs {
    /// App to run the command against.
    #[arg(short = 'a', long = "app", value_name = "APP")]
    pub app: Option<String>,
    /// Git remote whose URL names the app [default: slipway].
    #[arg(short = 'r', long = "remote", value_name = "REMOTE")]
    pub remote: Option<String>,
}

#[derive(Debug, Args)]
pub struct JsonOnly {
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AppJson {
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List your apps.
    #[command(name = "apps", visible_alias = "apps:list")]
    Apps(JsonOnly),
    /// Create an app (and a `slipway` git remote when run in a git repository).
    #[command(name = "apps:create", visible_alias = "create")]
    AppsCreate(AppsCreate),
    /// Show an app's details.
    #[command(name = "apps:info", visible_alias = "info")]
    AppsInfo(AppsInfo),
    /// Permanently destroy an app.
    #[command(name = "apps:destroy", visible_alias = "destroy")]
    AppsDestroy(AppsDestroy),
    /// Show an app's config vars.
    #[command(name = "config")]
    Config(ConfigShow),
    /// Print one config var's value.
    #[command(name = "config:get")]
    ConfigGet(ConfigGet),
    /// Set config vars and restart the app.
    #[command(name = "config:set", visible_alias = "config:add")]
    ConfigSet(ConfigSet),
    /// Unset config vars and restart the app.
    #[command(name = "config:unset", visible_alias = "config:remove")]
    ConfigUnset(ConfigUnset),
    /// List an app's releases, newest first.
    #[command(name = "releases")]
    Releases(Releases),
    /// Show one release (the current one by default).
    #[command(name = "releases:info")]
    ReleasesInfo(ReleasesInfo),
    /// Roll back to an earlier release (by default the one before the current one).
    #[command(name = "rollback", visible_alias = "releases:rollback")]
    Rollback(Rollback),
    /// List an app's dynos.
    #[command(name = "ps")]
    Ps(Ps),
    /// Scale process types: `web=2`, `worker+1`, `web=2:standard-2x`.
    #[command(name = "ps:scale", visible_alias = "scale")]
    PsScale(PsScale),
    /// List the stacks this server can run apps on.
    #[command(name = "stacks")]
    Stacks(StacksArgs),
    /// Show an app's stack among the available ones.
    #[command(name = "stack")]
    Stack(AppJson),
    /// Set the stack the app's next build runs on.
    #[command(name = "stack:set")]
    StackSet(StackSet),
    /// Change dyno sizes: `web=standard-2x worker=basic`, or one size for every type.
    #[command(name = "ps:type", visible_aliases = ["ps:resize", "resize"])]
    PsType(PsType),
    /// Stop a dyno or every dyno of a type (`run.1234` ends; formation dynos start again).
    #[command(name = "ps:stop", visible_alias = "stop")]
    PsStop(PsStop),
    /// Wait until every dyno runs the current release.
    #[command(name = "ps:wait")]
    PsWait(PsWait),
    /// Show or set how long web dynos have to bind $PORT (1-120 s, or `default`).
    #[command(name = "ps:boot-timeout")]
    PsBootTimeout(PsSetting),
    /// Show or set daily dyno cycling: `daily`, `off`, or a time such as 04:30 (UTC).
    #[command(name = "ps:cycling")]
    PsCycling(PsSetting),
    /// List the app's features and whether each is on.
    #[command(name = "features")]
    Features(AppJson),
    /// Show one feature.
    #[command(name = "features:info")]
    FeaturesInfo(FeatureArgs),
    /// Turn a feature on (`preboot`, `http-session-affinity`, `http-least-outstanding`,
    /// `http2-to-dyno`, `http-to-https-redirect`).
    #[command(name = "features:enable")]
    FeaturesEnable(FeatureArgs),
    /// Turn a feature off.
    #[command(name = "features:disable")]
    FeaturesDisable(FeatureArgs),
    /// Show whether maintenance mode is on.
    #[command(name = "maintenance")]
    Maintenance(AppArgsOnly),
    /// Turn maintenance mode on: the router answers 503 with a maintenance page.
    #[command(name = "maintenance:on")]
    MaintenanceOn(AppArgsOnly),
    /// Turn maintenance mode off.
    #[command(name = "maintenance:off")]
    MaintenanceOff(AppArgsOnly),
    /// List the app's domains: its own <app>.<base-domain> and custom ones.
    #[command(name = "domains")]
    Domains(AppJson),
    /// Add a custom domain; prints the DNS target to point it at.
    #[command(name = "domains:add")]
    DomainsAdd(DomainAdd),
    /// Show one domain.
    #[command(name = "domains:info")]
    DomainsInfo(DomainArgs),
    /// Remove a custom domain.
    #[command(name = "domains:remove")]
    DomainsRemove(DomainArgs),
    /// List the app's log drains.
    #[command(name = "drains")]
    Drains(AppJson),
    /// Also send the app's log lines to a syslog://, syslog+tls:// or https:// URL.
    #[command(name = "drains:add")]
    DrainsAdd(DrainArgs),
    /// Stop sending the app's log lines to a drain (by URL or token).
    #[command(name = "drains:remove")]
    DrainsRemove(DrainArgs),
    /// List the app's SSL certificates (served by SNI for its custom domains).
    #[command(name = "certs")]
    Certs(AppJson),
    /// Add an SSL certificate from a PEM chain file and a PEM key file.
    #[command(name = "certs:add")]
    CertsAdd(CertFiles),
    /// Show an SSL certificate's domains, issuer and expiry.
    #[command(name = "certs:info")]
    CertsInfo(CertName),
    /// Replace an SSL certificate with a new chain and key.
    #[command(name = "certs:update")]
    CertsUpdate(CertFiles),
    /// Remove an SSL certificate.
    #[command(name = "certs:remove")]
    CertsRemove(CertRemove),
    /// How much of the app's log history is kept on disk.
    #[command(name = "logs:retention")]
    LogsRetention(AppJson),
    /// Change how much of the app's log history is kept on disk.
    #[command(name = "logs:retention:set")]
    LogsRetentionSet(RetentionSet),
    /// Show the router's timeouts for the app: app-wide (/) and per path prefix.
    #[command(name = "router:timeouts")]
    RouterTimeouts(AppJson),
    /// Set the time to the first response byte and the idle time, app-wide or for a path prefix.
    #[command(name = "router:timeouts:set")]
    RouterTimeoutsSet(TimeoutsSet),
    /// Remove a path prefix's own timeouts (for / : back to the defaults, 30 s and 55 s).
    #[command(name = "router:timeouts:unset")]
    RouterTimeoutsUnset(TimeoutsUnset),
    /// Run a command in a one-off dyno, attached to this terminal.
    #[command(name = "run")]
    Run(Run),
    /// Run a command in a one-off dyno in the background; its output goes to the logs.
    #[command(name = "run:detached")]
    RunDetached(Run),
    /// Restart all dynos, one process type's dynos, or one dyno.
    #[command(name = "ps:restart", visible_alias = "restart")]
    PsRestart(PsRestart),
    /// Show an app's logs (`--tail` to keep following them).
    #[command(name = "logs")]
    Logs(Logs),
    /// List an app's buildpacks.
    #[command(name = "buildpacks")]
    Buildpacks(AppJson),
    /// Set the buildpack (replacing the first, or the one at --index).
    #[command(name = "buildpacks:set")]
    BuildpacksSet(BuildpackChange),
    /// Add a buildpack (last, or at --index).
    #[command(name = "buildpacks:add")]
    BuildpacksAdd(BuildpackChange),
    /// Remove a buildpack, by URL or --index.
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove(BuildpackRemove),
    /// Remove every buildpack, so the next build detects them again.
    #[command(name = "buildpacks:clear")]
    BuildpacksClear(AppArgsOnly),
    /// List the app's add-ons and where each is attached (`--all`: every add-on you can see).
    #[command(name = "addons", visible_alias = "addons:list")]
    Addons(AddonsList),
    /// List the add-on services this server offers.
    #[command(name = "addons:services")]
    AddonsServices(JsonOnly),
    /// List a service's plans and the limits each enforces.
    #[command(name = "addons:plans")]
    AddonsPlans(AddonsPlans),
    /// Create an add-on (`heroku-postgresql`, `heroku-redis:premium-0`...) and attach it to the app.
    #[command(name = "addons:create", visible_alias = "addons:add")]
    AddonsCreate(AddonsCreate),
    /// Show an add-on: plan, state, owning app and attachments.
    #[command(name = "addons:info")]
    AddonsInfo(AddonsInfo),
    /// Attach an existing add-on to another app, sharing its data.
    #[command(name = "addons:attach")]
    AddonsAttach(AddonsAttach),
    /// Detach an add-on from the app (the add-on itself stays).
    #[command(name = "addons:detach")]
    AddonsDetach(AddonsDetach),
    /// Change an add-on's plan, keeping its data.
    #[command(name = "addons:upgrade", visible_alias = "addons:downgrade")]
    AddonsUpgrade(AddonsUpgrade),
    /// Permanently destroy add-ons and their data.
    #[command(name = "addons:destroy", visible_alias = "addons:remove")]
    AddonsDestroy(AddonsDestroy),
    /// Show a Redis add-on's plan, version, memory and clients.
    #[command(name = "redis:info", visible_alias = "redis")]
    RedisInfo(RedisInfo),
    /// Set a Redis add-on's eviction policy (maxmemory-policy).
    #[command(name = "redis:maxmemory")]
    RedisMaxmemory(RedisMaxmemory),
    /// Open `redis-cli` on a Redis add-on.
    #[command(name = "redis:cli")]
    RedisCli(RedisCli),
    /// Show a Postgres database's plan, connections, size, tables and rows.
    #[command(name = "pg:info", visible_alias = "pg")]
    PgInfo(PgInfo),
    /// Open `psql` on a Postgres database with the app's credentials.
    #[command(name = "pg:psql", visible_alias = "psql")]
    PgPsql(PgPsql),
    /// List a Postgres database's credentials.
    #[command(name = "pg:credentials")]
    PgCredentials(PgDatabase),
    /// Show a credential's connection string and URL.
    #[command(name = "pg:credentials:url")]
    PgCredentialsUrl(PgCredentialsUrl),
    /// Give a credential a new password; its connections are closed and the apps restarted.
    #[command(name = "pg:credentials:rotate")]
    PgCredentialsRotate(PgCredentialsRotate),
    /// Stop a follower from following its leader: it becomes a writable database.
    #[command(name = "pg:unfollow")]
    PgUnfollow(PgUnfollow),
    /// Show the database's running queries (`--verbose`: idle connections too).
    #[command(name = "pg:ps")]
    PgPs(PgPs),
    /// Cancel a query (`--force`: end its connection).
    #[command(name = "pg:kill")]
    PgKill(PgKill),
    /// End every connection to the database.
    #[command(name = "pg:killall")]
    PgKillall(PgDatabase),
    /// Show queries holding exclusive locks and how long they have been running.
    #[command(name = "pg:locks")]
    PgLocks(PgLocks),
    /// Show the queries that took the most time (from pg_stat_statements).
    #[command(name = "pg:outliers")]
    PgOutliers(PgOutliers),
    /// Run Heroku's health checks on a Postgres database and grade each red, yellow or green;
    /// with a report id, show that report again (reports are kept for a month).
    #[command(name = "pg:diagnose")]
    PgDiagnose(PgDiagnose),
    /// Show the estimated bloat (wasted space) of the database's tables and indexes.
    #[command(name = "pg:bloat")]
    PgBloat(PgDatabase),
    /// Show how often each table is read through an index rather than a sequential scan.
    #[command(name = "pg:index-usage")]
    PgIndexUsage(PgDatabase),
    /// Show the share of index and table reads served from the buffer cache.
    #[command(name = "pg:cache-hit")]
    PgCacheHit(PgDatabase),
    /// Show a query's plan (EXPLAIN ANALYZE, in a transaction that is rolled back).
    #[command(name = "pg:explain")]
    PgExplain(PgExplain),
    /// List the app's Postgres backups and backup schedules.
    #[command(name = "pg:backups")]
    PgBackups(AppArgsOnly),
    /// Capture a new backup (a `pg_dump -Fc` file) of a Postgres database.
    #[command(name = "pg:backups:capture")]
    PgBackupsCapture(PgBackupsCapture),
    /// Show one backup (the newest by default).
    #[command(name = "pg:backups:info")]
    PgBackupsInfo(PgBackupArg),
    /// Print a URL the backup can be downloaded from for an hour, without credentials.
    #[command(name = "pg:backups:url", visible_alias = "pg:backups:public-url")]
    PgBackupsUrl(PgBackupArg),
    /// Download a backup to a file (latest.dump by default).
    #[command(name = "pg:backups:download")]
    PgBackupsDownload(PgBackupsDownload),
    /// Replace a database's data with a backup's.
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore(PgBackupsRestore),
    /// Delete a backup.
    #[command(name = "pg:backups:delete")]
    PgBackupsDelete(PgBackupsDelete),
    /// Capture a backup of a database every day at a given time.
    #[command(name = "pg:backups:schedule")]
    PgBackupsSchedule(PgBackupsSchedule),
    /// Stop a database's daily backups.
    #[command(name = "pg:backups:unschedule")]
    PgBackupsUnschedule(PgDatabase),
    /// List the app's daily backup schedules.
    #[command(name = "pg:backups:schedules")]
    PgBackupsSchedules(AppArgsOnly),
    /// List the app's dataclips: saved queries whose results are shared through a secret link.
    #[command(name = "dataclips")]
    Dataclips(AppJson),
    /// Save a query (one SELECT statement) on a Postgres database as a dataclip and print its link.
    #[command(name = "dataclips:create")]
    DataclipsCreate(DataclipsCreate),
    /// Show a dataclip: its database, creator, who may read it, and its SQL.
    #[command(name = "dataclips:info")]
    DataclipsInfo(DataclipArgs),
    /// Change a dataclip's title or SQL.
    #[command(name = "dataclips:update")]
    DataclipsUpdate(DataclipsUpdate),
    /// Permanently destroy a dataclip; its link stops working.
    #[command(name = "dataclips:destroy")]
    DataclipsDestroy(DataclipsDestroy),
    /// Run a dataclip's query and print the result (a table, --csv or --json).
    #[command(name = "dataclips:run")]
    DataclipsRun(DataclipsRun),
    /// Let anyone holding the link (--everyone) or one more account (--user EMAIL) read a
    /// dataclip's results.
    #[command(name = "dataclips:share")]
    DataclipsShare(DataclipsShare),
    /// Stop letting anyone holding the link (--everyone) or an account (--user EMAIL) read a
    /// dataclip's results.
    #[command(name = "dataclips:unshare")]
    DataclipsUnshare(DataclipsShare),
    /// Give a dataclip a new link and print it; the old link stops working at once.
    #[command(name = "dataclips:rotate")]
    DataclipsRotate(DataclipArg),
    /// Revoke a dataclip's link: it stops working (`dataclips:rotate` makes a new one).
    #[command(name = "dataclips:revoke")]
    DataclipsRevoke(DataclipArg),
    /// List the app's owner and collaborators: the accounts that may use it.
    #[command(name = "access")]
    Access(AppJson),
    /// Let another account of this server use the app (owner only).
    #[command(name = "access:add")]
    AccessAdd(AccessArgs),
    /// Stop letting an account use the app (owner only; a collaborator may remove itself).
    #[command(name = "access:remove")]
    AccessRemove(AccessArgs),
    /// List the accounts of this server (admin only).
    #[command(name = "accounts")]
    Accounts(JsonOnly),
    /// Add an account and print its API key, once (admin only).
    #[command(name = "accounts:add")]
    AccountsAdd(AccountsAdd),
    /// Save an API key in ~/.netrc after checking it.
    #[command(name = "login", visible_alias = "auth:login")]
    Login(Login),
    /// Remove the saved API key from ~/.netrc.
    #[command(name = "logout", visible_alias = "auth:logout")]
    Logout,
    /// Print the API key in use.
    #[command(name = "auth:token")]
    AuthToken,
    /// Print the email of the account the key belongs to.
    #[command(name = "auth:whoami", visible_alias = "whoami")]
    AuthWhoami,
    /// Point a git remote (default `slipway`) at an app and set up push credentials.
    #[command(name = "git:remote")]
    GitRemote(GitRemote),
    /// Git credential helper: answers `get` with the API key (used by `git push`).
    #[command(name = "git:credentials", hide = true)]
    GitCredentials(GitCredentials),
}

#[derive(Debug, Args)]
pub struct AppArgsOnly {
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct AppsCreate {
    /// Name of the app; the server picks one when omitted.
    pub name: Option<String>,
    /// Name of the git remote to create.
    #[arg(short = 'r', long = "remote", default_value = "slipway")]
    pub remote: String,
    /// Do not create a git remote.
    #[arg(long)]
    pub no_remote: bool,
    /// Buildpack to set on the new app.
    #[arg(short = 'b', long = "buildpack", value_name = "URL")]
    pub buildpack: Option<String>,
    /// Print the raw JSON of the new app.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AppsInfo {
    /// App name (same as --app).
    #[arg(value_name = "APP")]
    pub name: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AppsDestroy {
    /// App name (same as --app).
    #[arg(value_name = "APP")]
    pub name: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConfigShow {
    #[command(flatten)]
    pub app: AppArgs,
    /// Print `KEY=value` lines for a shell.
    #[arg(short = 's', long)]
    pub shell: bool,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigGet {
    /// The config var's name.
    pub key: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print `KEY=value` for a shell.
    #[arg(short = 's', long)]
    pub shell: bool,
}

#[derive(Debug, Args)]
pub struct ConfigSet {
    /// `KEY=value` pairs.
    #[arg(value_name = "KEY=VALUE", required = true)]
    pub pairs: Vec<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct ConfigUnset {
    /// Names of the config vars to unset.
    #[arg(value_name = "KEY", required = true)]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct Releases {
    #[command(flatten)]
    pub app: AppArgs,
    /// How many releases to show.
    #[arg(short = 'n', long = "num", default_value_t = 15)]
    pub num: u32,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleasesInfo {
    /// Release version (`v3` or `3`); the current release when omitted.
    pub release: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the release's config vars as `KEY=value` lines.
    #[arg(short = 's', long)]
    pub shell: bool,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Rollback {
    /// Release to roll back to (`v3` or `3`).
    pub release: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct Ps {
    /// Only show these process types.
    #[arg(value_name = "TYPE")]
    pub types: Vec<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PsScale {
    /// Changes such as `web=2`, `worker+1`, `web-1`, `web=2:standard-2x`.
    #[arg(value_name = "TYPE=N")]
    pub changes: Vec<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct StackSet {
    /// The stack, e.g. `slipway-host` (see `slipway stacks`).
    #[arg(value_name = "STACK")]
    pub stack: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct StacksArgs {
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PsType {
    /// `TYPE=SIZE` pairs, or a single SIZE for every process type.
    #[arg(value_name = "TYPE=SIZE")]
    pub changes: Vec<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the formation as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PsStop {
    /// The dyno to stop, e.g. `run.1234` or `web.1`, or a process type, e.g. `worker`.
    #[arg(value_name = "DYNO")]
    pub dyno: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PsWait {
    /// Wait only for dynos of this process type.
    #[arg(short = 't', long = "type")]
    pub process_type: Option<String>,
    /// Seconds between checks.
    #[arg(short = 'w', long = "wait-interval", default_value_t = 2)]
    pub wait_interval: u64,
    /// Give up after this many seconds (default: wait as long as it takes).
    #[arg(long)]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PsSetting {
    /// The new value; without it, the current one is shown.
    #[arg(value_name = "VALUE")]
    pub value: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct FeatureArgs {
    /// The feature, e.g. `preboot`.
    #[arg(value_name = "FEATURE")]
    pub feature: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DomainAdd {
    /// The domain, e.g. `www.example.com` or `*.example.com`.
    #[arg(value_name = "HOSTNAME")]
    pub hostname: String,
    /// The SSL certificate (see `certs`) to serve it with; one that covers it is used anyway.
    #[arg(long, value_name = "NAME")]
    pub cert: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the new domain as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DomainArgs {
    /// The domain, e.g. `www.example.com`.
    #[arg(value_name = "HOSTNAME")]
    pub hostname: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The drain URL (`syslog://host:port`, `syslog+tls://host:port`, `https://user:pass@host/path`),
    /// or for `drains:remove` its token `d.<uuid>`.
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CertFiles {
    /// PEM file with the certificate, then any intermediates.
    #[arg(value_name = "CRT")]
    pub cert: std::path::PathBuf,
    /// PEM file with the certificate's private key.
    #[arg(value_name = "KEY")]
    pub key: std::path::PathBuf,
    /// The certificate to replace (certs:update; needed when the app has several).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the certificate as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CertName {
    /// The certificate (needed when the app has several).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CertRemove {
    /// The certificate (needed when the app has several).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct RetentionSet {
    /// Megabytes of history to keep (1-100000; default 100).
    #[arg(long, value_name = "MB")]
    pub size: Option<u64>,
    /// Days of history to keep (1-365; default 7).
    #[arg(long, value_name = "DAYS")]
    pub age: Option<u64>,
    /// Go back to the defaults.
    #[arg(long, conflicts_with_all = ["size", "age"])]
    pub default: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct TimeoutsSet {
    /// Path prefix the timeouts apply to (the longest matching prefix wins).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub path: String,
    /// Seconds to the first response byte (1-3600; default 30).
    #[arg(long, value_name = "SECS")]
    pub response: Option<u32>,
    /// Seconds a connection may stay idle, each way, after the first byte (1-3600; default 55).
    #[arg(long, value_name = "SECS")]
    pub idle: Option<u32>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct TimeoutsUnset {
    /// Path prefix whose own timeouts to remove.
    #[arg(long, value_name = "PATH", required = true)]
    pub path: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct Run {
    /// The command and its arguments.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
    /// Dyno size (`basic`, `standard-2x`...).
    #[arg(short = 's', long)]
    pub size: Option<String>,
    /// Extra environment, `KEY=value;KEY2=value2`.
    #[arg(short = 'e', long)]
    pub env: Option<String>,
    /// Use pipes instead of a terminal (the default when stdin is not a terminal).
    #[arg(long)]
    pub no_tty: bool,
    /// Exit with the command's status (always the case; accepted for Heroku's CLI users).
    #[arg(short = 'x', long)]
    pub exit_code: bool,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the dyno as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PsRestart {
    /// A process type (`web`) or a dyno (`web.1`); all dynos when omitted.
    #[arg(value_name = "DYNO")]
    pub target: Option<String>,
    /// Restart the dynos of this process type.
    #[arg(short = 'p', long = "process-type", conflicts_with_all = ["target", "dyno_name"])]
    pub process_type: Option<String>,
    /// Restart this dyno.
    #[arg(short = 'd', long = "dyno-name", conflicts_with = "target")]
    pub dyno_name: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct Logs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Number of lines to show (100; with --since, --until or --grep, the newest 1500 found).
    #[arg(short = 'n', long = "num")]
    pub num: Option<u32>,
    /// Keep following new lines.
    #[arg(short = 't', long)]
    pub tail: bool,
    /// Lines from this time on, from the history kept on disk: an age (`2h`, `30m`, `1d`) or a
    /// time (`2026-11-26T10:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Lines up to this time: an age (`10m`) or a time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only lines containing this text (searches the history kept on disk).
    #[arg(long)]
    pub grep: Option<String>,
    /// Only lines from this dyno (`web.1`) or process type (`web`).
    #[arg(short = 'd', long = "dyno", visible_alias = "dyno-name")]
    pub dyno: Option<String>,
    /// Only lines of this process type (same as --dyno web).
    #[arg(
        short = 'p',
        long = "process-type",
        visible_alias = "ps",
        conflicts_with = "dyno"
    )]
    pub process_type: Option<String>,
    /// Only lines from this source: `app` or `heroku`.
    #[arg(short = 's', long)]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildpackChange {
    /// Buildpack URL or name.
    pub buildpack: String,
    /// 1-based position in the buildpack list.
    #[arg(short = 'i', long)]
    pub index: Option<usize>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct BuildpackRemove {
    /// Buildpack URL or name.
    pub buildpack: Option<String>,
    /// 1-based position of the buildpack to remove.
    #[arg(
        short = 'i',
        long,
        conflicts_with = "buildpack",
        required_unless_present = "buildpack"
    )]
    pub index: Option<usize>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct Login {
    /// The API key; read from standard input when omitted.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct GitRemote {
    /// App the remote should point at.
    #[arg(short = 'a', long = "app", value_name = "APP")]
    pub app: Option<String>,
    /// Name of the remote to set.
    #[arg(short = 'r', long = "remote", default_value = "slipway")]
    pub remote: String,
}

#[derive(Debug, Args)]
pub struct GitCredentials {
    /// `get`, `store` or `erase`, as git passes it.
    pub operation: String,
}

#[derive(Debug, Args)]
pub struct AddonsList {
    /// Every add-on you can see, on any app.
    #[arg(short = 'A', long)]
    pub all: bool,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddonsPlans {
    /// The service, e.g. `heroku-postgresql` (see `addons:services`).
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddonsCreate {
    /// `SERVICE` or `SERVICE:PLAN`, e.g. `heroku-postgresql:essential-1`.
    #[arg(value_name = "SERVICE:PLAN")]
    pub plan: String,
    /// Name of the attachment (its config var prefix), e.g. `DATABASE`.
    #[arg(long = "as", value_name = "NAME")]
    pub attachment: Option<String>,
    /// Name of the add-on; the server picks one when omitted.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The app's name, to confirm replacing an attachment of the same name.
    #[arg(long, value_name = "APP")]
    pub confirm: Option<String>,
    /// Wait until the add-on is provisioned.
    #[arg(long)]
    pub wait: bool,
    /// Postgres: a read-only follower of this database (`DATABASE_URL`, an add-on name).
    #[arg(long, value_name = "DATABASE")]
    pub follow: Option<String>,
    /// Postgres: a writable copy of this database as of now.
    #[arg(long, value_name = "DATABASE")]
    pub fork: Option<String>,
    /// Postgres: with --fork, skip the copy's final checkpoint wait (Heroku's --fast).
    #[arg(long)]
    pub fast: bool,
    /// Postgres: a new database as this one was at --to TIME or --by DURATION ago.
    #[arg(long, value_name = "DATABASE")]
    pub rollback: Option<String>,
    /// With --rollback: the time, e.g. '2026-11-26 14:00:00 UTC'.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// With --rollback: how long ago, e.g. '3 hours'.
    #[arg(long, value_name = "DURATION")]
    pub by: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Settings for the provider, after `--`: `-- --KEY VALUE --FLAG`.
    #[arg(last = true, value_name = "-- --KEY VALUE")]
    pub config: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AddonsInfo {
    /// The add-on's name or id, or an attachment name on the app (`DATABASE`).
    #[arg(value_name = "ADDON")]
    pub addon: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddonsAttach {
    /// The add-on to attach, by name or id.
    #[arg(value_name = "ADDON")]
    pub addon: String,
    /// Name of the attachment (its config var prefix), e.g. `DATABASE`.
    #[arg(long = "as", value_name = "NAME")]
    pub attachment: Option<String>,
    /// The app's name, to confirm replacing an attachment of the same name.
    #[arg(long, value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct AddonsDetach {
    /// The attachment to remove, e.g. `DATABASE` or `HEROKU_POSTGRESQL_ONYX`.
    #[arg(value_name = "ATTACHMENT")]
    pub attachment: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct AddonsUpgrade {
    /// The add-on, by name, id or attachment name.
    #[arg(value_name = "ADDON")]
    pub addon: String,
    /// The new plan: `essential-1` or `heroku-postgresql:essential-1`.
    #[arg(value_name = "PLAN")]
    pub plan: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct AddonsDestroy {
    /// The add-ons, by name, id or attachment name.
    #[arg(value_name = "ADDON", required = true)]
    pub addons: Vec<String>,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    /// Destroy even while the add-on is attached to other apps.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct RedisInfo {
    /// The Redis attachment or add-on [default: REDIS].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RedisMaxmemory {
    /// The Redis attachment or add-on [default: REDIS].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// The eviction policy: noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru,
    /// volatile-lfu, volatile-random or volatile-ttl.
    #[arg(short = 'p', long, value_name = "POLICY", required = true)]
    pub policy: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct RedisCli {
    /// The Redis attachment or add-on [default: REDIS].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgDatabase {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgInfo {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PgPsql {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// SQL to run instead of an interactive session.
    #[arg(short = 'c', long, value_name = "COMMAND")]
    pub command: Option<String>,
    /// A file of SQL to run.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgCredentialsUrl {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// The credential.
    #[arg(
        short = 'n',
        long,
        value_name = "CREDENTIAL",
        default_value = "default"
    )]
    pub name: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgUnfollow {
    /// The follower, e.g. `HEROKU_POSTGRESQL_ONYX_URL`.
    #[arg(value_name = "DATABASE")]
    pub database: String,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgCredentialsRotate {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// The credential.
    #[arg(
        short = 'n',
        long,
        value_name = "CREDENTIAL",
        default_value = "default"
    )]
    pub name: String,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgPs {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// Also show idle connections.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgKill {
    /// The process id of the backend (see `pg:ps`).
    #[arg(value_name = "PID")]
    pub pid: u32,
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// End the connection (pg_terminate_backend) instead of cancelling its query.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgLocks {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// Cut queries to 40 characters.
    #[arg(short = 't', long)]
    pub truncate: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgOutliers {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// How many queries to show.
    #[arg(short = 'n', long = "num", default_value_t = 10)]
    pub num: u32,
    /// Cut queries to 40 characters.
    #[arg(short = 't', long)]
    pub truncate: bool,
    /// Reset the statistics instead of showing them.
    #[arg(long)]
    pub reset: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgDiagnose {
    /// The Postgres attachment or add-on to check [default: DATABASE], or the id of an earlier
    /// report to show.
    #[arg(value_name = "DATABASE|REPORT_ID")]
    pub target: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(allow_missing_positional = true)]
pub struct PgExplain {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// The query to explain.
    #[arg(value_name = "SQL", required = true)]
    pub sql: String,
    /// Plan the query without running it (plain EXPLAIN).
    #[arg(long = "no-analyze")]
    pub no_analyze: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgBackupsCapture {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// Seconds between progress checks.
    #[arg(long = "wait-interval", value_name = "SECONDS", default_value_t = 3)]
    pub wait_interval: u64,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgBackupArg {
    /// The backup: `b001`, its id, or `latest` (the newest completed one).
    #[arg(value_name = "BACKUP")]
    pub backup: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgBackupsDownload {
    /// The backup: `b001`, its id, or `latest` (the newest completed one) [default: latest].
    #[arg(value_name = "BACKUP")]
    pub backup: Option<String>,
    /// The file to write.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "latest.dump")]
    pub output: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgBackupsRestore {
    /// The backup: `b001`, its id, or `latest` (the newest completed one) [default: latest].
    #[arg(value_name = "BACKUP")]
    pub backup: Option<String>,
    /// The Postgres attachment or add-on to restore into [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgBackupsDelete {
    /// The backup: `b001` or its id.
    #[arg(value_name = "BACKUP")]
    pub backup: String,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct PgBackupsSchedule {
    /// The Postgres attachment or add-on, e.g. `HEROKU_POSTGRESQL_ONYX_URL` [default: DATABASE].
    #[arg(value_name = "DATABASE")]
    pub database: Option<String>,
    /// When to capture the daily backup: `HH:MM` (24-hour), optionally followed by the time
    /// zone, which must be UTC for now (e.g. `02:00 UTC`).
    #[arg(long, value_name = "'HH:MM UTC'")]
    pub at: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct DataclipsCreate {
    /// The dataclip's title, unique on the app, e.g. 'Active users'.
    #[arg(value_name = "TITLE")]
    pub title: String,
    /// The query: one SELECT statement (read from standard input when neither --sql nor --file
    /// is given and it is not a terminal).
    #[arg(long, value_name = "SQL", conflicts_with = "file")]
    pub sql: Option<String>,
    /// A file holding the query.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// The Postgres attachment or add-on to read, e.g. `HEROKU_POSTGRESQL_ONYX_URL`
    /// [default: DATABASE].
    #[arg(long, value_name = "DATABASE")]
    pub database: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the new dataclip as JSON (with its URL).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DataclipArgs {
    /// The dataclip: its title or id.
    #[arg(value_name = "CLIP")]
    pub clip: String,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DataclipArg {
    /// The dataclip: its title or id.
    #[arg(value_name = "CLIP")]
    pub clip: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct DataclipsUpdate {
    /// The dataclip: its title or id.
    #[arg(value_name = "CLIP")]
    pub clip: String,
    /// The new title.
    #[arg(long, value_name = "TITLE")]
    pub title: Option<String>,
    /// The new query: one SELECT statement.
    #[arg(long, value_name = "SQL", conflicts_with = "file")]
    pub sql: Option<String>,
    /// A file holding the new query.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub app: AppArgs,
    /// Print the updated dataclip as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DataclipsDestroy {
    /// The dataclip: its title or id.
    #[arg(value_name = "CLIP")]
    pub clip: String,
    /// The app's name again, to confirm.
    #[arg(short = 'c', long = "confirm", value_name = "APP")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct DataclipsRun {
    /// The dataclip: its title or id.
    #[arg(value_name = "CLIP")]
    pub clip: String,
    /// Print the result as CSV (a header row, then the rows; NULL as an empty field).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Print the result object as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["everyone", "user"])))]
pub struct DataclipsShare {
    /// The dataclip: its title or id.
    #[arg(value_name = "CLIP")]
    pub clip: String,
    /// Anyone holding the link, without an account.
    #[arg(long)]
    pub everyone: bool,
    /// One account of this server, by email.
    #[arg(long, value_name = "EMAIL")]
    pub user: Option<String>,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The account's email.
    #[arg(value_name = "EMAIL")]
    pub email: String,
    #[command(flatten)]
    pub app: AppArgs,
}

#[derive(Debug, Args)]
pub struct AccountsAdd {
    /// The new account's email.
    #[arg(value_name = "EMAIL")]
    pub email: String,
    /// The new account's name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the new account as JSON (with its API key).
    #[arg(long)]
    pub json: bool,
}

/// Parses the provider settings given after `--` in `addons:create`: `--KEY VALUE`,
/// `--KEY=VALUE`, and `--FLAG` alone (sent as `true`), as Heroku's CLI does.
pub fn parse_addon_config(args: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    let mut config = serde_json::Map::new();
    let mut rest = args.iter().peekable();
    while let Some(arg) = rest.next() {
        let Some(key) = arg.strip_prefix("--").filter(|k| !k.is_empty()) else {
            bail!("Unexpected argument {arg}. Give provider settings as -- --KEY VALUE.");
        };
        if let Some((key, value)) = key.split_once('=') {
            config.insert(key.to_owned(), Value::String(value.to_owned()));
            continue;
        }
        match rest.next_if(|next| !next.starts_with("--")) {
            Some(value) => config.insert(key.to_owned(), Value::String(value.clone())),
            None => config.insert(key.to_owned(), Value::Bool(true)),
        };
    }
    Ok(config)
}

/// Parses `KEY=value` arguments (the value may contain `=` or be empty).
pub fn parse_config_pairs(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            bail!("{arg} is invalid. Must be in the format KEY=value.");
        };
        if let Err(msg) = validate_config_key(key) {
            bail!(msg);
        }
        pairs.retain(|(k, _)| k != key);
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// One `ps:scale` change, as sent in `PATCH /apps/{app}/formation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleChange {
    pub process_type: String,
    /// `"2"`, `"+1"` or `"-1"`, sent as a string as Heroku's CLI does.
    pub quantity: String,
    pub size: Option<String>,
}

/// Parses `web=2`, `web+1`, `worker-1` and `web=2:standard-2x`.
pub fn parse_scale_change(arg: &str) -> Result<ScaleChange> {
    let bad = || {
        anyhow::anyhow!(
            "Invalid argument {arg:?}. Use TYPE=N, TYPE+N or TYPE-N, optionally with :SIZE (e.g. web=2:standard-2x)."
        )
    };
    let (head, size) = match arg.split_once(':') {
        Some((h, s)) if !s.is_empty() => (h, Some(s.to_owned())),
        Some(_) => return Err(bad()),
        None => (arg, None),
    };
    let (process_type, quantity) = if let Some((ty, n)) = head.split_once('=') {
        (ty, n.to_owned())
    } else {
        let i = head.rfind(['+', '-']).ok_or_else(bad)?;
        (&head[..i], head[i..].to_owned())
    };
    let digits = quantity.trim_start_matches(['+', '-']);
    let sign_ok = quantity.len() - digits.len() <= 1;
    if process_type.is_empty()
        || digits.is_empty()
        || !sign_ok
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    slipway_types::QuantityChange::parse(&quantity).map_err(|_| bad())?;
    validate_process_type(process_type).map_err(anyhow::Error::msg)?;
    Ok(ScaleChange {
        process_type: process_type.to_owned(),
        quantity,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_pairs() {
        let pairs = parse_config_pairs(&strings(&["A=1", "B=x=y", "C=", "A=2"])).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("B".into(), "x=y".into()),
                ("C".into(), String::new()),
                ("A".into(), "2".into())
            ]
        );
        let err = parse_config_pairs(&strings(&["FOO"]))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "FOO is invalid. Must be in the format KEY=value.");
        assert!(parse_config_pairs(&strings(&["1X=2"])).is_err());
        assert!(parse_config_pairs(&strings(&["=2"])).is_err());
    }

    #[test]
    fn scale_changes() {
        let c = |t: &str, q: &str, s: Option<&str>| ScaleChange {
            process_type: t.into(),
            quantity: q.into(),
            size: s.map(Into::into),
        };
        assert_eq!(parse_scale_change("web=2").unwrap(), c("web", "2", None));
        assert_eq!(parse_scale_change("web+1").unwrap(), c("web", "+1", None));
        assert_eq!(
            parse_scale_change("worker-1").unwrap(),
            c("worker", "-1", None)
        );
        assert_eq!(
            parse_scale_change("web=2:standard-2x").unwrap(),
            c("web", "2", Some("standard-2x"))
        );
        assert_eq!(
            parse_scale_change("my-worker-3").unwrap(),
            c("my-worker", "-3", None)
        );
        assert_eq!(parse_scale_change("web=+1").unwrap(), c("web", "+1", None));
        for bad in [
            "web", "web=", "=2", "web=x", "web=2:", "web+", "we b=1", "web=--1",
        ] {
            assert!(parse_scale_change(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addon_config() {
        let config =
            parse_addon_config(&strings(&["--version", "15", "--fork=x=y", "--ha", "--b"]))
                .unwrap();
        assert_eq!(
            serde_json::Value::Object(config),
            serde_json::json!({"version": "15", "fork": "x=y", "ha": true, "b": true})
        );
        assert!(parse_addon_config(&strings(&["version"])).is_err());
        assert!(parse_addon_config(&strings(&["--"])).is_err());
        let cli = Cli::try_parse_from([
            "slipway",
            "addons:create",
            "heroku-postgresql:essential-1",
            "--as",
            "DB",
            "-a",
            "shop",
            "--",
            "--version",
            "15",
        ])
        .unwrap();
        match cli.command {
            Cmd::AddonsCreate(c) => {
                assert_eq!(c.plan, "heroku-postgresql:essential-1");
                assert_eq!(c.attachment.as_deref(), Some("DB"));
                assert_eq!(c.config, vec!["--version", "15"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_grammar() {
        let cli = Cli::try_parse_from(["slipway", "config:set", "A=1", "-a", "demo"]).unwrap();
        match cli.command {
            Cmd::ConfigSet(c) => {
                assert_eq!(c.pairs, vec!["A=1"]);
                assert_eq!(c.app.app.as_deref(), Some("demo"));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["slipway", "scale", "web-1", "worker=2"]).unwrap();
        assert!(matches!(cli.command, Cmd::PsScale(s) if s.changes == ["web-1", "worker=2"]));
        assert!(Cli::try_parse_from(["slipway", "config:set"]).is_err());
        assert!(Cli::try_parse_from(["slipway", "create", "demo", "--no-remote"]).is_ok());
        let cli = Cli::try_parse_from(["slipway", "access:add", "bob@example.com", "-a", "demo"])
            .unwrap();
        assert!(matches!(cli.command,
            Cmd::AccessAdd(a) if a.email == "bob@example.com" && a.app.app.as_deref() == Some("demo")));
        assert!(Cli::try_parse_from(["slipway", "access:remove", "-a", "demo"]).is_err());
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
