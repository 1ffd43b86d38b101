//! Builds run in a build dyno: a buildpack's programs run as the unprivileged dyno user, in a
//! container that sees the stack and the build's own directories but not the server's data,
//! and the build still produces a slug that serves; a build dyno that runs too long is stopped
//! with everything it started. Needs root (as in CI); prints SKIPPED otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use slipway_build::{BuildError, BuildRequest, BuildSandbox, Builder, SlugStore};
use slipway_runtime::stack::{Stack, DYNO_GID, DYNO_UID};

/// A buildpack whose `bin/compile` reports what it can see and do, one `PROBE` line each.
const COMPILE: &str = r#"#!/bin/bash
BUILD_DIR=$1 CACHE_DIR=$2 ENV_DIR=$3
data=$(cat "$ENV_DIR/PROBE_DATA_DIR")
echo "PROBE uid=$(id -u) gid=$(id -g)"
if [ -e "$data/state.db" ] || [ -e "$data/owner.api-key" ]; then
  echo "PROBE data=visible"
else
  echo "PROBE data=hidden"
fi
echo "PROBE data-lists=[$(ls -A "$data" 2>/dev/null | tr '\n' ' ')]"
probe=/usr/.slipway-build-probe-$$
if touch "$probe" 2>/dev/null; then
  rm -f "$probe"
  echo "PROBE usr=writable"
else
  echo "PROBE usr=read-only"
fi
echo "PROBE pid1=[$(tr '\0' ' ' </proc/1/cmdline)]"
echo "PROBE procs=$(ls /proc | grep -c '^[0-9][0-9]*$')"
if touch "$HOME/.probe" "$CACHE_DIR/.probe" "$BUILD_DIR/.probe"; then
  echo "PROBE dirs=writable"
fi
if (exec 3<>/dev/tcp/127.0.0.1/$(cat "$ENV_DIR/PROBE_API_PORT")) 2>/dev/null; then
  echo "PROBE host-api=reachable"
else
  echo "PROBE host-api=unreachable"
fi
echo "PROBE cgroup=[$(grep -o 'dyno-build[0-9a-f]*' /proc/self/cgroup | head -1)]"
echo "built in a build dyno" >"$BUILD_DIR/VERSION"
"#;

const RELEASE: &str =
    "#!/bin/sh\necho '---'\necho 'default_process_types:'\necho '  web: python3 app.py'\n";

fn write_buildpack(dir: &Path, programs: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for (name, body) in programs {
        let path = dir.join("bin").join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Host pids whose command line is exactly `needle`.
fn host_pids(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).replace('\0', " ").trim() == needle {
            found.push(pid);
        }
    }
    found
}

/// The value of `PROBE <key>=...` in the push output.
fn probe<'a>(output: &'a str, key: &str) -> &'a str {
    let needle = format!("remote: PROBE {key}=");
    output
        .lines()
        .find_map(|l| l.find(&needle).map(|at| &l[at + needle.len()..]))
        .unwrap_or_else(|| panic!("no `PROBE {key}=` line in:\n{output}"))
        .trim_end()
}

