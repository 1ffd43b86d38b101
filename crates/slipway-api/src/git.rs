//! `git push` over smart HTTP, served by the real `git http-backend`, and the build it triggers.
//!
//! Each app has a bare repository whose `pre-receive` hook runs `slipway hook:pre-receive`. The
//! hook sends `git archive` of the pushed commit to `/internal/builds/<token>` and copies the
//! streamed build output to its stdout, which git relays to the pusher as `remote:` lines; the
//! last line says whether the build succeeded, and a failure makes the hook (and the push) fail.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::process::Stdio;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, TryStreamExt};
use slipway_build::BuildRequest;
use slipway_store::{NewRelease, ReleaseConfig, ReleaseRow, ReleaseSlug};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::io::{ReaderStream, StreamReader};
use tracing::warn;

use crate::error::{ApiError, ApiResult};
use crate::{AppState, PendingPush};

/// Marks the last line of a build stream; the hook strips it.
pub const STATUS_MARKER: &str = "\u{1e}slipway-build-status: ";

fn repo_path(s: &AppState, app_name: &str) -> std::path::PathBuf {
    s.config.repos_dir.join(format!("{app_name}.git"))
}

/// The pre-receive hook that hands pushes to the server.
pub fn install_hook_script(exe: &FsPath) -> String {
    let exe = exe.to_string_lossy().replace('\'', "'\\''");
    format!("#!/bin/sh\n# Installed by Slipway: builds pushes to main or master.\nexec '{exe}' hook:pre-receive\n")
}

async fn write_hook(s: &AppState, repo: &FsPath) -> ApiResult<()> {
    let hook = repo.join("hooks/pre-receive");
    let script = install_hook_script(&s.config.slipway_exe);
    if tokio::fs::read_to_string(&hook).await.ok().as_deref() != Some(script.as_str()) {
        tokio::fs::create_dir_all(repo.join("hooks"))
            .await
            .map_err(io_err)?;
        // Replaced whole: a push running the old hook meanwhile keeps it, and none runs half
        // of the new one.
        tokio::task::spawn_blocking(move || {
            slipway_types::files::write_atomic(&hook, script.as_bytes(), 0o755)
        })
        .await
        .map_err(|e| io_err(std::io::Error::other(e)))?
        .map_err(io_err)?;
    }
    Ok(())
}

fn io_err(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("Internal server error: {e}"))
}

/// Creates an app's bare repository.
pub async fn init_repo(s: &AppState, app_name: &str) -> ApiResult<()> {
    let repo = repo_path(s, app_name);
    let status = tokio::process::Command::new("git")
        .args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(&repo)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| {
            ApiError::internal(format!(
                "Could not run git: {e}. Is git installed on the server?"
            ))
        })?;
    if !status.success() {
        return Err(ApiError::internal("git init failed; check the server log."));
    }
    for (k, v) in [
        ("http.receivepack", "true"),
        ("receive.denyDeletes", "true"),
    ] {
        let _ = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["config", k, v])
            .status()
            .await;
    }
    write_hook(s, &repo).await
}

/// Deletes an app's repository.
pub async fn remove_repo(s: &AppState, app_name: &str) {
    let repo = repo_path(s, app_name);
    if let Err(error) = tokio::fs::remove_dir_all(&repo).await {
        warn!(%error, repo = %repo.display(), "Could not remove repository.");
    }
}

