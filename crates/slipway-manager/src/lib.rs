//! The dyno manager: makes the running dynos match each app's formation and current release.
//!
//! [`Manager::reconcile`] reads an app's current release, slug and formation from the store and
//! compares them with the dynos it runs: dynos of an old release, or beyond the scaled quantity,
//! are stopped (SIGTERM, then SIGKILL after the grace period); missing ones are started through the
//! [`DynoRuntime`]. Each dyno has a supervisor task that boots it, marks web dynos `up` once they
//! listen on `$PORT`, restarts it after a crash with a growing delay, and reports every change to
//! the app's log in Heroku's words. The up web dynos of each app are pushed to a [`RouteSink`]
//! (the router) whenever they change.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_build::SlugStore;
use slipway_logs::{LogRouter, Source};
use slipway_runtime::{DynoIo, DynoRuntime, DynoSpec, DynoStdio, OutputSink, RunningDyno};
use slipway_store::Store;
use slipway_types::{Backend, RouteSink};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

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
    /// How long a web dyno has to listen on `$PORT` (Heroku: 60 s).
    pub boot_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL (Heroku: 30 s).
    pub stop_timeout: Duration,
}

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
    /// A one-off dyno (`run.N`): never restarted, gone when its command ends.
    pub oneoff: bool,
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

