//! The dyno manager: makes the running dynos match each app's formation and current release.
//!
//! [`Manager::reconcile`] reads an app's current release, slug and formation from the store and
//! compares them with the dynos it runs: dynos of an old release, or beyond the scaled quantity,
//! are stopped (SIGTERM, then SIGKILL after the grace period) while their replacements start;
//! with the `preboot` feature, new web dynos must be up before the router switches to them and
//! the old ones are stopped. Each dyno has a supervisor task (`supervise`) that boots it, marks
//! web dynos `up` once they listen on `$PORT`, restarts it after a crash with Heroku's cool-offs,
//! cycles it daily, and reports every change to the app's log in Heroku's words. A release whose
//! slug has a `release` process runs it in a one-off dyno first ([`Manager::release_phase`]);
//! only a release whose phase passed becomes current. The up web dynos of each app are pushed to
//! a [`RouteSink`] (the router) whenever they change.

pub mod schedule;
mod supervise;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_build::SlugStore;
use slipway_logs::{LogRouter, Source};
use slipway_runtime::{DynoIo, DynoRuntime, DynoSpec, DynoStdio, OutputSink};
use slipway_store::{ReleaseRow, Store};
use slipway_types::{Backend, RouteSink, WebStatus};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::warn;

pub use schedule::{restart_delay, Cycling};
use supervise::{supervise, Ctl};

/// Errors from the dyno manager.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Store(#[from] slipway_store::StoreError),
    #[error("could not unpack the slug: {0}")]
    Slug(#[from] slipway_build::BuildError),
    #[error("the app has no release to run yet: deploy it with git push first")]
    NotDeployed,
    #[error("could not prepare the slug: {0}")]
    Runtime(#[from] slipway_runtime::RuntimeError),
}

/// Settings of the dyno manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Where slugs are unpacked, once per slug.
    pub slug_root: PathBuf,
    /// How long a web dyno has to listen on `$PORT` unless the app says otherwise (Heroku: 60 s).
    pub boot_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL (Heroku: 30 s).
    pub stop_timeout: Duration,
    /// How long a release phase may run (Heroku: 1 hour).
    pub release_timeout: Duration,
    /// Where records of running dynos are kept, so a restarted server takes them over
    /// ([`Manager::adopt_all`]); `None` keeps no records.
    pub state_dir: Option<PathBuf>,
}

/// What the manager records about a running dyno instance that can outlive the server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DynoRecord {
    pub instance: String,
    /// The dyno's id as the API shows it.
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub process_type: String,
    pub size: String,
    pub command: String,
    pub release_id: String,
    pub release_version: i64,
    pub oneoff: bool,
    pub created_at: DateTime<Utc>,
}

/// The longest boot timeout an app may ask for (Heroku's limit).
pub const MAX_BOOT_TIMEOUT: u32 = 120;

/// A dyno's state, as `ps` and the API show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Down,
}

impl DynoState {
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
            DynoState::Down => "down",
        }
    }
}

/// What the manager knows about one dyno.
#[derive(Debug, Clone)]
pub struct DynoStatus {
    pub id: String,
    pub name: String,
    pub process_type: String,
    pub size: String,
    pub command: String,
    pub state: DynoState,
    pub release_id: String,
    pub release_version: i64,
    pub created_at: DateTime<Utc>,
    /// When the state last changed.
    pub updated_at: DateTime<Utc>,
    pub addr: Option<SocketAddr>,
    /// A one-off dyno (`run.N`, `release.N`): never restarted, gone when its command ends.
    pub oneoff: bool,
    /// Whether the router may send it requests once it is up (false for a preboot dyno until
    /// the switch).
    pub routable: bool,
    /// When a crashed dyno is tried again.
    pub restart_at: Option<DateTime<Utc>>,
    /// How its process last exited.
    pub exit_status: Option<i32>,
}

/// The streams of an attached one-off dyno, and its exit status.
pub struct Attached {
    pub io: DynoIo,
    pub exit: watch::Receiver<Option<i32>>,
}

/// Which dynos `ps:restart` restarts.
#[derive(Debug, Clone)]
pub enum RestartTarget {
    All,
    Type(String),
    Dyno(String),
}

