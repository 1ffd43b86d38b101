//! `slipway server`: every component in one process, with embedded defaults.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use slipway_api::auth::{generate_key, hash_key};
use slipway_api::{ApiConfig, AppState};
use slipway_build::{BuildSandbox, Builder, SlugStore};
use slipway_logs::LogRouter;
use slipway_manager::{Manager, ManagerConfig};
use slipway_router::{RouteTable, RouterConfig};
use slipway_runtime::cgroup::CgroupDriver;
use slipway_runtime::container::{ContainerConfig, ContainerRuntime};
use slipway_runtime::net::{NetConfig, Network};
use slipway_runtime::stack::{Stack, DYNO_GID, DYNO_UID};
use slipway_runtime::{DynoRuntime, DynoSpec, HostRuntime};
use slipway_store::Store;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::config::{Choice, Config, ServerArgs};

/// The stack dynos and builds run on for now: the host's own root filesystem.
const STACK: &str = "slipway-host";

pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let args = match ServerArgs::try_parse_from(args.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(" ▸    Invalid setting: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(" ▸    Cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("Slipway stopped: {e:#}");
            eprintln!(" ▸    {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a secret file whole or not at all: made 0600 from the start (never readable by
/// others, even briefly), synced, then renamed into place.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = || format!("cannot write {}", path.display());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(fail)?;
    file.write_all(contents.as_bytes()).with_context(fail)?;
    file.sync_all().with_context(fail)?;
    std::fs::rename(&tmp, path).with_context(fail)?;
    Ok(())
}

/// Creates the owner account on first start, and gives it a key the local CLI can read from
/// `<data-dir>/owner.api-key` (mode 0600) whenever that file is missing.
async fn ensure_owner(store: &Store, config: &Config) -> anyhow::Result<()> {
    let key_file = config.data_dir.join("owner.api-key");
    let owner = match store.account_by_email(&config.owner_email).await? {
        Some(a) => a,
        None if store.account_count().await? == 0 => {
            let a = store
                .create_account(&config.owner_email, Some("Owner"))
                .await?;
            info!(email = %a.email, "Created the owner account.");
            a
        }
        None => return Ok(()),
    };
    // Missing, or left empty by an older version killed while writing it.
    if std::fs::metadata(&key_file).map_or(true, |m| m.len() == 0) {
        let key = generate_key();
        store
            .add_api_key(&owner.id, &hash_key(&key), "owner key (local CLI)")
            .await?;
        write_private(&key_file, &format!("{key}\n"))?;
        info!(file = %key_file.display(), "Wrote the owner's API key for the local CLI.");
    }
    Ok(())
}

/// Connections the API's TLS listener serves at once.
const API_TLS_CONNECTIONS: usize = 4096;

/// Serves the API over TLS: the same app as on the plain listener, HTTP/1.1 with upgrades (the
/// log stream and git need nothing more), until `stop`.
async fn serve_api_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tower::ServiceExt;
    // This listener may face the internet: connections are counted, and a client gets 30 s to
    // send a request's head (also between requests on a kept-alive connection).
    let slots = Arc::new(tokio::sync::Semaphore::new(API_TLS_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                warn!(%error, "The API's TLS listener could not accept a connection.");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!("The API's TLS listener is at {API_TLS_CONNECTIONS} connections; refusing more.");
            continue;
        };
        let conn = slipway_api::ApiConn::of(&tcp);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(tls)) = handshake.await else {
                return;
            };
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(conn.clone()));
                    req.extensions_mut().insert(slipway_api::ViaTls);
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades()
                .await;
        });
    }
}

/// The dyno launcher: `slipway-dyno` beside this binary (it starts faster), else this binary
/// (`slipway dyno-exec` runs the same code).
fn launcher_exe() -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let small = exe.with_file_name("slipway-dyno");
    Ok(if small.is_file() { small } else { exe })
}

