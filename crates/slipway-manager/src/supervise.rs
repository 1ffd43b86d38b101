//! One dyno's life: start, boot, up, and what ends it (exit, stop, restart, cycling, R10/R15),
//! with Heroku's cool-offs between crashes and Heroku's words in the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use slipway_runtime::{DynoSpec, OutputSink, RunningDyno};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::schedule::{restart_delay, CLEAN_RUN};
use crate::{lock, Attached, DynoState, DynoStatus, Manager};

/// What the manager asks of a supervised dyno.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ctl {
    /// Stop for good (scale down, new release, ps:stop, shutdown).
    pub stop: bool,
    /// Bumped by every `ps:restart` of this dyno.
    pub restarts: u64,
}

/// Why an up (or booting) dyno stopped running.
enum Outcome {
    Exited(i32),
    Stop,
    Restart,
    Cycle,
    BootTimeout,
}

/// Waits until the control asks for something beyond `seen_restarts`; a dropped sender means stop.
async fn next_request(rx: &mut watch::Receiver<Ctl>, seen_restarts: u64) -> Ctl {
    match rx.wait_for(|c| c.stop || c.restarts > seen_restarts).await {
        Ok(c) => *c,
        Err(_) => Ctl {
            stop: true,
            restarts: seen_restarts,
        },
    }
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

pub(crate) fn set_state(
    m: &Manager,
    app_id: &str,
    status: &Arc<Mutex<DynoStatus>>,
    state: DynoState,
) {
    let (name, old) = {
        let mut st = lock(status);
        let old = st.state;
        st.state = state;
        st.updated_at = Utc::now();
        if state != DynoState::Crashed {
            st.restart_at = None;
        }
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

/// Runs one dyno for as long as it is wanted.
pub(crate) async fn supervise(
    m: Manager,
    app_id: String,
    spec: DynoSpec,
    status: Arc<Mutex<DynoStatus>>,
    ctl: watch::Receiver<Ctl>,
    attach: Option<oneshot::Sender<Attached>>,
    extra_output: Option<OutputSink>,
) {
    run(m, app_id, spec, status, ctl, attach, extra_output, None).await
}

/// [`supervise`] for a dyno a previous server started (`spec.id` is its instance).
pub(crate) async fn supervise_from(
    m: Manager,
    app_id: String,
    spec: DynoSpec,
    status: Arc<Mutex<DynoStatus>>,
    ctl: watch::Receiver<Ctl>,
    adopted: Option<RunningDyno>,
) {
    run(m, app_id, spec, status, ctl, None, None, adopted).await
}

#[allow(clippy::too_many_arguments)]
async fn run(
    m: Manager,
    app_id: String,
    spec: DynoSpec,
    status: Arc<Mutex<DynoStatus>>,
    mut ctl: watch::Receiver<Ctl>,
    mut attach: Option<oneshot::Sender<Attached>>,
    extra_output: Option<OutputSink>,
    mut adopted: Option<RunningDyno>,
) {
    let name = spec.name.clone();
    let (is_web, oneoff) = {
        let st = lock(&status);
        (st.process_type == "web", st.oneoff)
    };
    let mut seen_restarts = ctl.borrow().restarts;
    let mut crashes = 0u32;
    loop {
        if ctl.borrow().stop {
            break;
        }
        let settings = m.settings(&app_id);
        let taken_over = adopted.is_some();
        let (mut dyno, instance) = match adopted.take() {
            Some(d) => (d, spec.id.clone()),
            None => {
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
                let sink = m.output_sink(&app_id, &name, extra_output.clone());
                let mut instance = spec.clone();
                instance.id = uuid::Uuid::new_v4().simple().to_string();
                let id = instance.id.clone();
                match m.inner.runtime.start(instance, sink).await {
                    Ok(d) => (d, id),
                    Err(error) => {
                        warn!(app_id = %app_id, dyno = %name, %error, "Dyno failed to start.");
                        m.log(
                            &app_id,
                            &name,
                            &format!("Error R99 (Platform error) -> {error}"),
                        );
                        if oneoff {
                            m.log(&app_id, &name, "State changed from starting to crashed");
                            m.forget(&app_id, &status);
                            return;
                        }
                        // The platform's fault, not the app's: retried every few seconds, no
                        // cool-off.
                        set_state(&m, &app_id, &status, DynoState::Crashed);
                        match wait_retry(&status, PLATFORM_RETRY, &mut ctl, seen_restarts).await {
                            Some(restarts) => {
                                seen_restarts = restarts;
                                continue;
                            }
                            None if ctl.borrow().stop => break,
                            None => continue,
                        }
                    }
                }
            }
        };
        if dyno.adoptable {
            let st = lock(&status).clone();
            m.record(&crate::DynoRecord {
                instance: instance.clone(),
                id: st.id.clone(),
                app_id: app_id.clone(),
                name: st.name,
                process_type: st.process_type,
                size: st.size,
                command: st.command,
                release_id: st.release_id,
                release_version: st.release_version,
                oneoff: st.oneoff,
                created_at: st.created_at,
            });
        }
        let started = tokio::time::Instant::now();
        lock(&status).addr = Some(dyno.addr);
        if let (Some(tx), Some(io)) = (attach.take(), dyno.io.take()) {
            let _ = tx.send(Attached {
                io,
                exit: dyno.exit.clone(),
            });
        }
        let booted = if is_web {
            tokio::select! {
                r = tokio::time::timeout(settings.boot_timeout, wait_listening(dyno.addr)) => {
                    if r.is_ok() { None } else { Some(Outcome::BootTimeout) }
                }
                code = dyno.wait() => Some(Outcome::Exited(code)),
                c = next_request(&mut ctl, seen_restarts) => {
                    seen_restarts = c.restarts;
                    Some(if c.stop { Outcome::Stop } else { Outcome::Restart })
                }
            }
        } else {
            None
        };
        let outcome = match booted {
            Some(o) => o,
            None => {
                if taken_over {
                    // Taken over from the previous server: already up, nothing to announce.
                    {
                        let mut st = lock(&status);
                        st.state = DynoState::Up;
                    }
                    m.publish(&app_id);
                } else {
                    set_state(&m, &app_id, &status, DynoState::Up);
                }
                info!(app_id = %app_id, dyno = %name, "Dyno up.");
                let monitor = dyno.monitor();
                let cycle = settings
                    .cycling
                    .next_cycle(Utc::now(), rand_unit())
                    .unwrap_or(Duration::MAX);
                tokio::select! {
                    code = dyno.wait() => Outcome::Exited(code),
                    c = next_request(&mut ctl, seen_restarts) => {
                        seen_restarts = c.restarts;
                        if c.stop { Outcome::Stop } else { Outcome::Restart }
                    }
                    _ = sleep_long(cycle) => Outcome::Cycle,
                    // R15: the kernel killed one of its processes at the hard limit (a worker
                    // of a server, say); the whole dyno goes, as on Heroku.
                    () = watch_memory(&m, &app_id, &name, &monitor) => {
                        dyno.kill();
                        Outcome::Exited(dyno.wait().await)
                    }
                }
            }
        };
        match outcome {
            Outcome::Stop => {
                if is_web {
                    drain().await;
                }
                graceful_stop(&m, &app_id, &name, &mut dyno).await;
                m.unrecord(&instance);
                set_state(&m, &app_id, &status, DynoState::Down);
                break;
            }
            Outcome::Restart | Outcome::Cycle => {
                let why = if matches!(outcome, Outcome::Cycle) {
                    "Cycling"
                } else {
                    "Restarting"
                };
                m.log(&app_id, &name, why);
                // Out of the routing table before the signal.
                set_state(&m, &app_id, &status, DynoState::Starting);
                if is_web {
                    drain().await;
                }
                if oneoff {
                    graceful_stop(&m, &app_id, &name, &mut dyno).await;
                    m.unrecord(&instance);
                    m.forget(&app_id, &status);
                    return;
                }
                // As on Heroku, the new process starts as soon as the old one is signalled: the
                // old one has its grace period meanwhile, and a web dyno is back after its boot
                // time, not after the old one's shutdown plus that.
                signal_stop(&m, &app_id, &name, &mut dyno);
                let (m2, app2, name2) = (m.clone(), app_id.clone(), name.clone());
                let stopping = tokio::spawn(async move {
                    finish_stop(&m2, &app2, &name2, &mut dyno).await;
                    m2.unrecord(&instance);
                });
                m.track_stopping(&app_id, stopping);
                crashes = 0;
                continue;
            }
            Outcome::BootTimeout => {
                let secs = settings.boot_timeout.as_secs();
                m.log(&app_id, &name, &format!(
                    "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {secs} seconds of launch"
                ));
                m.log(&app_id, &name, "Stopping process with SIGKILL");
                dyno.kill();
                let code = dyno.wait().await;
                m.unrecord(&instance);
                m.log(
                    &app_id,
                    &name,
                    &format!("Process exited with status {code}"),
                );
            }
            Outcome::Exited(code) => {
                m.unrecord(&instance);
                if dyno.monitor().memory().is_some_and(|s| s.oom_kills > 0) {
                    m.log(&app_id, &name, "Error R15 (Memory quota vastly exceeded)");
                    m.log(&app_id, &name, "Stopping process with SIGKILL");
                }
                m.log(
                    &app_id,
                    &name,
                    &format!("Process exited with status {code}"),
                );
                lock(&status).exit_status = Some(code);
            }
        }
        if oneoff {
            m.log(&app_id, &name, "State changed from up to complete");
            m.forget(&app_id, &status);
            return;
        }
        set_state(&m, &app_id, &status, DynoState::Crashed);
        // A dyno that ran for a while before exiting made a clean start.
        if started.elapsed() >= CLEAN_RUN {
            crashes = 0;
        }
        crashes += 1;
        match wait_retry(&status, restart_delay(crashes), &mut ctl, seen_restarts).await {
            Some(restarts) => {
                // ps:restart during the cool-off: start again now, with a fresh series.
                seen_restarts = restarts;
                crashes = 0;
            }
            None if ctl.borrow().stop => {
                set_state(&m, &app_id, &status, DynoState::Down);
                break;
            }
            None => {}
        }
    }
}

/// How soon a dyno that the platform failed to start is tried again.
const PLATFORM_RETRY: Duration = Duration::from_secs(10);

/// Sleeps through a cool-off (shown in `ps` as the next try). `Some(restarts)` if a restart cut
/// it short; `None` when it ran out or a stop came.
async fn wait_retry(
    status: &Arc<Mutex<DynoStatus>>,
    delay: Duration,
    ctl: &mut watch::Receiver<Ctl>,
    seen_restarts: u64,
) -> Option<u64> {
    if delay.is_zero() || ctl.borrow().stop {
        return None;
    }
    lock(status).restart_at = chrono::Duration::from_std(delay)
        .ok()
        .map(|d| Utc::now() + d);
    tokio::select! {
        _ = tokio::time::sleep(delay) => None,
        c = next_request(ctl, seen_restarts) => (!c.stop).then_some(c.restarts),
    }
}

/// Sleeps for `d`, or forever when it is too long for the timer wheel.
async fn sleep_long(d: Duration) {
    match tokio::time::Instant::now().checked_add(d) {
        Some(at) if d < Duration::from_secs(100 * 365 * 86_400) => {
            tokio::time::sleep_until(at).await
        }
        _ => std::future::pending().await,
    }
}

fn rand_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0
}

/// How often a dyno's memory is read, and how often R14 repeats while it stays over quota.
const MEMORY_CHECK: Duration = Duration::from_secs(5);
const R14_REPEAT: Duration = Duration::from_secs(60);

/// Logs R14 whenever a dyno goes over its memory quota, as Heroku does. Returns once the
/// kernel has killed one of the dyno's processes for memory (R15).
async fn watch_memory(
    m: &Manager,
    app_id: &str,
    name: &str,
    monitor: &slipway_runtime::DynoMonitor,
) {
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(MEMORY_CHECK).await;
        let Some(stats) = monitor.memory() else {
            continue;
        };
        if stats.oom_kills > 0 {
            return;
        }
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

/// How long a web dyno taken out of the routing table still gets new connections from requests
/// the router had already sent its way, before SIGTERM.
const DRAIN: Duration = Duration::from_millis(500);

async fn drain() {
    tokio::time::sleep(DRAIN).await;
}

/// SIGTERM to every process, the grace period, then SIGKILL (R12).
pub(crate) async fn graceful_stop(m: &Manager, app_id: &str, name: &str, dyno: &mut RunningDyno) {
    signal_stop(m, app_id, name, dyno);
    finish_stop(m, app_id, name, dyno).await;
}

/// The first half of [`graceful_stop`]: SIGTERM to every process.
fn signal_stop(m: &Manager, app_id: &str, name: &str, dyno: &mut RunningDyno) {
    m.log(app_id, name, "Stopping all processes with SIGTERM");
    dyno.terminate();
}

/// The second half of [`graceful_stop`]: the grace period, then SIGKILL (R12).
async fn finish_stop(m: &Manager, app_id: &str, name: &str, dyno: &mut RunningDyno) {
    let grace = m.inner.config.stop_timeout;
    let code = match tokio::time::timeout(grace, dyno.wait()).await {
        Ok(code) => code,
        Err(_) => {
            m.log(app_id, name, &format!(
                "Error R12 (Exit timeout) -> At least one process failed to exit within {} seconds of SIGTERM",
                grace.as_secs()
            ));
            m.log(app_id, name, "Stopping remaining processes with SIGKILL");
            dyno.kill();
            dyno.wait().await
        }
    };
    m.log(app_id, name, &format!("Process exited with status {code}"));
}
