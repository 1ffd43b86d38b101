//! `slipway bench:dyno-start`: how long a container dyno takes from "start" to its app's first
//! instruction, against a plain fork/exec of the same command (used by `bench/dyno-start`).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use slipway_runtime::DynoSpec;

use crate::config::{Config, ServerArgs};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let runs: usize = args
        .get(2)
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(" ▸    {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(runs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(" ▸    {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(runs: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("slipway-bench-{}", std::process::id()));
    let args = ServerArgs::parse_from([
        "server",
        "--data-dir",
        &dir.to_string_lossy(),
        "--runtime",
        "container",
        "--node-name",
        "bench",
        "--dyno-subnet",
        "10.216.0.0/24",
    ]);
    let config = Config::resolve(args)?;
    std::fs::create_dir_all(&config.data_dir)?;
    let rt = crate::server::container_runtime(&config)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!("runtime: {}", rt.description);
    let slug = config.data_dir.join("bench-slug");
    std::fs::create_dir_all(&slug)?;
    rt.runtime.prepare_slug(&slug).await?;
    let command = "exec date +%s%N";
    let mut container = Vec::new();
    let mut plain = Vec::new();
    for i in 0..runs {
        // Container dyno.
        let first = Arc::new(Mutex::new(None::<u128>));
        let f = first.clone();
        let spec = DynoSpec {
            id: format!("bench{i}x{}", std::process::id()),
            name: "bench.1".into(),
            size: "basic".into(),
            stack: String::new(),
            command: command.into(),
            slug_dir: slug.clone(),
            env: Default::default(),
            stdio: slipway_runtime::DynoStdio::Logs,
        };
        let t0 = now_ns();
        let mut d = rt
            .runtime
            .start(
                spec,
                Arc::new(move |l: &str| {
                    let mut g = f.lock().unwrap_or_else(|e| e.into_inner());
                    if g.is_none() {
                        *g = l.trim().parse().ok();
                    }
                }),
            )
            .await?;
        let code = tokio::time::timeout(Duration::from_secs(10), d.wait()).await?;
        anyhow::ensure!(code == 0, "bench dyno exited with {code}");
        // The output task may trail the exit by a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let t1 = loop {
            if let Some(t) = *first.lock().unwrap_or_else(|e| e.into_inner()) {
                break t;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no output from the bench dyno"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        container.push((t1.saturating_sub(t0)) as f64 / 1e6);

        // The same command as a plain fork/exec.
        let t0 = now_ns();
        let out = tokio::process::Command::new("/bin/bash")
            .arg("-c")
            .arg(slipway_runtime::launch_script(command))
            .env("HOME", &slug)
            .current_dir(&slug)
            .output()
            .await?;
        let t1: u128 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        plain.push((t1.saturating_sub(t0)) as f64 / 1e6);
    }
    if let Some(net) = &rt.network {
        net.teardown().await?;
    }
    if let Some(cg) = &rt.cgroups {
        let _ = cg.cleanup_stale();
        let _ = cg.remove_base();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (c, p) = (median(container), median(plain));
    println!("runs: {runs}");
    println!("plain fork/exec → first instruction: median {p:6.2} ms");
    println!("container dyno  → first instruction: median {c:6.2} ms  ({:.1}x plain; targets: <= 10 ms and <= 5x)", c / p);
    Ok(())
}