/// The names the server's certificate covers: loopback, the host's name, the base domain (and
/// its subdomains), and any configured `tls_names`.
fn tls_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(host) = nix::unistd::gethostname() {
        if let Some(h) = host.to_str().filter(|h| !h.is_empty()) {
            names.push(h.to_ascii_lowercase());
        }
    }
    names.push(config.base_domain.clone());
    names.push(format!("*.{}", config.base_domain));
    for addr in [config.api_listen, config.rendezvous_listen] {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    names.extend(config.tls_names.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The event loop of one router thread: a single-threaded runtime (the router's work is short
/// and per connection; one loop per thread avoids cross-thread wake-ups).
pub fn router_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Starts `threads` router threads, each accepting on both listeners, until `stop` turns true.
fn spawn_router(
    threads: usize,
    http: std::net::TcpListener,
    https: std::net::TcpListener,
    routes: RouteTable,
    logs: LogRouter,
    config: RouterConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for i in 0..threads {
        let (http, https) = (http.try_clone()?, https.try_clone()?);
        let (routes, logs, config, stop) =
            (routes.clone(), logs.clone(), config.clone(), stop.clone());
        let rt = router_runtime()?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("router-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                            let _ = rx.wait_for(|s| *s).await;
                        };
                        let (http, https) =
                            match (TcpListener::from_std(http), TcpListener::from_std(https)) {
                                (Ok(a), Ok(b)) => (a, b),
                                (Err(error), _) | (_, Err(error)) => {
                                    warn!(%error, "A router thread could not start.");
                                    return;
                                }
                            };
                        let plain = slipway_router::serve(
                            http,
                            routes.clone(),
                            logs.clone(),
                            config.clone(),
                            wait(stop.clone()),
                        );
                        let tls =
                            slipway_router::serve_tls(https, routes, logs, config, wait(stop));
                        let (_, tls) = tokio::join!(plain, tls);
                        if let Err(error) = tls {
                            warn!(%error, "The HTTPS router stopped.");
                        }
                    })
                })?,
        );
    }
    Ok(handles)
}

async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {what}; is another server using it? Choose another with {flag}"))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The dyno runtime this host can give, and a sentence saying which and why.
pub(crate) struct Runtime {
    pub(crate) runtime: Arc<dyn DynoRuntime>,
    pub(crate) network: Option<Network>,
    pub(crate) description: String,
    /// Why sizes cannot be enforced, when dynos are host processes.
    pub(crate) sizes_unenforceable: Option<String>,
    /// The dyno cgroups' driver; its base dirs are removed at shutdown.
    pub(crate) cgroups: Option<Arc<CgroupDriver>>,
    /// With container dynos, builds run in build dynos on the same stack.
    pub(crate) build_sandbox: Option<BuildSandbox>,
}

/// The add-on providers: servers in `--addons-dir`, on `--addon-ports`, reachable by dynos on
/// the bridge's gateway (or on 127.0.0.1 without a dyno network), capped by cgroups when dynos
/// are.
fn addons_setup(
    config: &Config,
    api_addr: std::net::SocketAddr,
    runtime: &Runtime,
    store: &slipway_store::Store,
    logs: &slipway_logs::LogRouter,
) -> anyhow::Result<slipway_addons::Addons> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.addons_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the add-ons dir {}", dir.display()))?;
    // Others may pass through (each add-on's own dir is 0700, its server's user's).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    if let Some(blocked) = untraversable_parent(dir) {
        warn!(
            "Add-on servers cannot reach {}: {} is closed to other users. Use --addons-dir under a \
             directory others can traverse (such as /var/lib).",
            dir.display(),
            blocked.display()
        );
    }
    let gateway = runtime.network.as_ref().map(|n| n.subnet().gateway());
    let mut listen = vec![std::net::Ipv4Addr::LOCALHOST];
    listen.extend(gateway);
    let cgroups = match &runtime.cgroups {
        Some(_) => CgroupDriver::detect(
            std::path::Path::new("/sys/fs/cgroup"),
            &format!("{}-addons", config.node_name),
        )
        .map(Arc::new)
        .map_err(|error| warn!(%error, "Add-on servers run without memory caps."))
        .ok(),
        None => None,
    };
    Ok(slipway_addons::Addons::new(
        slipway_addons::AddonsConfig {
            dir: dir.clone(),
            ports: config.addon_ports,
            listen,
            dyno_host: gateway.map_or_else(|| "127.0.0.1".to_string(), |g| g.to_string()),
            exe: std::env::current_exe().context("cannot find the slipway binary's path")?,
            cgroups,
            redis_server: config.redis_server.clone(),
            postgres_bin: config.postgres_bin.clone(),
            dyno_subnet: runtime.network.as_ref().map(|n| n.subnet().to_string()),
            check_interval: config.addon_check_interval,
            row_limit_grace: config.row_limit_grace,
            manifests_dir: Some(config.data_dir.join("addon-manifests")),
            backups_dir: config.data_dir.join("pg-backups"),
            diagnose: slipway_addons::postgres::DiagnoseLimits {
                long_query: config.pg_long_query,
                long_transaction: config.pg_long_transaction,
            },
            dataclips: slipway_addons::dataclips::ClipLimits {
                statement_timeout: config.dataclip_statement_timeout,
                timeout: config.dataclip_timeout,
                ..Default::default()
            },
            api_url: format!("http://{api_addr}"),
        },
        store.clone(),
        logs.clone(),
    ))
}

