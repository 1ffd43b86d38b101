//! The routing table: host names → apps → up web dynos, and each dyno's connection pool.
//!
//! Reads happen on every request and take one read lock and a few hash lookups; writes come
//! from the dyno manager (dynos up or down) and the API (settings) and rebuild the affected app.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use slipway_types::{Backend, RouteSink, WebStatus};
use tokio::sync::Notify;

use crate::pool::Dyno;
use crate::settings::AppSettings;
use crate::tls::CertStore;

/// One app as the router sees it.
#[derive(Debug)]
pub(crate) struct AppRoute {
    pub app_id: Arc<str>,
    /// Up, routable web dynos.
    pub dynos: Vec<Arc<Dyno>>,
    /// Identifies the set of dynos (session affinity re-points clients when it changes).
    pub generation: u32,
    pub web: WebStatus,
    pub settings: Arc<AppSettings>,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<String, Arc<AppRoute>>,
    /// Custom host name → app name.
    domains: HashMap<String, String>,
    /// `*.example.com` is kept as `example.com` → app name.
    wildcards: HashMap<String, String>,
}

/// App name → up web dynos, plus domains and settings; cheap to clone, shared by the manager,
/// the API and the router.
#[derive(Clone, Default)]
pub struct RouteTable {
    inner: Arc<RwLock<Inner>>,
    /// Counts the changes; a connection's cached route is good while it stays the same.
    version: Arc<AtomicU64>,
    /// Woken on every change, for requests waiting for a dyno to boot.
    pub(crate) changed: Arc<Notify>,
    pub(crate) certs: CertStore,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable").finish_non_exhaustive()
    }
}

fn generation(dynos: &[Arc<Dyno>]) -> u32 {
    let mut names: Vec<(&str, SocketAddr)> = dynos.iter().map(|d| (&*d.name, d.addr)).collect();
    names.sort();
    let mut h = DefaultHasher::new();
    names.hash(&mut h);
    h.finish() as u32
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Also moves the version on: routes looked up before this change are stale once it is
    /// made, and no route looked up after it can carry an older version.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.version.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// The table's version: it changes with every change to it.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn app(&self, name: &str) -> Option<Arc<AppRoute>> {
        self.read().apps.get(name).cloned()
    }

    /// The app serving a custom host name (exact first, then wildcard).
    pub(crate) fn app_for_domain(&self, host: &str) -> Option<Arc<AppRoute>> {
        let inner = self.read();
        let name = inner.domains.get(host).or_else(|| {
            let (_, parent) = host.split_once('.')?;
            inner.wildcards.get(parent)
        })?;
        inner.apps.get(name).cloned()
    }

    /// The up web dynos of an app, if the app is known.
    pub fn backends(&self, app_name: &str) -> Option<Vec<Backend>> {
        self.app(app_name).map(|r| {
            r.dynos
                .iter()
                .map(|d| Backend {
                    dyno: d.name.to_string(),
                    addr: d.addr,
                })
                .collect()
        })
    }

    fn update(&self, app_id: &str, app_name: &str, f: impl FnOnce(&mut AppRoute)) {
        {
            let mut inner = self.write();
            let mut route = match inner.apps.get(app_name) {
                Some(r) => AppRoute {
                    app_id: app_id.into(),
                    dynos: r.dynos.clone(),
                    generation: r.generation,
                    web: r.web,
                    settings: r.settings.clone(),
                },
                None => AppRoute {
                    app_id: app_id.into(),
                    dynos: Vec::new(),
                    generation: 0,
                    web: WebStatus::None,
                    settings: Arc::default(),
                },
            };
            f(&mut route);
            inner.apps.insert(app_name.to_string(), Arc::new(route));
        }
        self.changed.notify_waiters();
    }

    /// Replaces what the router knows of an app besides its dynos (domains, certificates,
    /// features, timeouts, maintenance).
    pub fn configure(&self, app_id: &str, app_name: &str, settings: AppSettings) {
        {
            let mut inner = self.write();
            inner.domains.retain(|_, a| a != app_name);
            inner.wildcards.retain(|_, a| a != app_name);
            for d in &settings.domains {
                let d = d.to_ascii_lowercase();
                match d.strip_prefix("*.") {
                    Some(parent) => inner.wildcards.insert(parent.to_string(), app_name.into()),
                    None => inner.domains.insert(d, app_name.into()),
                };
            }
        }
        self.certs.set_app(app_name, &settings.certs);
        let settings = Arc::new(settings);
        self.update(app_id, app_name, |r| r.settings = settings);
    }

    /// Turns maintenance mode on or off for an app.
    pub fn set_maintenance(&self, app_id: &str, app_name: &str, on: bool) {
        self.update(app_id, app_name, |r| {
            let mut s = (*r.settings).clone();
            s.maintenance = on;
            r.settings = Arc::new(s);
        });
    }
}

impl RouteSink for RouteTable {
    fn set_backends(&self, app_id: &str, app_name: &str, backends: Vec<Backend>) {
        self.update(app_id, app_name, |r| {
            // Dynos still up keep their connection pools.
            let dynos: Vec<Arc<Dyno>> = backends
                .into_iter()
                .map(|b| {
                    r.dynos
                        .iter()
                        .find(|d| *d.name == *b.dyno && d.addr == b.addr)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Dyno::new(b.dyno, b.addr)))
                })
                .collect();
            r.generation = generation(&dynos);
            if !dynos.is_empty() {
                r.web = WebStatus::Up;
            }
            r.dynos = dynos;
        });
    }

    fn set_web_status(&self, app_id: &str, app_name: &str, status: WebStatus) {
        self.update(app_id, app_name, |r| r.web = status);
    }

    fn remove_app(&self, app_name: &str) {
        {
            let mut inner = self.write();
            inner.apps.remove(app_name);
            inner.domains.retain(|_, a| a != app_name);
            inner.wildcards.retain(|_, a| a != app_name);
        }
        self.certs.set_app(app_name, &[]);
        self.changed.notify_waiters();
    }
}