/// `GET /<app>.git/info/refs`, `POST /<app>.git/git-receive-pack` and `git-upload-pack`.
pub async fn git_http(
    State(s): State<AppState>,
    Path(repo): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Some(app_name) = repo.strip_suffix(".git") else {
        return Err(ApiError::not_found(
            "path",
            "Not found: git repositories are at /<app>.git.",
        ));
    };
    let who = crate::auth::account_of(&s, &headers).await?;
    let app = s.load_app(&who, app_name).await?;
    let repo_dir = repo_path(&s, &app.name);
    if !repo_dir.is_dir() {
        init_repo(&s, &app.name).await?;
    }
    write_hook(&s, &repo_dir).await?;

    let path_info = uri.path().to_string();
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("GIT_PROJECT_ROOT", &s.config.repos_dir)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path_info)
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("REMOTE_USER", &who.email)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_HTTP_MAX_REQUEST_BUFFER", "100M")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(cl) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("CONTENT_LENGTH", cl);
    }
    if let Some(ce) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(gp) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", gp);
    }
    let push_token = if path_info.ends_with("/git-receive-pack") {
        let token = hex::encode(rand::random::<[u8; 24]>());
        s.pushes.lock().unwrap_or_else(|e| e.into_inner()).insert(
            token.clone(),
            PendingPush {
                app_id: app.id.clone(),
                account_id: who.id.clone(),
            },
        );
        cmd.env(
            "SLIPWAY_HOOK_URL",
            format!("{}/internal/builds/{token}", s.config.internal_url),
        );
        Some(token)
    } else {
        None
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("Could not run git http-backend: {e}")))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ApiError::internal("git http-backend has no pipes"));
    };
    tokio::spawn(async move {
        let mut body = body.into_data_stream();
        while let Some(Ok(chunk)) = body.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            warn!(line = %line, "git http-backend");
        }
    });
    let pushes = s.pushes.clone();
    tokio::spawn(async move {
        let _ = child.wait().await;
        if let Some(token) = push_token {
            pushes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&token);
        }
    });

    // CGI: headers, a blank line, then the body.
    let mut reader = BufReader::new(stdout);
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.map_err(io_err)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if n == 0 || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .split_whitespace()
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(StatusCode::OK);
            } else {
                builder = builder.header(k.trim(), v);
            }
        }
    }
    let body = Body::from_stream(ReaderStream::new(reader));
    builder
        .status(status)
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `POST /internal/builds/<token>?commit=<sha>&ref=<ref>`: the hook's pushed tree as a tar body;
/// answers with the build output as it happens, ending with the status marker.
pub async fn internal_build(
    State(s): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> ApiResult<Response> {
    let push = s
        .pushes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&token)
        .ok_or_else(ApiError::unauthorized)?;
    let commit = q.get("commit").cloned().unwrap_or_default();
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("commit must be a 40-character sha"));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    tokio::spawn(async move {
        let ok = run_build(&s, &push, &commit, reader, tx.clone()).await;
        let _ = tx.send(format!(
            "{STATUS_MARKER}{}",
            if ok { "ok" } else { "failed" }
        ));
    });
    let stream = held_back(rx, OUTPUT_HELD_MAX, 16)
        .map(|line| Ok::<_, std::io::Error>(Bytes::from(format!("{line}\n"))));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// How much build output may wait for a pusher that reads slowly (or not at all, as a
/// suspended `git push`): past it, lines are dropped, and counted in a line of their own.
const OUTPUT_HELD_MAX: usize = 4 * 1024 * 1024;

