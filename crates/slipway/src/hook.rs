//! `slipway hook:pre-receive`: the git hook that turns a push into a build.
//!
//! git runs it with the pushed refs on stdin (`<old> <new> <ref>` per line) and relays its
//! output to the pusher as `remote:` lines. For a push to `main` or `master` it posts
//! `git archive` of the new commit to the server (the URL is in `SLIPWAY_HOOK_URL`), prints the
//! build output as it streams back, and fails when the build failed, which rejects the push.

use std::io::{BufRead, Write};
use std::process::{ExitCode, Stdio};

use futures_util::StreamExt;
use tokio_util::io::ReaderStream;

use slipway_api::STATUS_MARKER;

const ZERO: &str = "0000000000000000000000000000000000000000";

pub fn main() -> ExitCode {
    let Ok(url) = std::env::var("SLIPWAY_HOOK_URL") else {
        println!(" !     This repository can only be pushed to through the Slipway server.");
        return ExitCode::FAILURE;
    };
    let mut deploy = None;
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_, new, refname] = parts[..] else {
            continue;
        };
        if new == ZERO {
            continue;
        }
        match refname {
            "refs/heads/main" | "refs/heads/master" if deploy.is_none() => {
                deploy = Some(new.to_string())
            }
            "refs/heads/main" | "refs/heads/master" => {}
            other => println!("Pushed {other}: only main or master deploys, so nothing was built."),
        }
    }
    let Some(commit) = deploy else {
        return ExitCode::SUCCESS;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!(" !     Push failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(build(&url, &commit)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!(" !     Push failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn build(url: &str, commit: &str) -> anyhow::Result<bool> {
    let mut archive = tokio::process::Command::new("git")
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = archive
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("git archive has no stdout"))?;
    let body = reqwest::Body::wrap_stream(ReaderStream::new(stdout));
    let resp = reqwest::Client::new()
        .post(format!("{url}?commit={commit}"))
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        let text = resp.text().await.unwrap_or_default();
        println!(" !     Push rejected: {}", text.trim());
        return Ok(false);
    }
    let mut stream = resp.bytes_stream();
    let mut pending = Vec::new();
    let mut ok = false;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\n');
            if let Some(status) = line.strip_prefix(STATUS_MARKER) {
                ok = status == "ok";
            } else {
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
    }
    let _ = archive.wait().await;
    Ok(ok)
}