struct Slot {
    status: Arc<Mutex<DynoStatus>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct AppDynos {
    app_name: String,
    slots: BTreeMap<String, Slot>,
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
    unpack_lock: tokio::sync::Mutex<()>,
    /// Set by [`Manager::shutdown`]: no dyno starts after it.
    shutting_down: std::sync::atomic::AtomicBool,
}

/// The dyno manager; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Reconciles every app in the store; used at start.
    pub async fn reconcile_all(&self) -> Result<(), ManagerError> {
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

    async fn reconcile_locked(&self, app_id: &str) -> Result<(), ManagerError> {
        let store = &self.inner.store;
        let Some(app) = store.app(app_id).await? else {
            self.stop_where(app_id, |_| true).await;
            return Ok(());
        };
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
            self.stop_where(app_id, |_| true).await;
            return Ok(());
        };
        // Unpack the new slug before anything stops, so the gap between old and new is short.
        let slug_dir = if desired.is_empty() {
            None
        } else {
            Some(self.unpacked(&slug.sha256).await?)
        };
        // Stop dynos that are not wanted or are on another release, size or command.
        self.stop_where(app_id, |s| {
            !s.oneoff
                && !desired.iter().any(|(name, _, command, size)| {
                    &s.name == name
                        && s.release_id == release.id
                        && &s.command == command
                        && &s.size == size
                })
        })
        .await;
        let Some(slug_dir) = slug_dir else {
            self.publish(app_id);
            return Ok(());
        };
        if self
            .inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let mut apps = lock(&self.inner.apps);
        let entry = apps.entry(app_id.to_string()).or_default();
        entry.app_name = app.name.clone();
        for (name, process_type, command, size) in desired {
            if entry.slots.contains_key(&name) {
                continue;
            }
            let now = Utc::now();
            let status = Arc::new(Mutex::new(DynoStatus {
                id: uuid::Uuid::new_v4().to_string(),
                name: name.clone(),
                process_type,
                size,
                command: command.clone(),
                state: DynoState::Starting,
                release_id: release.id.clone(),
                release_version: release.version,
                created_at: now,
                updated_at: now,
                addr: None,
                oneoff: false,
            }));
            let mut env = release.config.clone();
            env.insert("DYNO".into(), name.clone());
            let spec = DynoSpec {
                id: String::new(),
                size: lock(&status).size.clone(),
                stack: slug.stack.clone(),
                name: name.clone(),
                command,
                slug_dir: slug_dir.clone(),
                env,
                stdio: DynoStdio::Logs,
            };
            let (stop_tx, stop_rx) = watch::channel(false);
            let task = tokio::spawn(supervise(
                self.clone(),
                app_id.to_string(),
                spec,
                status.clone(),
                stop_rx,
                None,
            ));
            entry.slots.insert(
                name,
                Slot {
                    status,
                    stop: stop_tx,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Stops the dynos of an app that match `pred` and waits until they are down.
    async fn stop_where(&self, app_id: &str, pred: impl Fn(&DynoStatus) -> bool) {
        let stopping: Vec<Slot> = {
            let mut apps = lock(&self.inner.apps);
            let Some(entry) = apps.get_mut(app_id) else {
                return;
            };
            let names: Vec<String> = entry
                .slots
                .iter()
                .filter(|(_, s)| pred(&lock(&s.status)))
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| entry.slots.remove(&n))
                .collect()
        };
        if stopping.is_empty() {
            return;
        }
        // Take them out of the routing table before they get SIGTERM.
        self.publish(app_id);
        for slot in &stopping {
            let _ = slot.stop.send(true);
        }
        futures_util::future::join_all(stopping.into_iter().map(|s| s.task)).await;
    }

    /// Restarts dynos: stops them, then starts them again on the current release.
    pub async fn restart(&self, app_id: &str, target: RestartTarget) -> Result<(), ManagerError> {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.stop_where(app_id, |s| match &target {
            RestartTarget::All => !s.oneoff,
            RestartTarget::Type(t) => !s.oneoff && &s.process_type == t,
            RestartTarget::Dyno(n) => &s.name == n,
        })
        .await;
        self.reconcile_locked(app_id).await
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
        let store = &self.inner.store;
        let app = store.app(app_id).await?.ok_or(ManagerError::NotDeployed)?;
        let release = store
            .current_release(&app.id)
            .await?
            .ok_or(ManagerError::NotDeployed)?;
        let slug_id = release.slug_id.clone().ok_or(ManagerError::NotDeployed)?;
        let slug = store
            .slug(&slug_id)
            .await?
            .ok_or(ManagerError::NotDeployed)?;
        let slug_dir = self.unpacked(&slug.sha256).await?;
        let mut apps = lock(&self.inner.apps);
        let entry = apps.entry(app_id.to_string()).or_default();
        entry.app_name = app.name.clone();
        let name = loop {
            let n: u32 = 1000 + (uuid::Uuid::new_v4().as_u128() % 9000) as u32;
            let name = format!("run.{n}");
            if !entry.slots.contains_key(&name) {
                break name;
            }
        };
        let now = Utc::now();
        let status = DynoStatus {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.clone(),
            process_type: "run".into(),
            size: size.to_string(),
            command: command.to_string(),
            state: DynoState::Starting,
            release_id: release.id.clone(),
            release_version: release.version,
            created_at: now,
            updated_at: now,
            addr: None,
            oneoff: true,
        };
        let shared = Arc::new(Mutex::new(status.clone()));
        let mut full_env = release.config.clone();
        full_env.extend(env);
        full_env.insert("DYNO".into(), name.clone());
        let spec = DynoSpec {
            id: String::new(),
            size: size.to_string(),
            stack: slug.stack.clone(),
            name: name.clone(),
            command: command.to_string(),
            slug_dir,
            env: full_env,
            stdio,
        };
        let (attach_tx, attach_rx) = match stdio {
            DynoStdio::Logs => (None, None),
            _ => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        self.log(
            app_id,
            &name,
            &format!("Starting process with command `{command}` by user {started_by}"),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            self.clone(),
            app_id.to_string(),
            spec,
            shared.clone(),
            stop_rx,
            attach_tx,
        ));
        entry.slots.insert(
            name,
            Slot {
                status: shared,
                stop: stop_tx,
                task,
            },
        );
        Ok((status, attach_rx))
    }

    /// Stops one dyno (`ps:stop`): a one-off ends; a formation dyno is started again.
    pub async fn stop_dyno(&self, app_id: &str, name: &str) -> Result<(), ManagerError> {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.stop_where(app_id, |s| s.name == name).await;
        self.reconcile_locked(app_id).await
    }

    /// Stops every dyno of an app that is being destroyed and forgets it.
    pub async fn remove_app(&self, app_id: &str, app_name: &str) {
        let lock = self.app_lock(app_id);
        let _guard = lock.lock().await;
        self.stop_where(app_id, |_| true).await;
        lock_remove(&self.inner.apps, app_id);
        self.inner.routes.remove_app(app_name);
    }

    /// Stops every dyno of every app (server shutdown).
    pub async fn shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.inner.apps).keys().cloned().collect();
        futures_util::future::join_all(ids.iter().map(|id| async move {
            let lock = self.app_lock(id);
            let _guard = lock.lock().await;
            self.stop_where(id, |_| true).await
        }))
        .await;
    }

    /// The dynos of an app, by name.
    pub fn dynos(&self, app_id: &str) -> Vec<DynoStatus> {
        let apps = lock(&self.inner.apps);
        apps.get(app_id)
            .map(|a| a.slots.values().map(|s| lock(&s.status).clone()).collect())
            .unwrap_or_default()
    }

    /// Drops a one-off dyno that has ended from the app's list (if it is still that instance).
    fn forget_oneoff(&self, app_id: &str, name: &str, id: &str) {
        let mut apps = lock(&self.inner.apps);
        if let Some(entry) = apps.get_mut(app_id) {
            if entry
                .slots
                .get(name)
                .is_some_and(|s| lock(&s.status).id == id)
            {
                entry.slots.remove(name);
            }
        }
    }

    /// Pushes the app's up web dynos to the router. The table is written under the same lock the
    /// states are read under, so an older view never overwrites a newer one.
    fn publish(&self, app_id: &str) {
        let apps = lock(&self.inner.apps);
        let Some(entry) = apps.get(app_id) else {
            return;
        };
        let backends = entry
            .slots
            .values()
            .filter_map(|s| {
                let st = lock(&s.status);
                match (st.process_type.as_str(), st.state, st.addr) {
                    ("web", DynoState::Up, Some(addr)) => Some(Backend {
                        dyno: st.name.clone(),
                        addr,
                    }),
                    _ => None,
                }
            })
            .collect::<Vec<_>>();
        self.inner
            .routes
            .set_backends(app_id, &entry.app_name, backends);
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

    fn log(&self, app_id: &str, dyno: &str, message: &str) {
        self.inner.logs.emit(app_id, Source::Heroku, dyno, message);
    }
}

fn lock_remove(apps: &Mutex<HashMap<String, AppDynos>>, app_id: &str) {
    lock(apps).remove(app_id);
}

/// Delay before restarting a dyno after its `crashes`-th crash in a row: the first restart is
/// immediate, later ones wait longer and longer, up to 20 minutes.
pub fn restart_delay(crashes: u32) -> Duration {
    if crashes <= 1 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1u64 << (crashes - 2).min(20));
    Duration::from_secs(secs.min(20 * 60))
}

enum Outcome {
    Exited(i32),
    Stop,
    BootTimeout,
}

async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|s| *s).await;
}

