//! End to end: the real binary as server and CLI, real `git push`, real HTTP through the router.

mod common;

use common::*;
use serde_json::Value;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

fn push(s: &TestServer, dir: &std::path::Path) -> (bool, String) {
    let out = s.git(dir, &["push", "slipway", "main"]);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn push_builds_releases_and_serves_through_the_router() {
    let s = TestServer::start();
    let app_dir = s.home().join("demo");
    s.repo(
        &app_dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );

    let out = s.ok(&app_dir, &["apps:create", "demo"]);
    assert!(out.contains("Creating demo... done"), "{out}");
    let remote = s.git(&app_dir, &["remote", "get-url", "slipway"]);
    assert_eq!(
        text(&remote.stdout).trim(),
        format!("{}/demo.git", s.api_url())
    );

    let (ok, output) = push(&s, &app_dir);
    assert!(ok, "push failed: {output}");
    assert!(output.contains("remote: -----> Procfile"), "{output}");
    assert!(
        output.contains("remote: -----> Discovering process types"),
        "{output}"
    );
    assert!(output.contains("remote:        Released v2"), "{output}");

    let client = s.router_client("demo");
    let body: Value = eventually(60, "the app answers through the router", || async {
        let r = client
            .get(s.app_url("demo", "/hello?x=1"))
            .header("X-Request-ID", "client-supplied-id-0123456789")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert_eq!(body["dyno"], "web.1");
    assert_eq!(body["path"], "/hello?x=1");
    let h = &body["headers"];
    assert_eq!(h["x-request-id"], "client-supplied-id-0123456789");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], s.router.port().to_string());
    let start: u128 = h["x-request-start"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        now >= start && now - start < 60_000,
        "X-Request-Start in ms: {start}"
    );
    // A request id that breaks the rule is replaced by a UUID.
    let r: Value = client
        .get(s.app_url("demo", "/"))
        .header("X-Request-ID", "short")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["headers"]["x-request-id"].as_str().unwrap().len(), 36);

    // Config change → new release → dynos restart with the new environment.
    let out = s.ok(&app_dir, &["config:set", "GREETING=hello"]);
    assert!(out.contains("v3"), "{out}");
    eventually(60, "the new config reaches the dyno", || async {
        let r: Value = client
            .get(s.app_url("demo", "/"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (r["greeting"] == "hello").then_some(())
    })
    .await;

    // Scale out: three web dynos, all up, all serving.
    let out = s.ok(&app_dir, &["ps:scale", "web=3"]);
    assert!(out.contains("web at 3"), "{out}");
    eventually(60, "three web dynos up", || async {
        let ps = s.ok(&app_dir, &["ps", "--json"]);
        let v: Value = serde_json::from_str(&ps).ok()?;
        let up = v
            .as_array()?
            .iter()
            .filter(|d| d["state"] == "up" && d["type"] == "web")
            .count();
        (up == 3).then_some(())
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let r: Value = client
            .get(s.app_url("demo", "/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.insert(r["dyno"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 3, "requests spread over dynos: {seen:?}");

    // Logs: router lines, app output, dyno manager and API events, in Heroku's format.
    let logs = s.logs("demo");
    let re_ok = logs.lines().all(|l| {
        l.len() > 33
            && l.as_bytes()[4] == b'-'
            && &l[26..32] == "+00:00"
            && (l[33..].starts_with("app[") || l[33..].starts_with("heroku["))
    });
    assert!(re_ok, "every line in Heroku's format:\n{logs}");
    assert!(
        logs.contains("heroku[router]: at=info method=GET path=\"/hello?x=1\" host=demo.localhost"),
        "{logs}"
    );
    assert!(logs.contains("status=200"), "{logs}");
    assert!(logs.contains("app[web.1]: listening on"), "{logs}");
    assert!(
        logs.contains("heroku[web.1]: Starting process with command `python3 app.py`"),
        "{logs}"
    );
    assert!(
        logs.contains("heroku[web.1]: State changed from starting to up"),
        "{logs}"
    );
    assert!(
        logs.contains("heroku[api]: Release v3 created by owner@slipway.local"),
        "{logs}"
    );
    assert!(logs.contains("heroku[api]: Deploy "), "{logs}");
    let web2 = s.ok(&app_dir, &["logs", "-d", "web.2", "-n", "1500"]);
    assert!(
        !web2.is_empty() && web2.lines().all(|l| l.contains("[web.2]")),
        "{web2}"
    );
    let heroku_only = s.ok(&app_dir, &["logs", "--source", "heroku", "-n", "1500"]);
    assert!(
        heroku_only.lines().all(|l| l[33..].starts_with("heroku[")),
        "{heroku_only}"
    );

    // Releases and rollback.
    let out = s.ok(&app_dir, &["releases"]);
    assert!(
        out.contains("Set GREETING config vars") && out.contains("Deploy "),
        "{out}"
    );
    let out = s.ok(&app_dir, &["rollback", "v2"]);
    assert!(out.contains("v4"), "{out}");
    // Dynos being replaced can still be restarted by name; unknown names cannot.
    s.ok(&app_dir, &["ps:restart", "web.2"]);
    let out = s.cli(&app_dir, &["ps:restart", "web.9"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("Couldn't find that dyno (web.9)"),
        "{}",
        text(&out.stderr)
    );
    eventually(60, "rollback restores the old config", || async {
        let r: Value = client
            .get(s.app_url("demo", "/"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (r["greeting"].is_null()).then_some(())
    })
    .await;
    let v4: Value = json(s.api_get("/apps/demo/releases/4").await).await;
    assert_eq!(v4["description"], "Rollback to v2");
    assert_eq!(v4["current"], true);

    // A new commit builds again, makes a new release, and the dynos move to the new code.
    std::fs::write(app_dir.join("VERSION"), "two\n").unwrap();
    s.commit_all(&app_dir, "version two");
    let (ok, output) = push(&s, &app_dir);
    assert!(ok, "{output}");
    assert!(output.contains("Released v5"), "{output}");
    eventually(60, "the new code serves", || async {
        let r: Value = client
            .get(s.app_url("demo", "/"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (r["version"] == "two").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_build_rejects_the_push() {
    let s = TestServer::start();
    let dir = s.home().join("nothing");
    s.repo(&dir, &[("notes.txt", "no app here\n")]);
    s.ok(&dir, &["apps:create", "nothing-app"]);
    let (ok, output) = push(&s, &dir);
    assert!(!ok, "push of an undetectable app must fail: {output}");
    assert!(
        output.contains("remote:") && output.to_lowercase().contains("buildpack"),
        "{output}"
    );
    assert!(output.contains("pre-receive hook declined"), "{output}");
    let releases: Value = json(s.api_get("/apps/nothing-app/releases").await).await;
    assert_eq!(
        releases.as_array().unwrap().len(),
        1,
        "no release from a failed build"
    );

    // A malformed Procfile is rejected too, naming the problem.
    std::fs::write(dir.join("Procfile"), "web=python3 -m http.server\n").unwrap();
    s.commit_all(&dir, "bad procfile");
    let (ok, output) = push(&s, &dir);
    assert!(!ok, "{output}");
    assert!(output.contains("Procfile"), "{output}");

    // A Procfile without web: the push works, and scaling web is refused.
    std::fs::write(dir.join("Procfile"), "worker: sleep 1000\n").unwrap();
    s.commit_all(&dir, "worker only");
    let (ok, output) = push(&s, &dir);
    assert!(ok, "{output}");
    assert!(output.contains("No web process type"), "{output}");
    let out = s.cli(&dir, &["ps:scale", "web=1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Couldn't find that process type (web)"),
        "{}",
        text(&out.stderr)
    );

    // Push to an unknown app: git says the repository is not there.
    let o = s.git(
        &dir,
        &["push", &format!("{}/no-such-app.git", s.api_url()), "main"],
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));

    // Push with a wrong key fails authentication.
    let o = std::process::Command::new("git")
        .args([
            "push",
            &format!("http://x:wrong@{}/nothing-app.git", s.api),
            "main",
        ])
        .current_dir(&dir)
        .env("HOME", s.home())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("Authentication failed") || text(&o.stderr).contains("401"),
        "{}",
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crashed_dynos_restart_and_routing_errors_are_herokus() {
    let s = TestServer::start();
    let dir = s.home().join("crashy");
    s.repo(
        &dir,
        &[
            (
                "Procfile",
                "web: python3 app.py\nworker: echo worker ran; exit 3\n",
            ),
            ("app.py", ECHO_APP),
        ],
    );
    s.ok(&dir, &["apps:create", "crashy"]);
    // Unknown host → 404; known app with no dynos → 503 H14.
    let r = s
        .router_client("ghost")
        .get(s.app_url("ghost", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .router_client("crashy")
        .get(s.app_url("crashy", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    eventually(10, "the H14 line in the log", || async {
        s.logs("crashy")
            .contains("at=error code=H14 desc=\"No web processes running\"")
            .then_some(())
    })
    .await;

    let (ok, output) = push(&s, &dir);
    assert!(ok, "{output}");
    // Scaling a type that the Procfile lacks is refused.
    let out = s.cli(&dir, &["ps:scale", "clock=1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Couldn't find that process type (clock)"),
        "{}",
        text(&out.stderr)
    );
    s.ok(&dir, &["ps:scale", "worker=1"]);
    eventually(30, "the worker crashes and is restarted", || async {
        let logs = s.logs("crashy");
        (logs
            .matches("heroku[worker.1]: Starting process with command")
            .count()
            >= 2
            && logs.contains("heroku[worker.1]: Process exited with status 3")
            && logs.contains("app[worker.1]: worker ran"))
        .then_some(())
    })
    .await;
    let ps: Value = serde_json::from_str(&s.ok(&dir, &["ps", "--json"])).unwrap();
    assert!(ps
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "worker.1"));

    // ps:restart web.1 stops it with SIGTERM and starts it again.
    eventually(60, "web.1 up", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["ps", "--json"])).ok()?;
        v.as_array()?
            .iter()
            .any(|d| d["name"] == "web.1" && d["state"] == "up")
            .then_some(())
    })
    .await;
    let out = s.ok(&dir, &["ps:restart", "web.1"]);
    assert!(out.contains("done"), "{out}");
    eventually(30, "web.1 restarted", || async {
        let logs = s.logs("crashy");
        (logs.contains("heroku[web.1]: Stopping all processes with SIGTERM")
            && logs
                .matches("heroku[web.1]: State changed from starting to up")
                .count()
                >= 2)
            .then_some(())
    })
    .await;

    // Scaling web to zero: 503 H14 again.
    s.ok(&dir, &["ps:scale", "web=0"]);
    eventually(30, "no web dynos → 503", || async {
        let r = s
            .router_client("crashy")
            .get(s.app_url("crashy", "/"))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_cli_and_destroy() {
    let s = TestServer::start();
    let dir = s.home().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    // Generated names follow Heroku's pattern.
    let v: Value =
        serde_json::from_str(&s.ok(&dir, &["apps:create", "--json", "--no-remote"])).unwrap();
    let name = v["name"].as_str().unwrap().to_string();
    assert!(
        name.split('-').count() == 3 && name.chars().next().unwrap().is_ascii_lowercase(),
        "{name}"
    );
    let out = s.ok(&dir, &["apps"]);
    assert!(out.contains(&name), "{out}");
    let info: Value =
        serde_json::from_str(&s.ok(&dir, &["apps:info", "-a", &name, "--json"])).unwrap();
    assert_eq!(info["name"], name.as_str());
    assert_eq!(
        info["web_url"],
        format!("http://{name}.localhost:{}/", s.router.port())
    );

    // Bad input: one line, non-zero.
    for (args, needle) in [
        (vec!["apps:create", "Bad_Name"], "invalid"),
        (vec!["apps:create", &name], "already taken"),
        (
            vec!["apps:info", "-a", "no-such-app"],
            "Couldn't find that app",
        ),
        (
            vec!["config:set", "1BAD=x", "-a", &name],
            "Invalid config var name",
        ),
        (vec!["apps:destroy", "-a", &name], "--confirm"),
    ] {
        let out = s.cli(&dir, &args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
    // No app given outside a repo.
    let out = s.cli(&dir, &["config"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No app specified"),
        "{}",
        text(&out.stderr)
    );

    // config:get/unset.
    s.ok(&dir, &["config:set", "A=1", "B=two", "-a", &name]);
    assert_eq!(s.ok(&dir, &["config:get", "B", "-a", &name]).trim(), "two");
    s.ok(&dir, &["config:unset", "B", "-a", &name]);
    let cfg: Value = serde_json::from_str(&s.ok(&dir, &["config", "--json", "-a", &name])).unwrap();
    assert_eq!(cfg, serde_json::json!({"A": "1"}));

    let out = s.ok(&dir, &["apps:destroy", "-a", &name, "--confirm", &name]);
    assert!(out.contains("done"), "{out}");
    let out = s.cli(&dir, &["apps:info", "-a", &name]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_tail_follows_live() {
    let s = TestServer::start();
    let dir = s.home().join("tail");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    s.ok(&dir, &["apps:create", "tailapp"]);
    let mut child = tokio::process::Command::new(BIN)
        .args(["logs", "--tail", "-a", "tailapp"])
        .env("SLIPWAY_API_URL", s.api_url())
        .env("SLIPWAY_API_KEY", &s.key)
        .env("HOME", s.home())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ok, output) = push(&s, &dir);
    assert!(ok, "{output}");
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("heroku[web.1]: State changed from starting to up") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "tail showed the dyno coming up");
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_off_dynos_run_detached_and_stop() {
    let s = TestServer::start();
    let dir = s.home().join("oneoff");
    s.repo(
        &dir,
        &[("Procfile", "web: python3 app.py\n"), ("app.py", ECHO_APP)],
    );
    s.ok(&dir, &["apps:create", "oneoff"]);
    // Nothing to run before a deploy.
    let out = s.cli(&dir, &["run:detached", "true"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("deploy it with git push first"),
        "{}",
        text(&out.stderr)
    );
    let (ok, output) = push(&s, &dir);
    assert!(ok, "{output}");
    s.ok(&dir, &["config:set", "GREETING=hi"]);

    let out = s.ok(
        &dir,
        &[
            "run:detached",
            "-e",
            "EXTRA=there",
            "--",
            "echo",
            "$GREETING $EXTRA from $DYNO; exit 4",
        ],
    );
    let name = out
        .split("done, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(name.starts_with("run."), "{out}");
    eventually(30, "the one-off's output and exit in the logs", || async {
        let logs = s.ok(&dir, &["logs", "-d", &name, "-n", "100"]);
        (logs.contains(&format!("app[{name}]: hi there from {name}"))
            && logs.contains(&format!("heroku[{name}]: Process exited with status 4")))
        .then_some(())
    })
    .await;
    eventually(30, "an ended one-off leaves ps", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["ps", "--json"])).ok()?;
        (!v.as_array()?.iter().any(|d| d["name"] == name.as_str())).then_some(())
    })
    .await;
    // It ran once: one-offs are never restarted.
    let logs = s.logs("oneoff");
    assert_eq!(
        logs.matches(&format!("heroku[{name}]: Starting process"))
            .count(),
        1,
        "{logs}"
    );

    // A long one-off shows in ps until ps:stop ends it.
    let out = s.ok(&dir, &["run:detached", "sleep 300"]);
    let name = out
        .split("done, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    eventually(30, "the one-off is up", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["ps", "--json"])).ok()?;
        v.as_array()?
            .iter()
            .any(|d| d["name"] == name.as_str() && d["state"] == "up" && d["type"] == "run")
            .then_some(())
    })
    .await;
    let out = s.ok(&dir, &["ps:stop", &name]);
    assert!(out.contains("done"), "{out}");
    eventually(30, "the one-off is gone", || async {
        let v: Value = serde_json::from_str(&s.ok(&dir, &["ps", "--json"])).ok()?;
        (!v.as_array()?.iter().any(|d| d["name"] == name.as_str())).then_some(())
    })
    .await;
}

/// While an app is being destroyed (here: its web dyno ignores SIGTERM, so stopping it takes
/// the grace period), its name is not free yet: its repository and route still go by it, and a
/// new app of that name would lose them to the destroy. Once the destroy is done, it is free.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_is_free_again_only_once_its_app_is_destroyed() {
    let s = TestServer::start();
    let dir = s.home().join("again");
    s.repo(
        &dir,
        &[
            ("Procfile", "web: trap '' TERM; exec python3 app.py\n"),
            ("app.py", ECHO_APP),
        ],
    );
    s.ok(&dir, &["apps:create", "again"]);
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
    eventually(60, "web.1 up", || async {
        let v = json(s.api_get("/apps/again/dynos").await).await;
        v.as_array()?
            .iter()
            .any(|d| d["name"] == "web.1" && d["state"] == "up")
            .then_some(())
    })
    .await;

    let destroy = {
        let req = s
            .http()
            .delete(format!("{}/apps/again", s.api_url()))
            .bearer_auth(&s.key)
            .header("Accept", "application/vnd.heroku+json; version=3");
        tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
    };
    // Until the row is gone the name is "already taken"; after that, until the destroy is
    // done, it is still being destroyed.
    let create = || async {
        let r = s
            .http()
            .post(format!("{}/apps", s.api_url()))
            .bearer_auth(&s.key)
            .header("Accept", "application/vnd.heroku+json; version=3")
            .json(&serde_json::json!({"name": "again"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), json(r).await)
    };
    let refused = eventually(10, "the old app's row is gone", || async {
        let (status, v) = create().await;
        let message = v["message"].as_str().unwrap_or("").to_string();
        (!message.contains("already taken")).then_some((status, message))
    })
    .await;
    assert_eq!(refused.0, 422, "{}", refused.1);
    assert!(refused.1.contains("still being destroyed"), "{}", refused.1);
    assert_eq!(destroy.await.unwrap(), 200);

    // Now it is free, and the new app's repository is its own.
    let (status, v) = create().await;
    assert_eq!(status, 201, "{v}");
    let (ok, out) = push(&s, &dir);
    assert!(ok, "{out}");
}
