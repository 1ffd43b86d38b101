//! The dyno manager's clocks (cool-offs, cycling, grace periods, boot timeouts) and release phase,
//! with paused time and a fake runtime. Real dynos go through the same code in the end-to-end
//! tests of the `slipway` crate.
//!
//! The clock is paused only once the store has been used: paused time jumps to the next timer
//! whenever the runtime waits, and a wait on sqlite's worker thread would then fire the pool's
//! acquire timeout. The supervisors themselves never touch the store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_build::SlugStore;
use slipway_logs::{Filter, LogRouter};
use slipway_runtime::{
    BoxFuture, DynoRuntime, DynoSpec, OutputSink, RunningDyno, RuntimeError, Signal,
};
use slipway_store::{NewRelease, NewSlug, ReleaseConfig, ReleaseSlug, Store};
use slipway_types::{Backend, RouteSink};
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

/// What a fake dyno does, chosen by its command.
fn behaviour(command: &str) -> &'static str {
    ["crash", "exit0", "exit1", "stubborn"]
        .into_iter()
        .find(|b| *b == command)
        .unwrap_or("run")
}

#[derive(Default)]
struct FakeState {
    /// (dyno name, when) of every start.
    starts: Mutex<Vec<(String, Instant)>>,
    /// Where web dynos "listen".
    addr: Mutex<Option<SocketAddr>>,
}

struct FakeRuntime(Arc<FakeState>);

impl DynoRuntime for FakeRuntime {
    fn start<'a>(
        &'a self,
        spec: DynoSpec,
        _output: OutputSink,
    ) -> BoxFuture<'a, Result<RunningDyno, RuntimeError>> {
        Box::pin(async move {
            self.0
                .starts
                .lock()
                .unwrap()
                .push((spec.name.clone(), Instant::now()));
            let (tx, rx) = watch::channel(None);
            let tx = Arc::new(tx);
            let kind = behaviour(&spec.command);
            let exit_now = match kind {
                "crash" | "exit1" => Some(1),
                "exit0" => Some(0),
                _ => None,
            };
            if let Some(code) = exit_now {
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let _ = tx.send(Some(code));
                });
            }
            let signal = move |sig: Signal| {
                let code = match (sig, kind) {
                    (Signal::SIGKILL, _) => 128 + 9,
                    (Signal::SIGTERM, "stubborn") => return,
                    (Signal::SIGTERM, _) => 128 + 15,
                    _ => return,
                };
                if tx.borrow().is_none() {
                    let _ = tx.send(Some(code));
                }
            };
            let addr = self
                .0
                .addr
                .lock()
                .unwrap()
                .unwrap_or_else(|| "127.0.0.1:9".parse().unwrap());
            Ok(RunningDyno::from_parts(addr, rx, Arc::new(signal)))
        })
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

#[derive(Default)]
struct Routes(Mutex<Vec<Backend>>);

impl RouteSink for Routes {
    fn set_backends(&self, _app_id: &str, _app_name: &str, backends: Vec<Backend>) {
        *self.0.lock().unwrap() = backends;
    }
    fn remove_app(&self, _app_name: &str) {}
}

struct World {
    m: Manager,
    fake: Arc<FakeState>,
    store: Store,
    logs: LogRouter,
    slugs: SlugStore,
    app_id: String,
    t0: Instant,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new(process_types: &[(&str, &str)], formation: &[(&str, u32)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).await.unwrap();
        let owner = store.create_account("owner@x.test", None).await.unwrap();
        let app = store.create_app("app", &owner).await.unwrap();
        let slugs = SlugStore::local(dir.path().join("slugs")).unwrap();
        let fake = Arc::new(FakeState::default());
        let logs = LogRouter::new();
        let m = Manager::new(
            store.clone(),
            logs.clone(),
            slugs.clone(),
            Arc::new(FakeRuntime(fake.clone())),
            Arc::new(Routes::default()),
            ManagerConfig {
                slug_root: dir.path().join("unpacked"),
                boot_timeout: Duration::from_secs(60),
                stop_timeout: Duration::from_secs(30),
                release_timeout: Duration::from_secs(3600),
                state_dir: None,
            },
        );
        let w = World {
            m,
            fake,
            store,
            logs,
            slugs,
            app_id: app.id,
            t0: Instant::now(),
            _dir: dir,
        };
        w.deploy(process_types).await;
        let updates: Vec<(String, u32, Option<String>)> = formation
            .iter()
            .map(|(t, q)| (t.to_string(), *q, None))
            .collect();
        w.store.update_formation(&w.app_id, &updates).await.unwrap();
        w
    }