/// Polls until something accepts connections on `addr`.
async fn wait_listening(addr: SocketAddr) {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn set_state(m: &Manager, app_id: &str, status: &Arc<Mutex<DynoStatus>>, state: DynoState) {
    let (name, old) = {
        let mut st = lock(status);
        let old = st.state;
        st.state = state;
        st.updated_at = Utc::now();
        (st.name.clone(), old)
    };
    if old != state {
        m.log(
            app_id,
            &name,
            &format!("State changed from {} to {}", old.as_str(), state.as_str()),
        );
    }
    m.publish(app_id);
}

/// Runs one dyno for as long as it is wanted, restarting it when it exits.
async fn supervise(
    m: Manager,
    app_id: String,
    spec: DynoSpec,
    status: Arc<Mutex<DynoStatus>>,
    mut stop_rx: watch::Receiver<bool>,
    mut attach: Option<oneshot::Sender<Attached>>,
) {
    let name = spec.name.clone();
    let is_web = lock(&status).process_type == "web";
    let oneoff = lock(&status).oneoff;
    let mut crashes = 0u32;
    loop {
        if *stop_rx.borrow() {
            break;
        }
        if lock(&status).state != DynoState::Starting {
            set_state(&m, &app_id, &status, DynoState::Starting);
        }
        // One-off dynos were announced with who started them.
        if !oneoff {
            m.log(
                &app_id,
                &name,
                &format!("Starting process with command `{}`", spec.command),
            );
        }
        let logs = m.inner.logs.clone();
        let (sink_app, sink_dyno) = (app_id.clone(), name.clone());
        let sink: OutputSink =
            Arc::new(move |line: &str| logs.emit(&sink_app, Source::App, &sink_dyno, line));
        let started = tokio::time::Instant::now();
        let mut instance = spec.clone();
        instance.id = uuid::Uuid::new_v4().simple().to_string();
        let mut dyno: RunningDyno = match m.inner.runtime.start(instance, sink).await {
            Ok(d) => d,
            Err(error) => {
                warn!(app_id = %app_id, dyno = %name, %error, "Dyno failed to start.");
                m.log(
                    &app_id,
                    &name,
                    &format!("Error R99 (Platform error) -> {error}"),
                );
                if oneoff {
                    m.log(&app_id, &name, "State changed from starting to crashed");
                    let id = lock(&status).id.clone();
                    m.forget_oneoff(&app_id, &name, &id);
                    break;
                }
                set_state(&m, &app_id, &status, DynoState::Crashed);
                crashes += 1;
                if wait_or_stop(restart_delay(crashes.max(2)), &mut stop_rx).await {
                    break;
                }
                continue;
            }
        };
        lock(&status).addr = Some(dyno.addr);
        if let (Some(tx), Some(io)) = (attach.take(), dyno.io.take()) {
            let _ = tx.send(Attached {
                io,
                exit: dyno.exit.clone(),
            });
        }
        let booted = if is_web {
            tokio::select! {
                r = tokio::time::timeout(m.inner.config.boot_timeout, wait_listening(dyno.addr)) => {
                    if r.is_ok() { None } else { Some(Outcome::BootTimeout) }
                }
                code = dyno.wait() => Some(Outcome::Exited(code)),
                _ = stop_requested(&mut stop_rx) => Some(Outcome::Stop),
            }
        } else {
            None
        };
        let outcome = match booted {
            Some(o) => o,
            None => {
                set_state(&m, &app_id, &status, DynoState::Up);
                info!(app_id = %app_id, dyno = %name, "Dyno up.");
                let monitor = dyno.monitor();
                tokio::select! {
                    code = dyno.wait() => Outcome::Exited(code),
                    _ = stop_requested(&mut stop_rx) => Outcome::Stop,
                    never = watch_memory(&m, &app_id, &name, &monitor) => match never {},
                }
            }
        };
        match outcome {
            Outcome::Stop => {
                graceful_stop(&m, &app_id, &name, &mut dyno).await;
                set_state(&m, &app_id, &status, DynoState::Down);
                break;
            }
            Outcome::BootTimeout => {
                let secs = m.inner.config.boot_timeout.as_secs();
                m.log(&app_id, &name, &format!(
                    "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {secs} seconds of launch"
                ));
                m.log(&app_id, &name, "Stopping process with SIGKILL");
                dyno.kill();
                let code = dyno.wait().await;
                m.log(
                    &app_id,
                    &name,
                    &format!("Process exited with status {code}"),
                );
            }
            Outcome::Exited(code) => {
                if dyno.monitor().memory().is_some_and(|s| s.oom_kills > 0) {
                    m.log(&app_id, &name, "Error R15 (Memory quota vastly exceeded)");
                    m.log(&app_id, &name, "Stopping process with SIGKILL");
                }
                m.log(
                    &app_id,
                    &name,
                    &format!("Process exited with status {code}"),
                );
            }
        }
        if oneoff {
            m.log(&app_id, &name, "State changed from up to complete");
            // The id is read first: forget_oneoff locks every dyno's status itself.
            let id = lock(&status).id.clone();
            m.forget_oneoff(&app_id, &name, &id);
            break;
        }
        set_state(&m, &app_id, &status, DynoState::Crashed);
        // A dyno that ran for a while before exiting starts a new crash series.
        if started.elapsed() > Duration::from_secs(600) {
            crashes = 0;
        }
        crashes += 1;
        if wait_or_stop(restart_delay(crashes), &mut stop_rx).await {
            set_state(&m, &app_id, &status, DynoState::Down);
            break;
        }
    }
}

/// How often a dyno's memory is read, and how often R14 repeats while it stays over quota.
const MEMORY_CHECK: Duration = Duration::from_secs(5);
const R14_REPEAT: Duration = Duration::from_secs(60);

/// Logs R14 whenever a dyno goes over its memory quota, as Heroku does. Never returns.
async fn watch_memory(
    m: &Manager,
    app_id: &str,
    name: &str,
    monitor: &slipway_runtime::DynoMonitor,
) -> std::convert::Infallible {
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(MEMORY_CHECK).await;
        let Some(stats) = monitor.memory() else {
            continue;
        };
        if stats.usage > stats.quota {
            let due = last_warning.is_none_or(|t| t.elapsed() >= R14_REPEAT);
            if due {
                let mb = stats.usage / (1024 * 1024);
                let pct = stats.usage as f64 * 100.0 / stats.quota.max(1) as f64;
                m.log(
                    app_id,
                    name,
                    &format!("Process running mem={mb}M({pct:.1}%)"),
                );
                m.log(app_id, name, "Error R14 (Memory quota exceeded)");
                last_warning = Some(tokio::time::Instant::now());
            }
        } else {
            last_warning = None;
        }
    }
}