/// An app's dyno settings, read at every start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub boot_timeout: Duration,
    pub cycling: Cycling,
}

struct Slot {
    status: Arc<Mutex<DynoStatus>>,
    ctl: watch::Sender<Ctl>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct AppDynos {
    app_name: String,
    slots: Vec<Slot>,
    /// Supervisors of dynos that are being stopped, awaited at shutdown.
    draining: Vec<JoinHandle<()>>,
}

struct Inner {
    store: Store,
    logs: LogRouter,
    slugs: SlugStore,
    runtime: Arc<dyn DynoRuntime>,
    routes: Arc<dyn RouteSink>,
    config: ManagerConfig,
    apps: Mutex<HashMap<String, AppDynos>>,
    app_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    release_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Each app's dyno settings, refreshed whenever the app is reconciled.
    settings: Mutex<HashMap<String, Settings>>,
    unpack_lock: tokio::sync::Mutex<()>,
    /// Set by [`Manager::shutdown`]: no dyno starts after it.
    shutting_down: std::sync::atomic::AtomicBool,
}

/// The dyno manager; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A one-off dyno to start.
struct OneOff {
    process_type: &'static str,
    command: String,
    size: String,
    env: BTreeMap<String, String>,
    release: ReleaseRow,
    stdio: DynoStdio,
    attach: Option<oneshot::Sender<Attached>>,
    extra_output: Option<OutputSink>,
}

impl Manager {
    pub fn new(
        store: Store,
        logs: LogRouter,
        slugs: SlugStore,
        runtime: Arc<dyn DynoRuntime>,
        routes: Arc<dyn RouteSink>,
        config: ManagerConfig,
    ) -> Self {
        Manager {
            inner: Arc::new(Inner {
                store,
                logs,
                slugs,
                runtime,
                routes,
                config,
                apps: Mutex::default(),
                app_locks: Mutex::default(),
                release_locks: Mutex::default(),
                settings: Mutex::default(),
                unpack_lock: tokio::sync::Mutex::new(()),
                shutting_down: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The name of the runtime dynos run on.
    pub fn runtime_name(&self) -> &'static str {
        self.inner.runtime.name()
    }

    fn app_lock(&self, app_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.app_locks)
            .entry(app_id.to_string())
            .or_default()
            .clone()
    }

    /// Takes over the dynos a previous server left running (recorded in the state dir): their
    /// output, states and routes carry on without a restart; one that ended meanwhile is
    /// handled as any exit. Call before [`Manager::reconcile_all`], which then starts only
    /// what is missing. Returns how many were taken over.
    pub async fn adopt_all(&self) -> usize {
        let Some(dir) = self.inner.config.state_dir.clone() else {
            return 0;
        };
        let mut adopted = 0;
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("dyno"))
            .collect();
        // Newest first: a dyno restarted just before the stop has its old process's record too
        // (still in its grace period); only the newest of a name is taken over.
        let mut entries: Vec<(PathBuf, std::time::SystemTime)> = entries
            .into_iter()
            .map(|p| {
                let at = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (p, at)
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut taken: std::collections::HashSet<(String, String)> = Default::default();
        for (path, _) in entries {
            let record: Option<DynoRecord> = std::fs::read(&path)
                .ok()
                .and_then(|t| serde_json::from_slice(&t).ok());
            let Some(record) = record else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if !taken.insert((record.app_id.clone(), record.name.clone())) {
                let sink = self.output_sink(&record.app_id, &record.name, None);
                if let Ok(old) = self.inner.runtime.adopt(&record.instance, sink).await {
                    old.kill();
                }
                let _ = std::fs::remove_file(&path);
                continue;
            }
            match self.adopt(&record).await {
                Ok(()) => adopted += 1,
                Err(error) => {
                    warn!(dyno = %record.name, %error, "Could not take over a dyno.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        adopted
    }

    async fn adopt(&self, r: &DynoRecord) -> Result<(), ManagerError> {
        let store = &self.inner.store;
        let sink = self.output_sink(&r.app_id, &r.name, None);
        let dyno = self.inner.runtime.adopt(&r.instance, sink).await?;
        let app = store.app(&r.app_id).await?;
        let release = match &app {
            Some(_) => store.release(&r.app_id, &r.release_id).await?,
            None => None,
        };
        let slug = match release.as_ref().and_then(|rel| rel.slug_id.clone()) {
            Some(id) => store.slug(&id).await?,
            None => None,
        };
        let (Some(app), Some(release), Some(slug)) = (app, release, slug) else {
            // Its app or release is gone: it has no place here any more.
            dyno.kill();
            return Err(ManagerError::NotDeployed);
        };
        self.cache_settings(&app);
        let slug_dir = self.unpacked(&slug.sha256).await?;
        let mut env = release.config.clone();
        env.insert("DYNO".into(), r.name.clone());
        let spec = DynoSpec {
            id: r.instance.clone(),
            size: r.size.clone(),
            stack: slug.stack.clone(),
            name: r.name.clone(),
            command: r.command.clone(),
            slug_dir,
            env,
            stdio: DynoStdio::Logs,
        };
        let status = Arc::new(Mutex::new(DynoStatus {
            id: r.id.clone(),
            name: r.name.clone(),
            process_type: r.process_type.clone(),
            size: r.size.clone(),
            command: r.command.clone(),
            state: DynoState::Starting,
            release_id: r.release_id.clone(),
            release_version: r.release_version,
            created_at: r.created_at,
            updated_at: Utc::now(),
            addr: Some(dyno.addr),
            oneoff: r.oneoff,
            routable: true,
            restart_at: None,
            exit_status: None,
        }));
        let (ctl, ctl_rx) = watch::channel(Ctl::default());
        // The slot is in place before its supervisor can publish routes (which takes this lock).
        let mut apps = lock(&self.inner.apps);
        let entry = apps.entry(r.app_id.clone()).or_default();
        entry.app_name = app.name.clone();
        let task = tokio::spawn(supervise::supervise_from(
            self.clone(),
            r.app_id.clone(),
            spec,
            status.clone(),
            ctl_rx,
            Some(dyno),
        ));
        entry.slots.push(Slot { status, ctl, task });
        Ok(())
    }

    /// Where a dyno's output goes: the app's log, and `extra` if given.
    pub(crate) fn output_sink(
        &self,
        app_id: &str,
        dyno: &str,
        extra: Option<OutputSink>,
    ) -> OutputSink {
        let logs = self.inner.logs.clone();
        let (app_id, dyno): (String, Arc<str>) = (app_id.to_string(), dyno.into());
        Arc::new(move |line: &str| {
            logs.emit_shared(&app_id, Source::App, &dyno, line);
            if let Some(extra) = &extra {
                extra(line);
            }
        })
    }

    /// Records a running instance that can outlive the server.
    pub(crate) fn record(&self, r: &DynoRecord) {
        if let Some(dir) = &self.inner.config.state_dir {
            if let Ok(json) = serde_json::to_vec(r) {
                // Whole or not at all: a half-written record would orphan the dyno it names.
                let path = dir.join(format!("{}.dyno", r.instance));
                let _ = slipway_types::files::write_atomic(&path, &json, 0o600);
            }
        }
    }

    /// Forgets the record of an instance that has ended.
    pub(crate) fn unrecord(&self, instance: &str) {
        if let Some(dir) = &self.inner.config.state_dir {
            let _ = std::fs::remove_file(dir.join(format!("{instance}.dyno")));
        }
    }

    /// Reconciles every app in the store; used at start. Releases left pending by a previous run
    /// (whose release phase was cut short) run their release phase again first.
    pub async fn reconcile_all(&self) -> Result<(), ManagerError> {
        for release in self.inner.store.pending_releases().await? {
            self.finish_release(&release.app_id, &release.id, None)
                .await?;
        }
        for app in self.inner.store.apps().await? {
            if let Err(error) = self.reconcile(&app.id).await {
                warn!(app = %app.name, %error, "Reconcile failed.");
            }
        }
        Ok(())
    }

    /// Reconciles an app in the background (API calls return before dynos move).
    pub fn schedule(&self, app_id: &str) {
        let this = self.clone();
        let app_id = app_id.to_string();
        tokio::spawn(async move {
            if let Err(error) = this.reconcile(&app_id).await {
                warn!(app_id = %app_id, %error, "Reconcile failed.");
            }
        });
    }

    /// Makes an app's dynos match its current release and formation.
    pub async fn reconcile(&self, app_id: &str) -> Result<(), ManagerError> {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.reconcile_locked(app_id).await
    }

    /// The app's dyno settings as last read (the server's defaults before that).
    pub(crate) fn settings(&self, app_id: &str) -> Settings {
        lock(&self.inner.settings)
            .get(app_id)
            .copied()
            .unwrap_or(Settings {
                boot_timeout: self.inner.config.boot_timeout,
                cycling: Cycling::Daily,
            })
    }

    /// Takes the app's dyno settings from its row.
    fn cache_settings(&self, app: &slipway_store::AppRow) {
        let boot_timeout = app
            .boot_timeout
            .map(|s| Duration::from_secs(u64::from(s.clamp(1, MAX_BOOT_TIMEOUT))))
            .unwrap_or(self.inner.config.boot_timeout);
        let cycling = Cycling::parse(&app.cycling).unwrap_or(Cycling::Daily);
        lock(&self.inner.settings).insert(
            app.id.clone(),
            Settings {
                boot_timeout,
                cycling,
            },
        );
    }

    async fn reconcile_locked(&self, app_id: &str) -> Result<(), ManagerError> {
        let store = &self.inner.store;
        let Some(app) = store.app(app_id).await? else {
            self.stop_where(app_id, |_| true, true).await;
            return Ok(());
        };
        self.cache_settings(&app);
        let release = store.current_release(&app.id).await?;
        let slug = match release.as_ref().and_then(|r| r.slug_id.clone()) {
            Some(id) => store.slug(&id).await?,
            None => None,
        };
        // (name, type, command, size)
        let mut desired: Vec<(String, String, String, String)> = Vec::new();
        if let Some(slug) = &slug {
            for f in store.formation(&app.id).await? {
                if let Some(command) = slug.process_types.get(&f.process_type) {
                    for i in 1..=f.quantity {
                        desired.push((
                            format!("{}.{i}", f.process_type),
                            f.process_type.clone(),
                            command.clone(),
                            f.size.clone(),
                        ));
                    }
                }
            }
        }
        let (Some(release), Some(slug)) = (release, slug) else {
            self.stop_where(app_id, |_| true, true).await;
            return Ok(());
        };
        // Unpack the new slug before anything stops, so the gap between old and new is short.
        let slug_dir = if desired.is_empty() {
            None
        } else {
            Some(self.unpacked(&slug.sha256).await?)
        };
        let keep = |s: &DynoStatus| {
            s.oneoff
                || desired.iter().any(|(name, _, command, size)| {
                    &s.name == name
                        && s.release_id == release.id
                        && &s.command == command
                        && &s.size == size
                })
        };
        if self
            .inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let Some(slug_dir) = slug_dir else {
            self.stop_where(app_id, |s| !keep(s), false).await;
            self.publish(app_id);
            return Ok(());
        };
        // Preboot: when web dynos of another release are serving, the new ones boot beside them
        // and take over only once they are up.
        let preboot = store.feature(app_id, "preboot").await?
            && self.dynos(app_id).iter().any(|s| {
                s.process_type == "web" && s.state == DynoState::Up && s.release_id != release.id
            });
        if preboot {
            self.stop_where(app_id, |s| !keep(s) && s.process_type != "web", false)
                .await;
        } else {
            // Heroku's stop-then-start: the old dynos get SIGTERM and the new ones start at once.
            self.stop_where(app_id, |s| !keep(s), false).await;
        }
        let started: Vec<Arc<Mutex<DynoStatus>>> = {
            let mut apps = lock(&self.inner.apps);
            let entry = apps.entry(app_id.to_string()).or_default();
            entry.app_name = app.name.clone();
            let mut started = Vec::new();
            for (name, process_type, command, size) in desired.iter().cloned() {
                let present = entry.slots.iter().any(|s| {
                    let st = lock(&s.status);
                    st.name == name
                        && st.release_id == release.id
                        && st.command == command
                        && st.size == size
                });
                if present {
                    continue;
                }
                let routable = !(preboot && process_type == "web");
                let now = Utc::now();
                let status = Arc::new(Mutex::new(DynoStatus {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: name.clone(),
                    process_type,
                    size: size.clone(),
                    command: command.clone(),
                    state: DynoState::Starting,
                    release_id: release.id.clone(),
                    release_version: release.version,
                    created_at: now,
                    updated_at: now,
                    addr: None,
                    oneoff: false,
                    routable,
                    restart_at: None,
                    exit_status: None,
                }));
                let mut env = release.config.clone();
                env.insert("DYNO".into(), name.clone());
                let spec = DynoSpec {
                    id: String::new(),
                    size,
                    stack: slug.stack.clone(),
                    name,
                    command,
                    slug_dir: slug_dir.clone(),
                    env,
                    stdio: DynoStdio::Logs,
                };
                let (ctl, ctl_rx) = watch::channel(Ctl::default());
                let task = tokio::spawn(supervise(
                    self.clone(),
                    app_id.to_string(),
                    spec,
                    status.clone(),
                    ctl_rx,
                    None,
                    None,
                ));
                started.push(status.clone());
                entry.slots.push(Slot { status, ctl, task });
            }
            started
        };
        if preboot {
            let new_web: Vec<_> = started
                .into_iter()
                .filter(|s| lock(s).process_type == "web")
                .collect();
            // The new web dynos boot; the old ones serve meanwhile.
            let wait = self.settings(app_id).boot_timeout + Duration::from_secs(5);
            let all_up = || new_web.iter().all(|s| lock(s).state == DynoState::Up);
            let deadline = tokio::time::Instant::now() + wait;
            while !all_up() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The switch: new dynos in, old ones out, in one routing table update.
            for s in &new_web {
                lock(s).routable = true;
            }
            self.stop_where(app_id, |s| !keep(s), false).await;
            self.publish(app_id);
        }
        Ok(())
    }

    /// Stops the dynos of an app that match `pred`: out of the routing table, then SIGTERM.
    /// With `wait`, returns once they have exited; otherwise at once (they finish in the
    /// background and [`Manager::shutdown`] waits for them).
    async fn stop_where(&self, app_id: &str, pred: impl Fn(&DynoStatus) -> bool, wait: bool) {
        let stopping: Vec<Slot> = {
            let mut apps = lock(&self.inner.apps);
            let Some(entry) = apps.get_mut(app_id) else {
                return;
            };
            let (stop, keep): (Vec<Slot>, Vec<Slot>) =
                entry.slots.drain(..).partition(|s| pred(&lock(&s.status)));
            entry.slots = keep;
            stop
        };
        if stopping.is_empty() {
            return;
        }
        // Take them out of the routing table before they get SIGTERM.
        self.publish(app_id);
        for slot in &stopping {
            slot.ctl.send_modify(|c| c.stop = true);
        }
        let tasks = stopping.into_iter().map(|s| s.task);
        if wait {
            futures_util::future::join_all(tasks).await;
        } else {
            let mut apps = lock(&self.inner.apps);
            let entry = apps.entry(app_id.to_string()).or_default();
            entry.draining.retain(|t| !t.is_finished());
            entry.draining.extend(tasks);
        }
    }

    /// Restarts dynos where they are: SIGTERM, and at once a fresh start on the same release
    /// while the old process has its grace period (a crashed dyno waiting out its cool-off
    /// starts at once). Logged `Restarting`.
    pub async fn restart(&self, app_id: &str, target: RestartTarget) -> Result<(), ManagerError> {
        let lock_ = self.app_lock(app_id);
        let _guard = lock_.lock().await;
        let apps = lock(&self.inner.apps);
        if let Some(entry) = apps.get(app_id) {
            for slot in &entry.slots {
                let st = lock(&slot.status);
                let hit = match &target {
                    RestartTarget::All => !st.oneoff,
                    RestartTarget::Type(t) => !st.oneoff && &st.process_type == t,
                    RestartTarget::Dyno(n) => &st.name == n,
                };
                if hit {
                    slot.ctl.send_modify(|c| c.restarts += 1);
                }
            }
        }
        Ok(())
    }

    /// Starts a one-off dyno (`run.N`) running `command` on the current release, with `env`
    /// added to the config vars. It is not restarted, and is gone when the command ends.
    /// With a terminal or pipes (`stdio`), its streams arrive on the returned channel once it
    /// has started (the sender is dropped if it could not start).
    pub async fn run_oneoff(
        &self,
        app_id: &str,
        command: &str,
        size: &str,
        env: BTreeMap<String, String>,
        started_by: &str,
        stdio: DynoStdio,
    ) -> Result<(DynoStatus, Option<oneshot::Receiver<Attached>>), ManagerError> {
        let release = self
            .inner
            .store
            .current_release(app_id)
            .await?
            .ok_or(ManagerError::NotDeployed)?;
        let (attach, attached) = match stdio {
            DynoStdio::Logs => (None, None),
            _ => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        let status = self
            .start_oneoff(
                app_id,
                OneOff {
                    process_type: "run",
                    command: command.to_string(),
                    size: size.to_string(),
                    env,
                    release,
                    stdio,
                    attach,
                    extra_output: None,
                },
            )
            .await?;
        self.log(
            app_id,
            &status.name,
            &format!("Starting process with command `{command}` by user {started_by}"),
        );
        Ok((status, attached))
    }

    async fn start_oneoff(&self, app_id: &str, o: OneOff) -> Result<DynoStatus, ManagerError> {
        let store = &self.inner.store;
        let app = store.app(app_id).await?.ok_or(ManagerError::NotDeployed)?;
        self.cache_settings(&app);
        let slug_id = o.release.slug_id.clone().ok_or(ManagerError::NotDeployed)?;
        let slug = store
            .slug(&slug_id)
            .await?
            .ok_or(ManagerError::NotDeployed)?;
        let slug_dir = self.unpacked(&slug.sha256).await?;
        // Registered under the app's lock, once the app is known to be still there: a destroy,
        // which takes the lock to stop every dyno, cannot miss one started meanwhile.
        let app_lock = self.app_lock(app_id);
        let _app_guard = app_lock.lock().await;
        if store.app(app_id).await?.is_none() {
            return Err(ManagerError::NotDeployed);
        }
        let mut apps = lock(&self.inner.apps);
        let entry = apps.entry(app_id.to_string()).or_default();
        entry.app_name = app.name.clone();
        let name = loop {
            let n: u32 = 1000 + (uuid::Uuid::new_v4().as_u128() % 9000) as u32;
            let name = format!("{}.{n}", o.process_type);
            if !entry.slots.iter().any(|s| lock(&s.status).name == name) {
                break name;
            }
        };
        let now = Utc::now();
        let status = DynoStatus {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.clone(),
            process_type: o.process_type.into(),
            size: o.size.clone(),
            command: o.command.clone(),
            state: DynoState::Starting,
            release_id: o.release.id.clone(),
            release_version: o.release.version,
            created_at: now,
            updated_at: now,
            addr: None,
            oneoff: true,
            routable: false,
            restart_at: None,
            exit_status: None,
        };
        let shared = Arc::new(Mutex::new(status.clone()));
        let mut full_env = o.release.config.clone();
        full_env.extend(o.env);
        full_env.insert("DYNO".into(), name.clone());
        let spec = DynoSpec {
            id: String::new(),
            size: o.size,
            stack: slug.stack.clone(),
            name,
            command: o.command,
            slug_dir,
            env: full_env,
            stdio: o.stdio,
        };
        let (ctl, ctl_rx) = watch::channel(Ctl::default());
        let task = tokio::spawn(supervise(
            self.clone(),
            app_id.to_string(),
            spec,
            shared.clone(),
            ctl_rx,
            o.attach,
            o.extra_output,
        ));
        entry.slots.push(Slot {
            status: shared,
            ctl,
            task,
        });
        Ok(status)
    }

    /// Runs a release's release phase, if its slug has a `release` process, in a one-off dyno
    /// `release.N` (output to the logs and to `output`), marks the release succeeded or failed,
    /// and moves the app's dynos to it if it succeeded. Release phases of an app run one at a
    /// time. Returns whether the release succeeded.
    pub async fn finish_release(
        &self,
        app_id: &str,
        release_id: &str,
        output: Option<OutputSink>,
    ) -> Result<bool, ManagerError> {
        let lock_ = lock(&self.inner.release_locks)
            .entry(app_id.to_string())
            .or_default()
            .clone();
        let _guard = lock_.lock().await;
        let store = &self.inner.store;
        let Some(release) = store.release(app_id, release_id).await? else {
            return Ok(false);
        };
        if release.status != "pending" {
            let ok = release.status == "succeeded";
            if ok {
                self.schedule(app_id);
            }
            return Ok(ok);
        }
        let command = match &release.slug_id {
            Some(id) => store
                .slug(id)
                .await?
                .and_then(|s| s.process_types.get("release").cloned()),
            None => None,
        };
        let ok = match command {
            None => true,
            Some(command) => {
                self.release_phase(app_id, &release, &command, output)
                    .await?
            }
        };
        store
            .set_release_status(&release.id, if ok { "succeeded" } else { "failed" })
            .await?;
        // The release has passed (its migrations have run): a failure to start its dynos now is
        // the dyno manager's to retry, not a reason to call the release failed.
        if ok {
            if let Err(error) = self.reconcile(app_id).await {
                tracing::warn!(app_id = %app_id, %error, "Starting the new release's dynos failed; retrying.");
                self.schedule(app_id);
            }
        }
        Ok(ok)
    }

    async fn release_phase(
        &self,
        app_id: &str,
        release: &ReleaseRow,
        command: &str,
        output: Option<OutputSink>,
    ) -> Result<bool, ManagerError> {
        let size = self
            .inner
            .store
            .formation(app_id)
            .await?
            .into_iter()
            .find(|f| f.process_type == "web")
            .map(|f| f.size)
            .unwrap_or_else(|| slipway_store::DEFAULT_SIZE.to_string());
        let status = self
            .start_oneoff(
                app_id,
                OneOff {
                    process_type: "release",
                    command: command.to_string(),
                    size,
                    env: BTreeMap::new(),
                    release: release.clone(),
                    stdio: DynoStdio::Logs,
                    attach: None,
                    extra_output: output,
                },
            )
            .await?;
        let name = status.name.clone();
        self.log(
            app_id,
            &name,
            &format!(
                "Starting process with command `{command}` for release v{}",
                release.version
            ),
        );
        // The one-off leaves the app's list when it ends; its exit status is in its status.
        let shared = {
            let apps = lock(&self.inner.apps);
            apps.get(app_id).and_then(|e| {
                e.slots
                    .iter()
                    .find(|s| lock(&s.status).id == status.id)
                    .map(|s| (s.status.clone(), s.ctl.clone()))
            })
        };
        let Some((shared, ctl)) = shared else {
            return Ok(false);
        };
        let deadline = tokio::time::Instant::now() + self.inner.config.release_timeout;
        loop {
            let code = lock(&shared).exit_status;
            let gone = !self.dynos(app_id).iter().any(|d| d.id == status.id);
            if gone {
                return Ok(code == Some(0));
            }
            if tokio::time::Instant::now() >= deadline {
                self.log(
                    app_id,
                    &name,
                    "Error R99 (Platform error) -> the release phase ran past its time limit",
                );
                ctl.send_modify(|c| c.stop = true);
                // Wait for it to go.
                while self.dynos(app_id).iter().any(|d| d.id == status.id) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops one dyno (`ps:stop`): a one-off ends; a formation dyno is started again.
    pub async fn stop_dyno(&self, app_id: &str, name: &str) -> Result<(), ManagerError> {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.stop_where(app_id, |s| s.name == name, true).await;
        self.reconcile_locked(app_id).await
    }

    /// Stops every dyno of a process type (`ps:stop web`); formation dynos start again.
    pub async fn stop_type(&self, app_id: &str, process_type: &str) -> Result<(), ManagerError> {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.stop_where(app_id, |s| s.process_type == process_type, true)
            .await;
        self.reconcile_locked(app_id).await
    }

    /// Keeps a task that is stopping a restarted dyno's old process with the app's draining
    /// ones, so that a destroy or a shutdown waits for it.
    pub(crate) fn track_stopping(&self, app_id: &str, task: tokio::task::JoinHandle<()>) {
        let mut apps = lock(&self.inner.apps);
        let entry = apps.entry(app_id.to_string()).or_default();
        entry.draining.retain(|t| !t.is_finished());
        entry.draining.push(task);
    }

    /// Stops every dyno of an app that is being destroyed and forgets it.
    pub async fn remove_app(&self, app_id: &str, app_name: &str) {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.stop_where(app_id, |_| true, true).await;
        let draining = lock_remove(&self.inner.apps, app_id);
        futures_util::future::join_all(draining).await;
        self.inner.routes.remove_app(app_name);
    }

    /// Stops every dyno of every app (server shutdown).
    pub async fn shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.inner.apps).keys().cloned().collect();
        futures_util::future::join_all(ids.iter().map(|id| async move {
            let app_lock = self.app_lock(id);
            let _guard = app_lock.lock().await;
            self.stop_where(id, |_| true, true).await;
            let draining = lock(&self.inner.apps)
                .get_mut(id)
                .map(|e| std::mem::take(&mut e.draining))
                .unwrap_or_default();
            futures_util::future::join_all(draining).await;
        }))
        .await;
    }

    /// The dynos of an app.
    pub fn dynos(&self, app_id: &str) -> Vec<DynoStatus> {
        let apps = lock(&self.inner.apps);
        let mut v: Vec<DynoStatus> = apps
            .get(app_id)
            .map(|a| a.slots.iter().map(|s| lock(&s.status).clone()).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.created_at.cmp(&b.created_at)));
        v
    }

    /// Drops a one-off dyno that has ended from the app's list.
    pub(crate) fn forget(&self, app_id: &str, status: &Arc<Mutex<DynoStatus>>) {
        let mut apps = lock(&self.inner.apps);
        if let Some(entry) = apps.get_mut(app_id) {
            entry.slots.retain(|s| !Arc::ptr_eq(&s.status, status));
        }
    }

    /// Pushes the app's up, routable web dynos to the router. The table is written under the same
    /// lock the states are read under, so an older view never overwrites a newer one.
    pub(crate) fn publish(&self, app_id: &str) {
        let apps = lock(&self.inner.apps);
        let Some(entry) = apps.get(app_id) else {
            return;
        };
        let (mut crashed, mut starting) = (false, false);
        let backends = entry
            .slots
            .iter()
            .filter_map(|s| {
                let st = lock(&s.status);
                if st.process_type == "web" {
                    crashed |= st.state == DynoState::Crashed;
                    starting |= st.state == DynoState::Starting
                        || (st.state == DynoState::Up && !st.routable);
                }
                match (st.process_type.as_str(), st.state, st.addr, st.routable) {
                    ("web", DynoState::Up, Some(addr), true) => Some(Backend {
                        dyno: st.name.clone(),
                        addr,
                    }),
                    _ => None,
                }
            })
            .collect::<Vec<_>>();
        let web = if !backends.is_empty() {
            WebStatus::Up
        } else if starting {
            WebStatus::Starting
        } else if crashed {
            WebStatus::Crashed
        } else {
            WebStatus::None
        };
        self.inner
            .routes
            .set_backends(app_id, &entry.app_name, backends);
        self.inner
            .routes
            .set_web_status(app_id, &entry.app_name, web);
    }

    /// The directory a slug is unpacked in, unpacking it the first time.
    async fn unpacked(&self, sha256: &str) -> Result<PathBuf, ManagerError> {
        let dir = self.inner.config.slug_root.join(sha256);
        if dir.is_dir() {
            return Ok(dir);
        }
        let _guard = self.inner.unpack_lock.lock().await;
        if !dir.is_dir() {
            // Unpacked and prepared beside, then moved in, so a half-ready slug is never used.
            let staging = self
                .inner
                .config
                .slug_root
                .join(format!(".{sha256}.staging"));
            let _ = tokio::fs::remove_dir_all(&staging).await;
            self.inner.slugs.unpack(sha256, &staging).await?;
            self.inner.runtime.prepare_slug(&staging).await?;
            tokio::fs::rename(&staging, &dir)
                .await
                .map_err(slipway_runtime::RuntimeError::Spawn)?;
        }
        Ok(dir)
    }

    pub(crate) fn log(&self, app_id: &str, dyno: &str, message: &str) {
        self.inner.logs.emit(app_id, Source::Heroku, dyno, message);
    }
}

fn lock_remove(apps: &Mutex<HashMap<String, AppDynos>>, app_id: &str) -> Vec<JoinHandle<()>> {
    lock(apps)
        .remove(app_id)
        .map(|e| e.draining)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