    /// A new slug with these process types and a release of it; gives the release.
    async fn deploy(&self, process_types: &[(&str, &str)]) -> slipway_store::ReleaseRow {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("marker"), uuid::Uuid::new_v4().to_string()).unwrap();
        let (sha, size) = self.slugs.pack_and_put(src.path()).await.unwrap();
        let types: BTreeMap<String, String> = process_types
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let slug = self
            .store
            .create_slug(
                &self.app_id,
                NewSlug {
                    sha256: &sha,
                    size,
                    commit: None,
                    buildpack_description: None,
                    process_types: &types,
                    stack: "test",
                },
            )
            .await
            .unwrap();
        self.store
            .create_release(
                &self.app_id,
                NewRelease {
                    slug: ReleaseSlug::Exactly(Some(slug.id)),
                    config: ReleaseConfig::Inherit,
                    description: "Deploy".into(),
                    user_email: "owner@x.test".into(),
                    user_id: "x".into(),
                },
            )
            .await
            .unwrap()
    }

    fn starts(&self) -> Vec<(String, u64)> {
        self.fake
            .starts
            .lock()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), (*t - self.t0).as_secs()))
            .collect()
    }

    fn log(&self) -> String {
        let (lines, _) = self.logs.snapshot(&self.app_id, &Filter::default(), 1500);
        lines
            .iter()
            .map(|l| format!("{}[{}]: {}", l.source.as_str(), l.dyno, l.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Sleeps (in paused time) until `f` holds, or panics after `limit` of virtual time.
    async fn until(&self, limit: Duration, what: &str, f: impl Fn(&World) -> bool) {
        let deadline = Instant::now() + limit;
        while !f(self) {
            assert!(Instant::now() < deadline, "never: {what}\n{}", self.log());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

const MIN: u64 = 60;

#[tokio::test]
async fn crashes_wait_herokus_cool_offs_and_restart_resets_them() {
    let w = World::new(&[("worker", "crash")], &[("worker", 1)]).await;
    w.m.reconcile(&w.app_id).await.unwrap();
    tokio::time::pause();
    // First crash: at once. Then 20, 40, 60, 180, 320 minutes.
    w.until(Duration::from_secs(700 * MIN), "seven starts", |w| {
        w.starts().len() >= 7
    })
    .await;
    let minutes: Vec<u64> = w.starts().iter().map(|(_, s)| s / MIN).collect();
    assert_eq!(minutes, [0, 0, 20, 60, 120, 300, 620], "{}", w.log());
    // While it waits, ps says crashed and when the next try is.
    w.until(Duration::from_secs(60), "crashed", |w| {
        w.m.dynos(&w.app_id)[0].state == DynoState::Crashed
    })
    .await;
    let d = &w.m.dynos(&w.app_id)[0];
    let next = d.restart_at.expect("next try shown");
    let wait = (next - Utc::now()).num_minutes();
    assert!((318..=320).contains(&wait), "{wait}");
    assert_eq!(d.exit_status, Some(1));
    assert!(w
        .log()
        .contains("heroku[worker.1]: State changed from up to crashed"));
    assert!(w
        .log()
        .contains("heroku[worker.1]: Process exited with status 1"));

    // ps:restart during the cool-off starts it at once, with a fresh series: its next crash
    // restarts at once too.
    let before = w.starts().len();
    let at = w.elapsed().as_secs();
    w.m.restart(&w.app_id, RestartTarget::All).await.unwrap();
    w.until(Duration::from_secs(10), "restarted", |w| {
        w.starts().len() >= before + 2
    })
    .await;
    let s = w.starts();
    assert!(s[before].1 - at < 2 && s[before + 1].1 - at < 2, "{s:?}");
    w.until(
        Duration::from_secs(30 * MIN),
        "the 20-minute cool-off",
        |w| w.starts().len() >= before + 3,
    )
    .await;
    assert_eq!((w.starts()[before + 2].1 - at) / MIN, 20);
}

#[tokio::test]
async fn dynos_cycle_daily_unless_turned_off() {
    let w = World::new(&[("worker", "run")], &[("worker", 1)]).await;
    w.m.reconcile(&w.app_id).await.unwrap();
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(24 * 60 * MIN - MIN)).await;
    assert_eq!(w.starts().len(), 1, "no cycle before 24 h");
    w.until(Duration::from_secs(217 * MIN + MIN), "cycled", |w| {
        w.starts().len() == 2
    })
    .await;
    let at = w.starts()[1].1;
    assert!(
        (24 * 60 * MIN..=(24 * 60 + 216) * MIN).contains(&at),
        "{at}"
    );
    let log = w.log();
    let cycling = log
        .find("heroku[worker.1]: Cycling")
        .expect("Cycling logged");
    let term = log[cycling..]
        .find("Stopping all processes with SIGTERM")
        .expect("SIGTERM after Cycling");
    assert!(log[cycling + term..].contains("Process exited with status 143"));
    assert!(log[cycling..].contains("State changed from up to starting"));

    // Turned off: nothing for days.
    tokio::time::resume();
    let off = World::new(&[("worker", "run")], &[("worker", 1)]).await;
    off.store.set_cycling(&off.app_id, "off").await.unwrap();
    off.m.reconcile(&off.app_id).await.unwrap();
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(4 * 24 * 60 * MIN)).await;
    assert_eq!(off.starts().len(), 1);

    // At a chosen time: between one and 25 hours away, within a quarter hour of it.
    tokio::time::resume();
    let at = World::new(&[("worker", "run")], &[("worker", 1)]).await;
    at.store.set_cycling(&at.app_id, "04:30").await.unwrap();
    at.m.reconcile(&at.app_id).await.unwrap();
    let wall0 = Utc::now();
    tokio::time::pause();
    at.until(Duration::from_secs(26 * 60 * MIN), "cycled at 04:30", |w| {
        w.starts().len() == 2
    })
    .await;
    let secs = at.starts()[1].1;
    assert!(
        (60 * MIN..=(24 * 60 + 15) * MIN + 60).contains(&secs),
        "{secs}"
    );
    // The schedule was taken from the wall clock at the start; paused time moves only tokio's.
    let cycled_at = wall0 + chrono::Duration::seconds(secs as i64);
    let minute_of_day =
        chrono::Timelike::hour(&cycled_at) * 60 + chrono::Timelike::minute(&cycled_at);
    assert!((270..=286).contains(&minute_of_day), "{cycled_at}");
}

#[tokio::test]
async fn stopping_gives_the_grace_period_then_sigkill_with_r12() {
    let w = World::new(
        &[("stubborn", "stubborn"), ("worker", "run")],
        &[("stubborn", 1), ("worker", 1)],
    )
    .await;
    w.m.reconcile(&w.app_id).await.unwrap();
    w.until(Duration::from_secs(15), "both up", |w| {
        w.m.dynos(&w.app_id)
            .iter()
            .filter(|d| d.state == DynoState::Up)
            .count()
            == 2
    })
    .await;
    w.store
        .update_formation(
            &w.app_id,
            &[("stubborn".into(), 0, None), ("worker".into(), 0, None)],
        )
        .await
        .unwrap();
    w.m.reconcile(&w.app_id).await.unwrap();
    tokio::time::pause();
    let t = Instant::now();
    // The one that honours SIGTERM is gone at once, without R12.
    w.until(Duration::from_secs(5), "worker stopped", |w| {
        w.log()
            .contains("heroku[worker.1]: Process exited with status 143")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(28)).await;
    assert!(!w.log().contains("R12"), "{}", w.log());
    w.until(Duration::from_secs(5), "R12", |w| w.log().contains("R12"))
        .await;
    assert!((29..=31).contains(&t.elapsed().as_secs()));
    let log = w.log();
    assert!(log.contains("heroku[stubborn.1]: Error R12 (Exit timeout) -> At least one process failed to exit within 30 seconds of SIGTERM"), "{log}");
    assert!(log.contains("heroku[stubborn.1]: Stopping remaining processes with SIGKILL"));
    assert!(log.contains("heroku[stubborn.1]: Process exited with status 137"));
    assert!(!log.contains("heroku[worker.1]: Error R12"));
}

#[tokio::test]
async fn a_web_dyno_gets_the_apps_boot_timeout() {
    let w = World::new(&[("web", "run")], &[("web", 1)]).await;
    // Nothing listens where the fake dynos are: a bound socket that does not listen holds the
    // port, so no other test takes it meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = held.local_addr().unwrap();
    *w.fake.addr.lock().unwrap() = Some(closed);
    w.store.set_boot_timeout(&w.app_id, Some(90)).await.unwrap();
    w.m.reconcile(&w.app_id).await.unwrap();
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(80)).await;
    assert!(!w.log().contains("R10"), "not at the server's 60 s");
    w.until(Duration::from_secs(20), "R10", |w| w.log().contains("R10"))
        .await;
    let log = w.log();
    assert!(log.contains("heroku[web.1]: Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 90 seconds of launch"), "{log}");
    assert!(log.contains("heroku[web.1]: Stopping process with SIGKILL"));
    assert!(log.contains("heroku[web.1]: State changed from starting to crashed"));
}

#[tokio::test]
async fn the_release_phase_decides_whether_a_release_goes_live() {
    let w = World::new(&[("worker", "run")], &[("worker", 1)]).await;
    w.m.reconcile(&w.app_id).await.unwrap();
    let v2 = w.store.current_release(&w.app_id).await.unwrap().unwrap();

    // A release command that passes: the release goes live and the worker moves to it.
    let v3 = w.deploy(&[("worker", "run"), ("release", "exit0")]).await;
    assert_eq!(v3.status, "pending");
    assert!(w.m.finish_release(&w.app_id, &v3.id, None).await.unwrap());
    let v3 = w.store.release(&w.app_id, &v3.id).await.unwrap().unwrap();
    assert_eq!(v3.status, "succeeded");
    w.until(Duration::from_secs(60), "worker on v3", |w| {
        w.m.dynos(&w.app_id).iter().any(|d| {
            d.name == "worker.1" && d.release_version == v3.version && d.state == DynoState::Up
        })
    })
    .await;
    let log = w.log();
    assert!(
        log.contains(&format!("for release v{}", v3.version)),
        "{log}"
    );
    assert!(log.contains("]: Process exited with status 0"), "{log}");
    assert!(w.starts().iter().any(|(n, _)| n.starts_with("release.")));
    assert!(w
        .m
        .dynos(&w.app_id)
        .iter()
        .all(|d| !d.name.starts_with("release.")));

    // One that fails: marked failed, and v3 keeps running.
    let v4 = w.deploy(&[("worker", "run"), ("release", "exit1")]).await;
    assert!(!w.m.finish_release(&w.app_id, &v4.id, None).await.unwrap());
    let v4 = w.store.release(&w.app_id, &v4.id).await.unwrap().unwrap();
    assert_eq!(v4.status, "failed");
    let current = w.store.current_release(&w.app_id).await.unwrap().unwrap();
    assert_eq!(current.version, v3.version);
    w.m.reconcile(&w.app_id).await.unwrap();
    let dynos = w.m.dynos(&w.app_id);
    assert_eq!(dynos.len(), 1);
    assert_eq!(dynos[0].release_version, v3.version);
    assert!(v2.version < v3.version);
    // A config change next builds on v3's slug, not on the failed v4's.
    let v5 = w
        .store
        .create_release(
            &w.app_id,
            NewRelease {
                slug: ReleaseSlug::Inherit,
                config: ReleaseConfig::Patch(BTreeMap::from([("A".into(), Some("1".into()))])),
                description: "Set A config vars".into(),
                user_email: "owner@x.test".into(),
                user_id: "x".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(v5.slug_id, current.slug_id);
    assert_eq!(v5.status, "pending", "v3's slug has a release phase");
}

/// A restart starts the new process as soon as the old one has SIGTERM, as on Heroku: a dyno
/// whose old process takes its whole grace period to stop is up again long before that.
#[tokio::test]
async fn a_restart_starts_the_new_process_while_the_old_one_stops() {
    let w = World::new(&[("stubborn", "stubborn")], &[("stubborn", 1)]).await;
    w.m.reconcile(&w.app_id).await.unwrap();
    w.until(Duration::from_secs(15), "up", |w| {
        w.m.dynos(&w.app_id)
            .iter()
            .any(|d| d.state == DynoState::Up)
    })
    .await;
    w.m.restart(&w.app_id, RestartTarget::All).await.unwrap();
    w.until(Duration::from_secs(10), "the new process up", |w| {
        w.log()
            .matches("heroku[stubborn.1]: Starting process")
            .count()
            == 2
            && w.m
                .dynos(&w.app_id)
                .iter()
                .any(|d| d.state == DynoState::Up)
    })
    .await;
    let log = w.log();
    assert!(
        log.contains("heroku[stubborn.1]: Stopping all processes with SIGTERM"),
        "{log}"
    );
    // The old process is still in its 30 s grace period.
    assert!(!log.contains("R12"), "{log}");
}
