//! `slipway bench:router-proxy --listen ADDR --backend ADDR`: Slipway's router alone, in front of
//! one backend, for `bench/router`. Every host goes to one app whose single web dyno is the
//! backend; request IDs and the router's log line are on, as in `slipway server`.

use std::net::SocketAddr;
use std::process::ExitCode;

use slipway_logs::LogRouter;
use slipway_router::{AppSettings, Backend, RouteSink, RouteTable, RouterConfig};

fn flag(args: &[std::ffi::OsString], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.to_str())
        .map(str::to_string)
}

pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let (Some(listen), Some(backend)) = (flag(&args, "--listen"), flag(&args, "--backend")) else {
        eprintln!(" ▸    usage: slipway bench:router-proxy --listen ADDR --backend ADDR");
        return ExitCode::FAILURE;
    };
    let (Ok(listen), Ok(backend)) = (listen.parse::<SocketAddr>(), backend.parse::<SocketAddr>())
    else {
        eprintln!(" ▸    --listen and --backend take IP:PORT");
        return ExitCode::FAILURE;
    };
    let rt = match crate::server::router_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(" ▸    {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let table = RouteTable::new();
        table.set_backends(
            "bench",
            "bench",
            vec![Backend {
                dyno: "web.1".into(),
                addr: backend,
            }],
        );
        table.configure(
            "bench",
            "bench",
            AppSettings {
                domains: vec![listen.ip().to_string(), "localhost".into()],
                ..Default::default()
            },
        );
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(" ▸    cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("ready: router on http://{listen} → {backend}");
        let logs = LogRouter::new();
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        slipway_router::serve(
            listener,
            table,
            logs,
            RouterConfig {
                base_domain: "localhost".into(),
            },
            stop,
        )
        .await;
        ExitCode::SUCCESS
    })
}