/// The first parent of `dir` that users other than its owner cannot pass through.
fn untraversable_parent(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::fs::canonicalize(dir).ok()?;
    dir.ancestors()
        .skip(1)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(|p| p.to_path_buf())
}

/// Sets container dynos up and proves they work by starting one; the error says why not.
pub(crate) async fn container_runtime(config: &Config) -> Result<Runtime, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the server is not running as root".into());
    }
    let stack = Stack::host(&config.data_dir.join("stacks/slipway-host"))
        .map_err(|e| format!("cannot prepare the slipway-host stack: {e}"))?;
    let cgroups = CgroupDriver::detect(std::path::Path::new("/sys/fs/cgroup"), &config.node_name)
        .map_err(|e| e.to_string())?;
    // Dynos a previous server left running keep their cgroups and namespaces.
    let dynos_dir = config.data_dir.join("dynos");
    let (keep_cgroups, keep_ips) = slipway_runtime::container::surviving(&dynos_dir);
    if keep_cgroups.is_empty() {
        Stack::prune_old(&config.data_dir.join("stacks/slipway-host"));
    }
    let _ = cgroups.cleanup_stale_except(&keep_cgroups);
    // Joining a cgroup otherwise waits for an RCU grace period: up to 15 ms per dyno start.
    let favored = match cgroups.favor_dynmods() {
        Ok(on) => on,
        Err(error) => {
            warn!(%error, "Could not turn on favordynmods for cgroup2; dyno starts may be slower.");
            false
        }
    };
    let cgroups = Arc::new(cgroups);
    let c = cgroups.controllers();
    let mut parts = vec![format!(
        "cgroup {:?} ({})",
        cgroups.mode(),
        [
            ("memory", c.memory),
            ("pids", c.pids),
            ("cpu", c.cpu),
            ("kill", c.kill)
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
    )];
    if favored {
        parts.push("cgroup2 favordynmods".into());
    }
    if !c.memory || !c.pids {
        return Err(
            "the memory and pids cgroup controllers are needed to enforce dyno sizes".into(),
        );
    }
    let network = match config.network {
        Choice::Off => {
            parts.push("host network (--network host)".into());
            None
        }
        choice => {
            let setup = async {
                slipway_runtime::net::self_check().await?;
                let subnet = config
                    .dyno_subnet
                    .parse()
                    .map_err(|e: slipway_runtime::net::NetError| e.to_string())?;
                let cfg = NetConfig {
                    keep: keep_ips.clone(),
                    bridge: format!("{}0", config.node_name),
                    subnet,
                    name_prefix: config.node_name.clone(),
                    host_ports: Some(config.addon_ports),
                    ..NetConfig::default()
                };
                Network::setup(cfg).await.map_err(|e| e.to_string())
            };
            match (setup.await, choice) {
                (Ok(net), _) => {
                    parts.push(format!(
                        "bridge {}0 {} with NAT",
                        config.node_name,
                        net.subnet()
                    ));
                    Some(net)
                }
                (Err(reason), Choice::On) => return Err(format!("bridge networking: {reason}")),
                // On the host's network one app's dynos could reach another's ports: that
                // takes the operator's word (--network host), not a silent fallback.
                (Err(reason), _) => {
                    return Err(format!(
                        "bridge networking: {reason}; fix that, or pass --network host to let \
                         dynos share the host's network (and reach each other's ports)"
                    ))
                }
            }
        }
    };
    // Only the state of surviving dynos is kept from an earlier run.
    for entry in std::fs::read_dir(&dynos_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name() != "state" && entry.file_name() != "scratch" {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    std::fs::create_dir_all(dynos_dir.join("state")).map_err(|e| e.to_string())?;
    let exe = launcher_exe()?;
    let build_sandbox = BuildSandbox {
        exe: exe.clone(),
        stack: stack.clone(),
        uid: DYNO_UID,
        gid: DYNO_GID,
        stacks_dir: config.data_dir.join("stacks"),
        network: network.clone(),
        cgroups: Some(cgroups.clone()),
    };
    let runtime = ContainerRuntime::new(ContainerConfig {
        exe,
        stack,
        dynos_dir: dynos_dir.clone(),
        stacks_dir: config.data_dir.join("stacks"),
        cgroups: Some(cgroups.clone()),
        network: network.clone(),
    });
    // The proof: a dyno that runs `true` on an empty slug.
    let probe_slug = dynos_dir.join("probe-slug");
    std::fs::create_dir_all(&probe_slug).map_err(|e| e.to_string())?;
    runtime
        .prepare_slug(&probe_slug)
        .await
        .map_err(|e| e.to_string())?;
    let output = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink_out = output.clone();
    let spec = DynoSpec {
        id: format!("probe{}", std::process::id()),
        name: "probe.1".into(),
        size: "basic".into(),
        stack: String::new(),
        command: "test \"$(id -u)\" != 0".into(),
        slug_dir: probe_slug.clone(),
        env: Default::default(),
        stdio: slipway_runtime::DynoStdio::Logs,
    };
    let probe = async {
        let mut d = runtime
            .start(
                spec,
                Arc::new(move |l: &str| {
                    sink_out
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(l.to_string())
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok::<i32, String>(d.wait().await)
    };
    let code = tokio::time::timeout(std::time::Duration::from_secs(20), probe)
        .await
        .map_err(|_| "a test dyno did not finish within 20 s".to_string())??;
    let _ = std::fs::remove_dir_all(&probe_slug);
    if code != 0 {
        let out = output.lock().unwrap_or_else(|e| e.into_inner()).join(" / ");
        if let Some(net) = &network {
            let _ = net.teardown().await;
        }
        return Err(format!("a test dyno failed (status {code}): {out}"));
    }
    parts.push("overlayfs, seccomp, unprivileged dyno user".into());
    Ok(Runtime {
        runtime: Arc::new(runtime),
        network,
        description: format!("containers on the slipway-host stack: {}", parts.join("; ")),
        sizes_unenforceable: None,
        build_sandbox: Some(build_sandbox),
        cgroups: Some(cgroups),
    })
}

async fn choose_runtime(config: &Config) -> anyhow::Result<Runtime> {
    let host = |why: String| Runtime {
        runtime: Arc::new(HostRuntime),
        network: None,
        description: format!("host processes, because {why}"),
        sizes_unenforceable: Some(format!("dynos run as plain processes because {why}")),
        cgroups: None,
        build_sandbox: None,
    };
    match config.runtime {
        Choice::Off => Ok(host("--runtime host was given".into())),
        Choice::On => container_runtime(config)
            .await
            .map_err(|reason| anyhow::anyhow!("cannot run container dynos: {reason}; use --runtime host to run them as plain processes")),
        Choice::Auto => match container_runtime(config).await {
            Ok(rt) => Ok(rt),
            // As root, plain processes would run every app's code as root, with nothing between
            // apps: that takes the operator's word (--runtime host), not a silent fallback.
            Err(reason) if nix::unistd::geteuid().is_root() => Err(anyhow::anyhow!(
                "cannot run container dynos: {reason}; fix that, or pass --runtime host to run \
                 dynos as plain processes with no isolation between apps"
            )),
            Err(reason) => {
                warn!("Dynos run as plain processes of this user, not isolated from each other: {reason}");
                Ok(host(reason))
            }
        },
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let data = &config.data_dir;
    for sub in ["", "repos", "slugs", "build", "unpacked"] {
        std::fs::create_dir_all(data.join(sub))
            .with_context(|| format!("cannot create {}", data.join(sub).display()))?;
    }
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
    let store = Store::open(&data.join("state.db"))
        .await
        .context("cannot open the state database")?;
    ensure_owner(&store, &config).await?;

    let api_listener = bind(config.api_listen, "API", "--api-listen").await?;
    let api_tls_listener = bind(config.api_tls_listen, "API (TLS)", "--api-tls-listen").await?;
    let router_listener = bind(config.router_listen, "router", "--router-listen").await?;
    let router_tls_listener = bind(
        config.router_tls_listen,
        "HTTPS router",
        "--router-tls-listen",
    )
    .await?;
    let rendezvous_listener = bind(
        config.rendezvous_listen,
        "rendezvous endpoint",
        "--rendezvous-listen",
    )
    .await?;
    let rendezvous_addr = loopback(rendezvous_listener.local_addr()?);
    let authority = Arc::new(
        slipway_tls::Authority::load_or_create(&data.join("tls"))
            .context("cannot set up the server's certificate authority")?,
    );
    let tls = authority
        .server_config(&tls_names(&config), &[])
        .context("cannot make the server's TLS certificate")?;
    let api_addr = loopback(api_listener.local_addr()?);
    let api_tls_addr = loopback(api_tls_listener.local_addr()?);
    let api_tls = authority
        .server_config(&tls_names(&config), &[b"http/1.1"])
        .context("cannot make the API's TLS certificate")?;
    let router_addr = router_listener.local_addr()?;
    let router_tls_addr = router_tls_listener.local_addr()?;
    slipway_types::files::write_atomic(
        &data.join("api-url"),
        format!("http://{api_addr}\n").as_bytes(),
        0o644,
    )?;

    let logs = LogRouter::new();
    logs.enable_history(
        slipway_logs::history::History::open(&data.join("logs"))
            .context("cannot open the log history")?,
    );
    // Dynos are reached through the router, never by a drain going around it.
    let dyno_net = config
        .dyno_subnet
        .split_once('/')
        .and_then(|(a, len)| Some((a.parse().ok()?, len.parse().ok()?)));
    let drains = slipway_drains::Drains::new(config.drain_ca_file.as_deref())
        .context("cannot set up log drains")?
        .with_unreachable(dyno_net.as_slice());
    for d in store.all_log_drains().await? {
        if let Err(error) = drains.add(&d.app_id, &d.id, &d.url, &d.token) {
            tracing::warn!(drain = %d.token, %error, "Cannot start log drain.");
        }
    }
    logs.add_sink(Arc::new(drains.clone()));
    let routes = RouteTable::new();
    {
        // HTTPS for <app>.<base-domain> (and the server's other names) unless an app's own
        // certificate covers the name asked for.
        let (chain, key) = authority
            .issue(&tls_names(&config))
            .context("cannot make the router's TLS certificate")?;
        routes.set_default_certificate(
            slipway_router::certified(chain, &key)
                .context("cannot load the router's TLS certificate")?,
        );
        let authority = authority.clone();
        routes.set_certificate_issuer(Arc::new(move |name: &str| {
            let (chain, key) = authority.issue(&[name.to_string()]).ok()?;
            slipway_router::certified(chain, &key).ok()
        }));
    }
    let slugs = SlugStore::local(data.join("slugs"))?;
    let runtime = choose_runtime(&config).await?;
    info!("Dynos run as {}.", runtime.description);
    let mut builder = Builder::new(data.join("build"), slugs.clone())
        .await?
        .with_local_buildpacks(&config.local_buildpacks);
    match &runtime.build_sandbox {
        Some(sandbox) => {
            builder = builder.with_sandbox(sandbox.clone());
            info!(
                "Builds run in build dynos: containers on the {} stack as uid {}, {}, {}.",
                sandbox.stack.name,
                sandbox.uid,
                if sandbox.network.is_some() {
                    "each in its own network namespace"
                } else {
                    "on the host network"
                },
                if sandbox.cgroups.is_some() {
                    "each in a cgroup (5 GB, 16384 pids)"
                } else {
                    "without limits"
                },
            );
        }
        None => info!("Builds run as host processes with the server's user, as dynos do."),
    }
    let builder = Arc::new(builder);
    let manager = Manager::new(
        store.clone(),
        logs.clone(),
        slugs,
        runtime.runtime.clone(),
        Arc::new(routes.clone()),
        ManagerConfig {
            slug_root: data.join("unpacked"),
            boot_timeout: config.boot_timeout,
            stop_timeout: config.stop_timeout,
            release_timeout: std::time::Duration::from_secs(3600),
            state_dir: runtime
                .cgroups
                .is_some()
                .then(|| data.join("dynos").join("state")),
        },
    );
    let state = AppState::new(
        store.clone(),
        logs.clone(),
        drains,
        manager.clone(),
        builder,
        routes.clone(),
        ApiConfig {
            base_domain: config.base_domain.clone(),
            dns_target_domain: config.dns_target_domain.clone(),
            router_port: router_addr.port(),
            repos_dir: data.join("repos"),
            internal_url: format!("http://{api_addr}"),
            slipway_exe: std::env::current_exe()
                .context("cannot find the slipway binary's path")?,
            stack: STACK.into(),
            sizes_unenforceable: runtime.sizes_unenforceable.clone(),
            stacks_dir: data.join("stacks"),
        },
    );
    let rendezvous =
        slipway_api::rendezvous::Rendezvous::new(manager.clone(), rendezvous_addr.port());
    let state = state.with_rendezvous(rendezvous.clone());
    let addons = addons_setup(&config, api_addr, &runtime, &store, &logs)?;
    let state = state.with_addons(addons.clone());
    state.start_backup_scheduler();
    let rendezvous_task =
        tokio::spawn(rendezvous.serve(rendezvous_listener, slipway_tls::TlsAcceptor::from(tls)));
    for app in store.apps().await? {
        logs.restore_recent(&app.id);
        state.routes_register(&app).await;
        if let Err(error) = state.apply_log_retention(&app).await {
            warn!(app = %app.name, error = %error.message, "Could not read the app's log retention.");
        }
    }
    // Add-on servers first: dynos starting now connect to them.
    addons.start_all().await;
    if let Err(error) = state.repair_attachment_config().await {
        warn!(error = %error.message, "Could not bring the apps' add-on config up to date.");
    }
    // Dynos the previous server left running carry on under this one.
    let adopted = manager.adopt_all().await;
    if let Some(net) = &runtime.network {
        net.release_unclaimed();
    }
    if adopted > 0 {
        info!("Took over {adopted} running dynos from the previous run.");
    }
    {
        let manager = manager.clone();
        tokio::spawn(async move {
            if let Err(error) = manager.reconcile_all().await {
                warn!(%error, "Could not start the apps' dynos.");
            }
        });
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = slipway_api::router(state);
    tokio::spawn(serve_api_tls(
        api_tls_listener,
        tokio_rustls::TlsAcceptor::from(api_tls),
        app.clone(),
        stop_rx.clone(),
    ));
    let api = axum::serve(
        api_listener,
        app.into_make_service_with_connect_info::<slipway_api::ApiConn>(),
    )
    .with_graceful_shutdown(wait_stop(stop_rx.clone()));
    let router_config = RouterConfig {
        base_domain: config.base_domain.clone(),
    };
    // The threads end with the accept loops when `stop_tx` fires.
    let _router_threads = spawn_router(
        config.router_threads,
        router_listener.into_std()?,
        router_tls_listener.into_std()?,
        routes,
        logs,
        router_config,
        stop_rx.clone(),
    )?;
    let api_task = tokio::spawn(async move { api.await });
    info!(
        api = %format!("http://{api_addr}"),
        api_tls = %format!("https://{api_tls_addr}"),
        router = %format!("http://{router_addr}"),
        router_tls = %format!("https://{router_tls_addr}"),
        rendezvous = %format!("rendezvous://{rendezvous_addr}"),
        ca_file = %authority.ca_file().display(),
        data_dir = %data.display(),
        runtime = manager.runtime_name(),
        "Slipway ready: API on http://{api_addr}, apps at http://<app>.{}:{}",
        config.base_domain,
        router_addr.port()
    );
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if config.keep_dynos_on_exit && runtime.cgroups.is_some() {
        info!("Shutting down; dynos keep running and the next start takes them over (--on-exit stop stops them).");
        addons.shutdown(false).await;
        rendezvous_task.abort();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api_task).await;
        info!("Slipway stopped.");
        return Ok(());
    }
    info!("Shutting down: stopping dynos.");
    // Dynos get their grace period; a second signal, or a stop that takes far longer, ends the
    // server anyway (the dynos die with it through PDEATHSIG).
    let deadline = config.stop_timeout + std::time::Duration::from_secs(15);
    tokio::select! {
        _ = manager.shutdown() => {}
        _ = shutdown_signal() => warn!("Second signal: stopping now."),
        _ = tokio::time::sleep(deadline) => warn!("Dynos did not stop within {deadline:?}; stopping now."),
    }
    // Before the network goes: add-on servers listen on its gateway address.
    addons.shutdown(true).await;
    if let Some(net) = &runtime.network {
        if let Err(error) = net.teardown().await {
            warn!(%error, "Could not remove the dyno network.");
        }
    }
    if let Some(cg) = &runtime.cgroups {
        let _ = cg.cleanup_stale();
        let _ = cg.remove_base();
    }
    rendezvous_task.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api_task).await;
    info!("Slipway stopped.");
    Ok(())
}
