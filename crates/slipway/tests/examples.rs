//! The sample apps under `examples/` deploy with the built-in buildpacks and answer through the
//! router; buildpacks can be chosen per app; formation changes take sizes and relative counts.

mod common;

use common::*;
use serde_json::Value;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn example(s: &TestServer, name: &str) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let dir = s.home().join(name);
    copy_dir(&src, &dir);
    s.repo(&dir, &[]);
    dir
}

async fn serves(s: &TestServer, app: &str, needle: &str) {
    let client = s.router_client(app);
    eventually(120, &format!("{app} answers with {needle:?}"), || async {
        let r = client.get(s.app_url(app, "/")).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()?.contains(needle).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_deploys_with_its_buildpack() {
    let s = TestServer::start();
    for (name, detected, answer) in [
        ("procfile-app", "Procfile app detected", "Hello from web.1"),
        (
            "python-app",
            "Python app detected",
            "Hello from Python on web.1",
        ),
        (
            "node-app",
            "Node.js app detected",
            "Hello from Node.js on web.1",
        ),
        (
            "static-site",
            "Static app detected",
            "Hello from a static site on Slipway",
        ),
    ] {
        let dir = example(&s, name);
        s.ok(&dir, &["apps:create", name]);
        let out = s.git(&dir, &["push", "slipway", "main"]);
        let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{name}: {output}");
        assert!(output.contains(detected), "{name}: {output}");
        serves(&s, name, answer).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buildpacks_and_formation() {
    // A custom buildpack from a local path, in a directory the operator allowed, set before
    // the first push.
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("buildpacks");
    std::fs::create_dir_all(&allowed).unwrap();
    let s = TestServer::start_in(tmp, &["--local-buildpacks", allowed.to_str().unwrap()]);
    let bp = allowed.join("my-buildpack");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    std::fs::write(bp.join("bin/detect"), "#!/bin/sh\necho Custom\n").unwrap();
    std::fs::write(
        bp.join("bin/compile"),
        "#!/bin/sh\necho '-----> Custom buildpack compiling'\necho 'from the custom buildpack' > \"$1/marker.txt\"\n",
    )
    .unwrap();
    std::fs::write(
        bp.join("bin/release"),
        "#!/bin/sh\necho '---'\necho 'default_process_types:'\necho '  web: python3 app.py'\n",
    )
    .unwrap();
    for f in ["detect", "compile", "release"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bp.join("bin").join(f),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let dir = s.home().join("custom");
    s.repo(&dir, &[("app.py", ECHO_APP), ("worker.sh", "sleep 1000\n")]);
    s.ok(&dir, &["apps:create", "custom"]);
    // Anywhere else on the server's disk is refused, by path or by file:// URL.
    let elsewhere = s.home().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("bin")).unwrap();
    for reference in [
        elsewhere.display().to_string(),
        format!("file://{}", elsewhere.display()),
    ] {
        let out = s.cli(&dir, &["buildpacks:set", &reference]);
        assert!(!out.status.success(), "{reference}");
        assert!(
            text(&out.stderr).contains("must be directories inside"),
            "{}",
            text(&out.stderr)
        );
    }
    s.ok(&dir, &["buildpacks:set", bp.to_str().unwrap()]);
    let out = s.ok(&dir, &["buildpacks"]);
    assert!(out.contains("my-buildpack"), "{out}");
    // Procfile wins over the buildpack's default web, and adds a worker.
    std::fs::write(
        dir.join("Procfile"),
        "web: python3 app.py\nworker: sh worker.sh\n",
    )
    .unwrap();
    s.commit_all(&dir, "procfile");
    let out = s.git(&dir, &["push", "slipway", "main"]);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{output}");
    assert!(
        output.contains("remote: -----> Custom buildpack compiling"),
        "{output}"
    );
    s.ok(&dir, &["buildpacks:clear"]);
    assert!(!s.ok(&dir, &["buildpacks"]).contains("my-buildpack"));

    // Relative and sized scaling, as numbers and strings through the API.
    let out = s.ok(&dir, &["ps:scale", "worker+2", "web=2:standard-2x"]);
    assert!(
        out.contains("worker at 2") && out.contains("web at 2:standard-2x"),
        "{out}"
    );
    s.ok(&dir, &["ps:scale", "worker-1"]);
    let r = s
        .http()
        .patch(format!("{}/apps/custom/formation/web", s.api_url()))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let f: Value = s
        .api_get("/apps/custom/formation")
        .await
        .json()
        .await
        .unwrap();
    let by_type = |t: &str| {
        f.as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            by_type("web")["quantity"].as_u64(),
            by_type("web")["size"].as_str()
        ),
        (Some(1), Some("standard-2x"))
    );
    assert_eq!(by_type("worker")["quantity"], 1);
    assert_eq!(by_type("worker")["command"], "sh worker.sh");
    // Relative changes made at the same moment all count: six `+1` make 7, six `-1` make 1.
    for (change, want) in [("+1", 7), ("-1", 1)] {
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let req = s
                .http()
                .patch(format!("{}/apps/custom/formation/worker", s.api_url()))
                .bearer_auth(&s.key)
                .json(&serde_json::json!({ "quantity": change }));
            all.spawn(async move { req.send().await.unwrap().status().as_u16() });
        }
        while let Some(status) = all.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        let f: Value = s
            .api_get("/apps/custom/formation/worker")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(f["quantity"], want, "after six {change}: {f}");
    }
    let r = s
        .http()
        .patch(format!("{}/apps/custom/formation", s.api_url()))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"updates": [{"type": "web", "size": "enormous"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // The dynos follow: one web, one worker, both up.
    eventually(60, "web.1 and worker.1 up, nothing else", || async {
        let v: Value = s.api_get("/apps/custom/dynos").await.json().await.ok()?;
        let mut names: Vec<String> = v
            .as_array()?
            .iter()
            .filter(|d| d["state"] == "up")
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        (names == ["web.1", "worker.1"] && v.as_array()?.len() == 2).then_some(())
    })
    .await;
    let marker = s.router_client("custom");
    let r = marker.get(s.app_url("custom", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Restart by type, then all.
    let sigterms = || {
        s.logs("custom")
            .matches("heroku[worker.1]: Stopping all processes with SIGTERM")
            .count()
    };
    let worker_up = || async {
        let v: Value = s.api_get("/apps/custom/dynos").await.json().await.ok()?;
        v.as_array()?
            .iter()
            .any(|d| d["name"] == "worker.1" && d["state"] == "up")
            .then_some(())
    };
    s.ok(&dir, &["ps:restart", "worker"]);
    eventually(60, "worker restarted", || async {
        (sigterms() >= 1).then_some(())
    })
    .await;
    eventually(60, "worker up again", worker_up).await;
    s.ok(&dir, &["ps:restart"]);
    eventually(60, "worker restarted again", || async {
        (sigterms() >= 2).then_some(())
    })
    .await;
}

/// Writes a minimal wheel (`greeting-1.0-py3-none-any.whl`) with Python's zipfile, so pip can
/// install it with no network.
fn make_wheel(dir: &std::path::Path) {
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "greeting/__init__.py": "WORD = 'hello from a wheel'\n",
    "greeting-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: greeting\nVersion: 1.0\n",
    "greeting-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, body in files.items():
        z.writestr(name, body)
        digest = base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(body)}")
    record.append("greeting-1.0.dist-info/RECORD,,")
    z.writestr("greeting-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("greeting-1.0-py3-none-any.whl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn dependencies_are_installed_into_the_slug() {
    let s = TestServer::start();
    // Python: pip installs a wheel from requirements.txt; the dyno imports it.
    let py = s.home().join("py-deps");
    make_wheel(&py.join("wheels"));
    let app_py = "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\nimport greeting\n\
class H(BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = greeting.WORD.encode()\n        self.send_response(200)\n        \
self.send_header('Content-Length', str(len(b)))\n        self.end_headers()\n        self.wfile.write(b)\n\
HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n";
    s.repo(
        &py,
        &[
            (
                "requirements.txt",
                "./wheels/greeting-1.0-py3-none-any.whl\n",
            ),
            ("Procfile", "web: python3 app.py\n"),
            ("app.py", app_py),
        ],
    );
    s.ok(&py, &["apps:create", "py-deps"]);
    let out = s.git(&py, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serves(&s, "py-deps", "hello from a wheel").await;

    // Node.js: npm installs a local package; `npm start` runs the app, which requires it.
    let node = s.home().join("node-deps");
    s.repo(
        &node,
        &[
            ("greet/package.json", r#"{"name": "greet", "version": "1.0.0", "main": "index.js"}"#),
            ("greet/index.js", "module.exports = 'hello from an npm package';\n"),
            (
                "package.json",
                r#"{"name": "node-deps", "version": "1.0.0", "private": true,
                   "dependencies": {"greet": "file:./greet"}, "scripts": {"start": "node server.js"}}"#,
            ),
            (
                "server.js",
                "require('http').createServer((q, r) => r.end(require('greet'))).listen(process.env.PORT);\n",
            ),
        ],
    );
    s.ok(&node, &["apps:create", "node-deps"]);
    let out = s.git(&node, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serves(&s, "node-deps", "hello from an npm package").await;

    // Destroying an app removes the build cache its pushes filled.
    let app: Value = s.api_get("/apps/py-deps").await.json().await.unwrap();
    let cache = s
        .data_dir()
        .join("build/cache")
        .join(app["id"].as_str().unwrap());
    assert!(cache.is_dir(), "{}", cache.display());
    s.ok(
        &py,
        &["apps:destroy", "--confirm", "py-deps", "-a", "py-deps"],
    );
    eventually(30, "the destroyed app's build cache is removed", || async {
        (!cache.exists()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn master_deploys_other_branches_do_not_and_apps_come_back_after_a_restart() {
    let s = TestServer::start_with(&[]);
    let dir = example(&s, "procfile-app");
    s.ok(&dir, &["apps:create", "branches"]);
    // Another branch: accepted, nothing built.
    let out = s.git(&dir, &["push", "slipway", "main:feature"]);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{output}");
    assert!(output.contains("only main or master deploys"), "{output}");
    let releases: Value = s
        .api_get("/apps/branches/releases")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(releases.as_array().unwrap().len(), 1);
    // master deploys.
    let out = s.git(&dir, &["push", "slipway", "main:master"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serves(&s, "branches", "Hello from web.1").await;
    let info = s.ok(&dir, &["releases:info", "v2"]);
    assert!(
        info.contains("Release v2") && info.contains("Deploy "),
        "{info}"
    );

    // A server restart on the same data dir starts the app's dynos again.
    let dir_keep = s.stop();
    let s = TestServer::start_in(dir_keep, &[]);
    serves(&s, "branches", "Hello from web.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_from_env_vars() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in_env(dir, &[], &[("SLIPWAY_BASE_DOMAIN", "apps.test")]);
    let r = s
        .http()
        .post(format!("{}/apps", s.api_url()))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"name": "envy"}))
        .send()
        .await
        .unwrap();
    let app: Value = r.json().await.unwrap();
    assert_eq!(
        app["web_url"],
        format!("http://envy.apps.test:{}/", s.router.port())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_are_refused_where_they_cannot_be_enforced() {
    let s = TestServer::start_with(&["--runtime", "host"]);
    let dir = example(&s, "procfile-app");
    s.ok(&dir, &["apps:create", "plain"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for args in [
        &["ps:scale", "web=1:standard-2x"][..],
        &["ps:type", "web=performance-m"],
    ] {
        let out = s.cli(&dir, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains("Cannot change dyno sizes on this host"),
            "{}",
            text(&out.stderr)
        );
    }
    // Quantities still work.
    s.ok(&dir, &["ps:scale", "web=2"]);
}
