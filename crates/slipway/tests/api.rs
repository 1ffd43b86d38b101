//! The Platform API over real HTTP: auth, wire format, errors, pagination.

mod common;

use common::*;
use serde_json::{json, Value};

const ACCEPT: &str = "application/vnd.heroku+json; version=3";

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_needs_a_valid_key() {
    let s = TestServer::start();
    let c = s.http();
    for path in [
        "/account",
        "/apps",
        "/apps/x/config-vars",
        "/apps/x/releases",
        "/apps/x/formation",
        "/apps/x/dynos",
    ] {
        let r = c
            .get(format!("{}{path}", s.api_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["id"], "unauthorized", "{path}");
        assert!(body["message"].as_str().unwrap().len() > 10);
        let r = c
            .get(format!("{}{path}", s.api_url()))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = c
        .post(format!("{}/apps/x/log-sessions", s.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for (method, path) in [
        (reqwest::Method::PATCH, "/apps/x/config-vars"),
        (reqwest::Method::PATCH, "/apps/x/formation"),
        (reqwest::Method::PUT, "/apps/x/buildpack-installations"),
        (reqwest::Method::DELETE, "/apps/x"),
        (reqwest::Method::DELETE, "/apps/x/dynos"),
        (reqwest::Method::POST, "/apps"),
        (reqwest::Method::POST, "/apps/x/releases"),
    ] {
        let r = c
            .request(method.clone(), format!("{}{path}", s.api_url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_eq!(r.json::<Value>().await.unwrap()["id"], "unauthorized");
    }
    // Bearer and Basic (key as password) both work.
    let a: Value = c
        .get(format!("{}/account", s.api_url()))
        .bearer_auth(&s.key)
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["email"], "owner@slipway.local");
    let r = c
        .get(format!("{}/account", s.api_url()))
        .basic_auth("", Some(&s.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("request-id"));
    let r = c
        .get(format!("{}/account/rate-limits", s.api_url()))
        .basic_auth("", Some(&s.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["remaining"], 4500);
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_config_releases_in_herokus_wire_format() {
    let s = TestServer::start();
    let c = s.http();
    let url = |p: &str| format!("{}{p}", s.api_url());
    let post = |p: &str, body: Value| {
        c.post(url(p))
            .bearer_auth(&s.key)
            .header("Accept", ACCEPT)
            .json(&body)
            .send()
    };

    let r = post("/apps", json!({"name": "wire"})).await.unwrap();
    assert_eq!(r.status(), 201);
    let app: Value = r.json().await.unwrap();
    for field in [
        "id",
        "name",
        "web_url",
        "git_url",
        "created_at",
        "updated_at",
        "released_at",
    ] {
        assert!(!app[field].is_null(), "app.{field}");
    }
    assert_eq!(app["owner"]["email"], "owner@slipway.local");
    assert!(app["stack"]["name"].is_string() && app["region"]["name"].is_string());
    let by_id: Value = s
        .api_get(&format!("/apps/{}", app["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_id["name"], "wire");

    // Errors.
    let r = post("/apps", json!({"name": "wire"})).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Name wire is already taken"
    );
    let r = post("/apps", json!({"name": "9lives"})).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "invalid_params");
    let r = c
        .post(url("/apps"))
        .bearer_auth(&s.key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "bad_request");
    let r = s.api_get("/apps/ghost").await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"id": "not_found", "message": "Couldn't find that app.", "resource": "app"})
    );

    // A method a path does not take gets Heroku's error body too.
    let r = c
        .put(url("/apps"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "method_not_allowed");

    // Config vars: PATCH merges, null unsets, each change is a release.
    let patch = |body: Value| {
        c.patch(url("/apps/wire/config-vars"))
            .bearer_auth(&s.key)
            .json(&body)
            .send()
    };
    let r: Value = patch(json!({"A": "1", "B": "2"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"A": "1", "B": "2"}));
    let r: Value = patch(json!({"B": null}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"A": "1"}));
    let r = patch(json!({"lower-case": "x"})).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = patch(json!({"N": 5})).await.unwrap();
    assert_eq!(r.status(), 422);
    let r = patch(json!({"N": "a\u{0}b"})).await.unwrap();
    assert_eq!(r.status(), 422);

    let releases: Value = s.api_get("/apps/wire/releases").await.json().await.unwrap();
    let d: Vec<&str> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        d,
        [
            "Initial release",
            "Set A, B config vars",
            "Remove B config vars"
        ]
    );
    assert_eq!(releases[2]["current"], true);
    assert_eq!(releases[0]["current"], false);
    let v2_config: Value = s
        .api_get("/apps/wire/releases/2/config-vars")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v2_config, json!({"A": "1", "B": "2"}));

    // Rollback by version number and by id.
    let r = post("/apps/wire/releases", json!({"release": 2}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rel: Value = r.json().await.unwrap();
    assert_eq!(
        (rel["version"].as_i64(), rel["description"].as_str()),
        (Some(4), Some("Rollback to v2"))
    );
    let cfg: Value = s
        .api_get("/apps/wire/config-vars")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cfg, json!({"A": "1", "B": "2"}));
    let v1_id = releases[0]["id"].as_str().unwrap();
    let rel: Value = post("/apps/wire/releases", json!({"release": v1_id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rel["description"], "Rollback to v1");
    let r = post("/apps/wire/releases", json!({"release": "99"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Range / Next-Range: 206 only when more remain, resumable.
    let r = c
        .get(url("/apps/wire/releases"))
        .bearer_auth(&s.key)
        .header("Range", "version ..; max=2, order=desc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let next = r.headers()["next-range"].to_str().unwrap().to_string();
    let page: Value = r.json().await.unwrap();
    assert_eq!(
        page.as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [5, 4]
    );
    let r = c
        .get(url("/apps/wire/releases"))
        .bearer_auth(&s.key)
        .header("Range", &next)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(
        page.as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [3, 2]
    );
    let r = c
        .get(url("/apps/wire/releases"))
        .bearer_auth(&s.key)
        .header("Range", "version ..; order=desc,max=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()[0]["version"], 5);
    let r = c
        .get(url("/apps"))
        .bearer_auth(&s.key)
        .header("Range", "id ..; max=1000;")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("next-range").is_none());

    // Formation before any deploy is empty; scaling an unknown type is a 404.
    let f: Value = s
        .api_get("/apps/wire/formation")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(f, json!([]));
    let r = c
        .patch(url("/apps/wire/formation"))
        .bearer_auth(&s.key)
        .json(&json!({"updates": [{"type": "web", "quantity": "+1"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Log sessions hand out a URL that works without the key.
    let r = post(
        "/apps/wire/log-sessions",
        json!({"lines": 10, "tail": false}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let logplex = r.json::<Value>().await.unwrap()["logplex_url"]
        .as_str()
        .unwrap()
        .to_string();
    let body = c.get(&logplex).send().await.unwrap().text().await.unwrap();
    assert!(
        body.contains("heroku[api]: Release v5 created by owner@slipway.local"),
        "{body}"
    );
    let sse = c
        .get(&logplex)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let body = sse.text().await.unwrap();
    assert!(
        body.contains("\nid: ") || body.starts_with("id: "),
        "{body}"
    );
    assert!(body.contains("data: "), "{body}");
    let r = c
        .get(format!("{}/log-sessions/not-a-token", s.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Stacks: the development stack is there and is the default; the app runs on it.
    let stacks: Value = s.api_get("/stacks").await.json().await.unwrap();
    assert_eq!(stacks[0]["name"], "slipway-host");
    assert_eq!(stacks[0]["default"], true);
    assert_eq!(s.api_get("/stacks/slipway-host").await.status(), 200);
    assert_eq!(s.api_get("/stacks/heroku-24").await.status(), 404);
    let out = s.ok(s.dir.path(), &["stack", "-a", "wire"]);
    assert!(out.contains("* slipway-host"), "{out}");
    let out = s.ok(s.dir.path(), &["stacks"]);
    assert!(out.contains("* slipway-host (default)"), "{out}");
    let out = s.cli(s.dir.path(), &["stack:set", "debian-12", "-a", "wire"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not installed on this server"),
        "{}",
        text(&out.stderr)
    );
    let out = s.ok(s.dir.path(), &["stack:set", "slipway-host", "-a", "wire"]);
    assert!(out.contains("redeploy wire"), "{out}");
    let r = c
        .patch(url("/apps/wire"))
        .bearer_auth(&s.key)
        .json(&json!({"build_stack": {"name": "slipway-host"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["build_stack"]["name"],
        "slipway-host"
    );

    // Delete answers with the app.
    let r = c
        .delete(url("/apps/wire"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "wire");
    assert_eq!(s.api_get("/apps/wire").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_key_is_found_by_the_local_cli_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir, &[]);
    let key_file = s.data_dir().join("owner.api-key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Without SLIPWAY_API_KEY the CLI reads the key from the data dir.
    let out = std::process::Command::new(BIN)
        .args(["auth:token"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", s.home())
        .env("SLIPWAY_DATA_DIR", s.data_dir())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), s.key);
    // The url comes from the data dir too.
    let out = std::process::Command::new(BIN)
        .args(["apps:create", "found-it", "--no-remote"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", s.home())
        .env("SLIPWAY_DATA_DIR", s.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `login` stores a key in ~/.netrc, which is then used.
    let mut child = std::process::Command::new(BIN)
        .args(["login"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", s.home())
        .env("SLIPWAY_API_URL", s.api_url())
        .env("SLIPWAY_DATA_DIR", "/nonexistent")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", s.key).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let netrc = std::fs::read_to_string(s.home().join(".netrc")).unwrap();
    assert!(
        netrc.contains(&s.api.to_string()) && netrc.contains(&s.key),
        "{netrc}"
    );
    let out = std::process::Command::new(BIN)
        .args(["apps", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", s.home())
        .env("SLIPWAY_API_URL", s.api_url())
        .env("SLIPWAY_DATA_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("found-it"),
        "{}",
        text(&out.stderr)
    );

    // Restart on the same data dir: same key, same apps.
    let key = s.key.clone();
    let dir = s.stop();
    let s = TestServer::start_in(dir, &[]);
    assert_eq!(s.key, key);
    assert_eq!(s.api_get("/apps/found-it").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_tail_streams_new_lines_with_ids() {
    let s = TestServer::start();
    let c = s.http();
    let url = |p: &str| format!("{}{p}", s.api_url());
    c.post(url("/apps"))
        .bearer_auth(&s.key)
        .json(&json!({"name": "ssetail"}))
        .send()
        .await
        .unwrap();
    let session: Value = c
        .post(url("/apps/ssetail/log-sessions"))
        .bearer_auth(&s.key)
        .json(&json!({"tail": true, "lines": 1, "source": "heroku"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut resp = c
        .get(session["logplex_url"].as_str().unwrap())
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    c.patch(url("/apps/ssetail/config-vars"))
        .bearer_auth(&s.key)
        .json(&json!({"LIVE": "1"}))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("Set LIVE config vars") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "{seen}");
    let event = seen
        .split("\n\n")
        .find(|e| e.contains("Set LIVE config vars"))
        .unwrap();
    assert!(
        event.starts_with("id: ") || event.contains("\nid: "),
        "{event}"
    );
    assert!(
        event.contains("data: ") && event.contains(" heroku[api]: "),
        "{event}"
    );
}

/// What the web framework refuses before a handler sees it (a path segment that is not UTF-8,
/// a body over the limit) still gets Heroku's JSON error, not plain text.
#[tokio::test(flavor = "multi_thread")]
async fn requests_refused_before_a_handler_get_herokus_json_errors() {
    let s = TestServer::start();
    let r = s.api_get("/apps/%FF").await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().contains_key("request-id"));
    let v: Value = r.json().await.expect("a JSON body");
    assert_eq!(v["id"], "bad_request", "{v}");
    assert!(!v["message"].as_str().unwrap().is_empty(), "{v}");

    let r = s
        .http()
        .post(format!("{}/apps", s.api_url()))
        .bearer_auth(&s.key)
        .header("Accept", ACCEPT)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.expect("a JSON body");
    assert_eq!(v["id"], "request_too_large", "{v}");
}