/// The build's lines as the pusher takes them, holding at most `max_bytes` (plus `lines`
/// lines in flight) for it; the ones past that are dropped and reported once the pusher
/// catches up. The status marker always gets through, last.
fn held_back(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    max_bytes: usize,
    lines: usize,
) -> impl futures_util::Stream<Item = String> {
    let (out, mut taken) = tokio::sync::mpsc::channel::<String>(lines.max(1));
    tokio::spawn(async move {
        let mut queue = std::collections::VecDeque::<String>::new();
        let mut held = 0usize;
        let mut dropped = 0u64;
        let notice = |n: u64| {
            format!(
                " !     {n} line{} of build output dropped: the push was not reading them.",
                if n == 1 { "" } else { "s" }
            )
        };
        loop {
            tokio::select! {
                line = rx.recv() => {
                    let Some(line) = line else { break };
                    let marker = line.starts_with(STATUS_MARKER);
                    if marker || held + line.len() <= max_bytes {
                        if dropped > 0 {
                            queue.push_back(notice(dropped));
                            dropped = 0;
                        }
                        held += line.len();
                        queue.push_back(line);
                    } else {
                        dropped += 1;
                    }
                }
                permit = out.reserve(), if !queue.is_empty() => {
                    let Ok(permit) = permit else { return };
                    if let Some(line) = queue.pop_front() {
                        held = held.saturating_sub(line.len());
                        permit.send(line);
                    }
                }
            }
        }
        if dropped > 0 {
            queue.push_back(notice(dropped));
        }
        for line in queue {
            if out.send(line).await.is_err() {
                return;
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| taken.poll_recv(cx))
}

/// Builds, stores the slug and makes the release. Returns whether it all worked.
async fn run_build(
    s: &AppState,
    push: &PendingPush,
    commit: &str,
    mut source: impl tokio::io::AsyncRead + Unpin + Send,
    out: tokio::sync::mpsc::UnboundedSender<String>,
) -> bool {
    let say = |line: &str| {
        let _ = out.send(line.to_string());
    };
    let (app, who) = match (
        s.store.app(&push.app_id).await,
        s.store.account(&push.account_id).await,
    ) {
        (Ok(Some(app)), Ok(Some(who))) => (app, who),
        _ => {
            say(" !     This app no longer exists.");
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut (&mut source).take(u64::MAX), &mut sink).await;
            return false;
        }
    };
    let config = match s.store.current_release(&app.id).await {
        Ok(r) => r.map(|r| r.config).unwrap_or_default(),
        Err(error) => {
            say(&format!(" !     Push failed: {error}"));
            return false;
        }
    };
    s.api_log(&app.id, &format!("Build started by {}", who.email));
    let req = BuildRequest {
        app_id: app.id.clone(),
        app_name: app.name.clone(),
        commit: commit.to_string(),
        buildpacks: app.buildpacks.clone(),
        config: config.clone(),
        stack: app.stack.clone(),
    };
    say(&format!("-----> Building on the {} stack", app.stack));
    let built = match s.builder.build(req, source, out.clone()).await {
        Ok(b) => b,
        Err(error) => {
            say(&format!(" !     {error}"));
            say(" !     Push rejected, the build failed.");
            s.api_log(&app.id, &format!("Build failed: {error}"));
            return false;
        }
    };
    if !built.process_types.contains_key("web") {
        say(" !     No web process type: this app will not answer HTTP requests. Add `web: <command>` to the Procfile.");
    }
    let result: ApiResult<ReleaseRow> = async {
        let slug = s
            .store
            .create_slug(
                &app.id,
                slipway_store::NewSlug {
                    sha256: &built.sha256,
                    size: built.size,
                    commit: Some(commit),
                    buildpack_description: Some(&built.buildpack_description),
                    process_types: &built.process_types,
                    stack: &app.stack,
                },
            )
            .await?;
        s.store
            .ensure_formation(&app.id, built.process_types.keys().map(String::as_str))
            .await?;
        let short = &commit[..7];
        s.api_log(&app.id, &format!("Deploy {short} by {}", who.email));
        s.create_release(
            &app,
            NewRelease {
                slug: ReleaseSlug::Exactly(Some(slug.id)),
                config: ReleaseConfig::Inherit,
                description: format!("Deploy {short}"),
                user_email: who.email.clone(),
                user_id: who.id.clone(),
            },
        )
        .await
    }
    .await;
    match result {
        Ok(release) => {
            say("-----> Launching...");
            if release.status == "pending" {
                say("-----> Running release command...");
            }
            let sink_out = out.clone();
            let sink: slipway_runtime::OutputSink = Arc::new(move |line: &str| {
                let _ = sink_out.send(format!("       {line}"));
            });
            if !s.finish_release(&app.id, &release.id, Some(sink)).await {
                say(" !     Release command failed: this release was not deployed and the previous one keeps running.");
                say(&format!(
                    " !     See its output with: slipway logs -a {} --dyno release",
                    app.name
                ));
                return false;
            }
            say(&format!("       Released v{}", release.version));
            say(&format!(
                "       {} deployed to Slipway",
                s.web_url(&app.name)
            ));
            true
        }
        Err(e) => {
            say(&format!(" !     Push failed: {}", e.message));
            false
        }
    }
}

#[cfg(test)]
mod output_tests {
    use super::*;

    /// Nobody reads while a build prints 1,000 lines: only about `max_bytes` of them are
    /// kept, the rest are counted in one line, and the status marker still comes last.
    #[tokio::test]
    async fn output_a_pusher_does_not_read_is_held_back_only_so_far() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = held_back(rx, 10_000, 4);
        for i in 0..1000 {
            tx.send(format!("{i:04} {}", "x".repeat(95))).unwrap();
            // The relay takes each line as it comes; the stream is not read until the end.
            tokio::task::yield_now().await;
        }
        tx.send(format!("{STATUS_MARKER}ok")).unwrap();
        drop(tx);
        let got: Vec<String> = stream.collect().await;
        assert!(got.len() < 120, "{} lines held", got.len());
        assert!(got[0].starts_with("0000 "), "{:?}", got[0]);
        let notice = &got[got.len() - 2];
        assert!(notice.contains("lines of build output dropped"), "{notice}");
        let n: usize = notice.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(
            n + got.len() - 2,
            1000,
            "every line is either sent or counted"
        );
        assert_eq!(got.last().unwrap(), &format!("{STATUS_MARKER}ok"));
    }
}