#[tokio::test(flavor = "multi_thread")]
async fn buildpacks_run_unprivileged_in_a_build_dyno() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: build dynos need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("buildpacks");
    std::fs::create_dir_all(&allowed).unwrap();
    let s = TestServer::start_in(tmp, &["--local-buildpacks", allowed.to_str().unwrap()]);
    let log = s.log.lock().unwrap().join("\n");
    assert!(log.contains("Builds run in build dynos"), "{log}");

    let bp = allowed.join("probe-buildpack");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    write_buildpack(
        &bp,
        &[
            ("detect", "#!/bin/sh\necho Probe\n"),
            ("compile", COMPILE),
            ("release", RELEASE),
        ],
    );
    let dir = s.home().join("probed");
    s.repo(&dir, &[("app.py", ECHO_APP)]);
    s.ok(&dir, &["apps:create", "probed"]);
    s.ok(&dir, &["buildpacks:set", bp.to_str().unwrap()]);
    let data = s.data_dir();
    s.ok(
        &dir,
        &[
            "config:set",
            &format!("PROBE_DATA_DIR={}", data.display()),
            &format!("PROBE_API_PORT={}", s.api.port()),
        ],
    );
    let out = s.git(&dir, &["push", "slipway", "main"]);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{output}");
    for line in output.lines().filter(|l| l.contains("PROBE ")) {
        println!("{line}");
    }

    assert_eq!(probe(&output, "uid"), "10000 gid=10000", "{output}");
    assert_eq!(probe(&output, "data"), "hidden", "{output}");
    // Only the mount points of the build's own directories exist under the data dir.
    let listed = probe(&output, "data-lists");
    assert!(
        !listed.contains("state.db") && !listed.contains("repos") && !listed.contains("slugs"),
        "{output}"
    );
    assert_eq!(probe(&output, "usr"), "read-only", "{output}");
    let pid1 = probe(&output, "pid1");
    assert!(pid1.contains("dyno-exec"), "{output}");
    let procs: usize = probe(&output, "procs").parse().unwrap();
    assert!(procs < 10, "{procs} processes visible: {output}");
    assert_eq!(probe(&output, "dirs"), "writable", "{output}");
    // Its own network namespace: the server's API on the host's loopback is not there.
    assert_eq!(probe(&output, "host-api"), "unreachable", "{output}");
    // Its own cgroup, with the build limits.
    assert!(
        probe(&output, "cgroup").starts_with("[dyno-build"),
        "{output}"
    );
    // Nothing the build dyno made outlives the build.
    let left: Vec<_> = std::fs::read_dir(data.join("build/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // The slug holds what the unprivileged build wrote, and serves.
    let client = s.router_client("probed");
    eventually(120, "the app serves its built VERSION", || async {
        let r = client.get(s.app_url("probed", "/")).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text()
            .await
            .ok()?
            .contains("built in a build dyno")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_dyno_past_the_compile_timeout_is_stopped_with_all_it_started() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: build dynos need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stack = Stack::host(&tmp.path().join("stack")).unwrap();
    let slugs = SlugStore::local(tmp.path().join("slugs")).unwrap();
    let builder = Builder::new(tmp.path().join("build"), slugs)
        .await
        .unwrap()
        .with_local_buildpacks(&[tmp.path().to_path_buf()])
        .with_compile_timeout(Duration::from_secs(8))
        .with_sandbox(BuildSandbox {
            exe: BIN.into(),
            stack,
            uid: DYNO_UID,
            gid: DYNO_GID,
            stacks_dir: std::path::PathBuf::from("/nonexistent"),
            network: None,
            cgroups: None,
        });
    assert!(builder.is_sandboxed());
    // A process in the background and one in the foreground, both past the timeout.
    let bp = tmp.path().join("hang-buildpack");
    write_buildpack(
        &bp,
        &[
            ("detect", "#!/bin/sh\necho Hang\n"),
            (
                "compile",
                "#!/bin/sh\necho \"compiling as $(id -u)\"\nsleep 4243 &\nsleep 4244\n",
            ),
        ],
    );
    let app = tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("README"), "hang\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&app)
        .arg("README")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let req = BuildRequest {
        app_id: "hang".into(),
        app_name: "hang".into(),
        commit: "0".repeat(40),
        buildpacks: vec![bp.to_str().unwrap().to_owned()],
        config: Default::default(),
        stack: "slipway-host".into(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let result = builder.build(req, &tar.stdout[..], tx).await;
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push(line);
    }
    let out = lines.join("\n");
    assert!(
        matches!(result, Err(BuildError::CompileTimeout { .. })),
        "{result:?}\n{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert!(out.contains("compiling as 10000"), "{out}");
    eventually(10, "no process of the build dyno is left", || async {
        (host_pids("sleep 4243").is_empty() && host_pids("sleep 4244").is_empty()).then_some(())
    })
    .await;
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("build/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
