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
use slipway_build::{Builder, SlugStore};
use slipway_logs::LogRouter;
use slipway_manager::{Manager, ManagerConfig};
use slipway_router::{RouteTable, RouterConfig};
use slipway_runtime::HostRuntime;
use slipway_store::Store;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::config::{Config, ServerArgs};

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

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
    if !key_file.exists() {
        let key = generate_key();
        store
            .add_api_key(&owner.id, &hash_key(&key), "owner key (local CLI)")
            .await?;
        write_private(&key_file, &format!("{key}\n"))?;
        info!(file = %key_file.display(), "Wrote the owner's API key for the local CLI.");
    }
    Ok(())
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
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
    let router_listener = bind(config.router_listen, "router", "--router-listen").await?;
    let api_addr = loopback(api_listener.local_addr()?);
    let router_addr = router_listener.local_addr()?;
    std::fs::write(data.join("api-url"), format!("http://{api_addr}\n"))?;

    let logs = LogRouter::new();
    let routes = RouteTable::new();
    let slugs = SlugStore::local(data.join("slugs"))?;
    let builder = Arc::new(Builder::new(data.join("build"), slugs.clone()).await?);
    let manager = Manager::new(
        store.clone(),
        logs.clone(),
        slugs,
        Arc::new(HostRuntime),
        Arc::new(routes.clone()),
        ManagerConfig {
            slug_root: data.join("unpacked"),
            boot_timeout: config.boot_timeout,
            stop_timeout: config.stop_timeout,
        },
    );
    let state = AppState::new(
        store.clone(),
        logs.clone(),
        manager.clone(),
        builder,
        routes.clone(),
        ApiConfig {
            base_domain: config.base_domain.clone(),
            router_port: router_addr.port(),
            repos_dir: data.join("repos"),
            internal_url: format!("http://{api_addr}"),
            slipway_exe: std::env::current_exe()
                .context("cannot find the slipway binary's path")?,
            stack: STACK.into(),
        },
    );
    for app in store.apps().await? {
        state.routes_register(&app);
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
    let api = axum::serve(api_listener, slipway_api::router(state))
        .with_graceful_shutdown(wait_stop(stop_rx.clone()));
    let router = slipway_router::serve(
        router_listener,
        routes,
        logs,
        RouterConfig {
            base_domain: config.base_domain.clone(),
        },
        wait_stop(stop_rx.clone()),
    );
    let api_task = tokio::spawn(async move { api.await });
    let router_task = tokio::spawn(router);
    info!(
        api = %format!("http://{api_addr}"),
        router = %format!("http://{router_addr}"),
        data_dir = %data.display(),
        runtime = manager.runtime_name(),
        "Slipway ready: API on http://{api_addr}, apps at http://<app>.{}:{}",
        config.base_domain,
        router_addr.port()
    );
    shutdown_signal().await;
    info!("Shutting down: stopping dynos.");
    let _ = stop_tx.send(true);
    manager.shutdown().await;
    router_task.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), api_task).await;
    info!("Slipway stopped.");
    Ok(())
}