/// Sleeps for `delay` unless a stop comes first; true if it did.
async fn wait_or_stop(delay: Duration, stop_rx: &mut watch::Receiver<bool>) -> bool {
    if *stop_rx.borrow() {
        return true;
    }
    if delay.is_zero() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop_requested(stop_rx) => true,
    }
}

/// SIGTERM, a grace period, then SIGKILL.
async fn graceful_stop(m: &Manager, app_id: &str, name: &str, dyno: &mut RunningDyno) {
    m.log(app_id, name, "Stopping all processes with SIGTERM");
    dyno.terminate();
    let grace = m.inner.config.stop_timeout;
    let code = match tokio::time::timeout(grace, dyno.wait()).await {
        Ok(code) => code,
        Err(_) => {
            m.log(app_id, name, &format!(
                "Error R12 (Exit timeout) -> At least one process failed to exit within {} seconds of SIGTERM",
                grace.as_secs()
            ));
            m.log(app_id, name, "Stopping all processes with SIGKILL");
            dyno.kill();
            dyno.wait().await
        }
    };
    m.log(app_id, name, &format!("Process exited with status {code}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_grow_and_cap() {
        assert_eq!(restart_delay(1), Duration::ZERO);
        assert_eq!(restart_delay(2), Duration::from_secs(10));
        assert_eq!(restart_delay(3), Duration::from_secs(20));
        assert_eq!(restart_delay(50), Duration::from_secs(1200));
    }
}
