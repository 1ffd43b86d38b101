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
    let s = TestServer::start();
    // A custom buildpack from a local path, set before the first push.
    let bp = s.home().join("my-buildpack");
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

    // Restart by type and all.
    s.ok(&dir, &["ps:restart", "worker"]);
    s.ok(&dir, &["ps:restart"]);
    eventually(60, "worker restarted twice", || async {
        let logs = s.logs("custom");
        (logs
            .matches("heroku[worker.1]: Stopping all processes with SIGTERM")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
}
