//! Whole builds with real processes: built-in and custom buildpacks, caches, failures.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{joined, on_build_path, request, source_tar, write_files, Harness};
use slipway_build::{BuildError, Builder};

fn types(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes a buildpack with the given bin scripts (bodies after a bash shebang).
fn buildpack(dir: &Path, scripts: &[(&str, &str)]) -> String {
    let files: Vec<(String, String, u32)> = scripts
        .iter()
        .map(|(name, body)| {
            (
                format!("bin/{name}"),
                format!("#!/usr/bin/env bash\n{body}\n"),
                0o755,
            )
        })
        .collect();
    let refs: Vec<(&str, &str, u32)> = files
        .iter()
        .map(|(p, b, m)| (p.as_str(), b.as_str(), *m))
        .collect();
    write_files(dir, &refs);
    dir.to_str().unwrap().to_owned()
}

/// A buildpack on the server's disk is taken only from the directories the operator allowed:
/// not from elsewhere, not through a `file://` URL, not through a symlink that leads out.
#[tokio::test]
async fn buildpacks_on_the_server_come_only_from_allowed_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let store = slipway_build::SlugStore::local(tmp.path().join("slugs")).unwrap();
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let builder = Builder::new(tmp.path().join("builder"), store.clone())
        .await
        .unwrap()
        .with_local_buildpacks(std::slice::from_ref(&allowed));
    let scripts = [("detect", "echo Mine"), ("compile", "true")];
    let inside = buildpack(&allowed.join("bp"), &scripts);
    let outside = buildpack(&tmp.path().join("outside"), &scripts);
    let link = allowed.join("link");
    std::os::unix::fs::symlink(tmp.path().join("outside"), &link).unwrap();
    let link = link.to_str().unwrap().to_owned();
    for (reference, ok) in [
        (inside.clone(), true),
        (format!("file://{inside}"), true),
        (outside.clone(), false),
        (format!("file://{outside}"), false),
        (format!("{inside}/../../outside"), false),
        (format!("file://{inside}/%2e%2e/%2e%2e/outside"), false),
        (link, false),
    ] {
        assert_eq!(
            builder.check_buildpack(&reference).is_ok(),
            ok,
            "{reference}"
        );
    }

    // A build naming one outside (here through BUILDPACK_URL) fails and says why.
    let tar = source_tar(&tmp.path().join("app"), &[("Procfile", "web: x\n", 0o644)]);
    let mut req = request("outside", &[]);
    req.config.insert("BUILDPACK_URL".into(), outside.clone());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    match builder.build(req, &tar[..], tx).await {
        Err(e @ BuildError::InvalidBuildpack { .. }) => assert!(
            e.to_string()
                .contains(&format!("must be directories inside {}", allowed.display())),
            "{e}"
        ),
        other => panic!("expected InvalidBuildpack, got {other:?}"),
    }
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    builder
        .build(request("inside", &[&inside]), &tar[..], tx)
        .await
        .expect("a buildpack inside the allowed directory builds");

    // With no directories allowed, none is taken, and the message says how to allow one.
    let closed = Builder::new(tmp.path().join("builder2"), store)
        .await
        .unwrap();
    let e = closed.check_buildpack(&inside).unwrap_err().to_string();
    assert!(e.contains("--local-buildpacks DIR"), "{e}");
    assert!(closed.check_buildpack("python").is_ok());
    assert!(closed
        .check_buildpack("https://example.com/bp.git#v1")
        .is_ok());
}

#[tokio::test]
async fn procfile_only_app_builds() {
    let h = Harness::new().await;
    let tar = source_tar(
        &h.dir("app"),
        &[
            (
                "Procfile",
                "web: ./run.sh\n# comment\nworker: sleep 100\n",
                0o644,
            ),
            ("run.sh", "#!/bin/sh\necho up\n", 0o755),
        ],
    );
    let (result, lines) = h.build(request("app1", &[]), &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    let out = joined(&lines);
    // The caller prints the stack line; the builder starts with detection.
    assert_eq!(
        lines[0], "-----> Determining which buildpack to use for this app",
        "{out}"
    );
    assert!(
        lines.contains(&"-----> Procfile app detected".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"-----> Discovering process types".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"       Procfile declares types -> web, worker".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"-----> Compressing...".to_string()),
        "{out}"
    );
    assert!(
        lines.last().unwrap().starts_with("       Done: ") && lines.last().unwrap().ends_with('K'),
        "{out}"
    );
    assert_eq!(
        slug.process_types,
        types(&[("web", "./run.sh"), ("worker", "sleep 100")])
    );
    assert_eq!(slug.buildpack_description, "Procfile");
    assert!(h.store.exists(&slug.sha256).await.unwrap());

    let unpacked = h.unpack(&slug.sha256).await;
    assert!(unpacked.join("Procfile").is_file());
    assert!(!unpacked.join(".git").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(unpacked.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    // git archive keeps the executable bit (with its default umask 002).
    assert_eq!(mode & 0o111, 0o111);
    h.assert_tmp_empty();
}

#[tokio::test]
async fn python_app_builds_with_pip_and_profile_d() {
    if !on_build_path("python3") {
        println!("SKIPPED: python3 is not on the build PATH");
        return;
    }
    let h = Harness::new().await;
    let tar = source_tar(
        &h.dir("app"),
        &[
            ("requirements.txt", "# no packages yet\n", 0o644),
            ("app.py", "print('hello')\n", 0o644),
            ("Procfile", "web: python3 app.py\n", 0o644),
        ],
    );
    let (result, lines) = h.build(request("py", &[]), &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    let out = joined(&lines);
    println!("{out}");
    assert!(
        lines.contains(&"-----> Python app detected".to_string()),
        "{out}"
    );
    assert!(
        out.contains("-----> Installing requirements with pip"),
        "{out}"
    );
    assert_eq!(slug.buildpack_description, "Python");
    assert_eq!(slug.process_types, types(&[("web", "python3 app.py")]));

    let unpacked = h.unpack(&slug.sha256).await;
    let profile = std::fs::read_to_string(unpacked.join(".profile.d/python.sh")).unwrap();
    assert!(
        profile.contains("$HOME/.heroku/python-packages"),
        "{profile}"
    );
    assert!(unpacked.join(".heroku/python-packages").is_dir());
    // pip's cache was kept for the next build.
    assert!(h.root().join("cache/py/python/pip").is_dir());

    // The profile script works as a dyno would use it: HOME = the unpacked slug.
    let check = std::process::Command::new("bash")
        .arg("-c")
        .arg(". .profile.d/python.sh && echo \"$PYTHONPATH\"")
        .current_dir(&unpacked)
        .env_clear()
        .env("HOME", &unpacked)
        .env("PATH", common::BUILD_PATH)
        .output()
        .unwrap();
    let pythonpath = String::from_utf8_lossy(&check.stdout);
    assert!(
        pythonpath.starts_with(&format!("{}/.heroku/python-packages", unpacked.display())),
        "{pythonpath}"
    );
    h.assert_tmp_empty();
}

#[tokio::test]
async fn nodejs_app_builds_with_npm_and_gets_default_web() {
    if !on_build_path("npm") || !on_build_path("node") {
        println!("SKIPPED: node or npm is not on the build PATH");
        return;
    }
    let h = Harness::new().await;
    let tar = source_tar(
        &h.dir("app"),
        &[
            (
                "package.json",
                r#"{"name":"t","version":"1.0.0","scripts":{"start":"node index.js","build":"node build.js"}}"#,
                0o644,
            ),
            (
                "build.js",
                "require('fs').writeFileSync('built.txt', 'built by npm run build\\n');\n",
                0o644,
            ),
            ("index.js", "console.log('hi');\n", 0o644),
        ],
    );
    let (result, lines) = h.build(request("node", &[]), &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    let out = joined(&lines);
    println!("{out}");
    assert!(
        lines.contains(&"-----> Node.js app detected".to_string()),
        "{out}"
    );
    assert!(
        out.contains("-----> Installing dependencies with npm install"),
        "{out}"
    );
    assert!(out.contains("-----> Running npm run build"), "{out}");
    assert!(
        lines.contains(&"       Procfile declares types     -> (none)".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"       Default types for buildpack -> web".to_string()),
        "{out}"
    );
    assert_eq!(slug.process_types, types(&[("web", "npm start")]));
    assert_eq!(slug.buildpack_description, "Node.js");

    let unpacked = h.unpack(&slug.sha256).await;
    assert!(unpacked.join(".profile.d/nodejs.sh").is_file());
    assert_eq!(
        std::fs::read_to_string(unpacked.join("built.txt")).unwrap(),
        "built by npm run build\n"
    );
    h.assert_tmp_empty();
}

#[tokio::test]
async fn static_site_gets_a_python_http_server() {
    if !on_build_path("python3") {
        println!("SKIPPED: python3 is not on the build PATH");
        return;
    }
    let h = Harness::new().await;
    let tar = source_tar(
        &h.dir("app"),
        &[
            ("static.json", r#"{"root": "public site"}"#, 0o644),
            ("public site/index.html", "<h1>hi</h1>\n", 0o644),
        ],
    );
    let (result, lines) = h.build(request("site", &[]), &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    assert!(
        lines.contains(&"-----> Static app detected".to_string()),
        "{}",
        joined(&lines)
    );
    assert_eq!(
        slug.process_types,
        types(&[(
            "web",
            "python3 -m http.server $PORT --bind 0.0.0.0 --directory 'public site'"
        )])
    );
}

#[tokio::test]
async fn app_no_buildpack_detects_fails() {
    let h = Harness::new().await;
    let tar = source_tar(&h.dir("app"), &[("README.md", "# nothing to run\n", 0o644)]);
    let (result, lines) = h.build(request("none", &[]), &tar).await;
    match result {
        Err(BuildError::NoBuildpackDetected) => {}
        other => panic!(
            "expected NoBuildpackDetected, got {other:?}\n{}",
            joined(&lines)
        ),
    }
    assert!(!BuildError::NoBuildpackDetected.to_string().contains('\n'));
    h.assert_tmp_empty();
}

#[tokio::test]
async fn set_buildpack_that_declines_fails_with_its_explanation() {
    let h = Harness::new().await;
    let tar = source_tar(&h.dir("app"), &[("README.md", "x\n", 0o644)]);
    let (result, lines) = h.build(request("decline", &["python"]), &tar).await;
    match result {
        Err(BuildError::DetectFailed { buildpack }) => assert_eq!(buildpack, "python"),
        other => panic!("expected DetectFailed, got {other:?}"),
    }
    let out = joined(&lines);
    assert!(
        out.contains("-----> App not compatible with buildpack: python"),
        "{out}"
    );
    assert!(out.contains(" !     No requirements.txt"), "{out}");
}

#[tokio::test]
async fn custom_buildpacks_get_the_classic_contract_and_share_export() {
    let h = Harness::new().await;
    let first = buildpack(
        &h.dir("bp-first"),
        &[
            ("detect", "echo First; echo 'detect saw' \"$@\" >&2"),
            (
                "compile",
                r#"set -eu
BP_DIR=$(cd "$(dirname "$0")/.." && pwd)
{
  echo "argc=$#"
  echo "build=$1"
  echo "cache=$2"
  echo "env=$3"
  echo "pwd=$(pwd)"
  echo "stack=$STACK"
  echo "source_version=$SOURCE_VERSION"
  echo "home_set=${HOME:+yes}"
  echo "path=$PATH"
  echo "secret_in_env=${SECRET:-absent}"
  echo "secret_file=$(cat "$3/SECRET")"
  echo "multiline=$(cat "$3/MULTI" | wc -l)"
} > "$1/first.txt"
echo "-----> First step"
echo "       out 1"
echo "       err 2" >&2
echo "       out 3"
echo 'export FROM_FIRST="hello from first"' > "$BP_DIR/export"
echo 'export PATH="/first/bin:$PATH"' >> "$BP_DIR/export""#,
            ),
        ],
    );
    let second = buildpack(
        &h.dir("bp-second"),
        &[
            ("detect", "echo Second Thing"),
            (
                "compile",
                r#"echo "${FROM_FIRST:-missing}" > "$1/second.txt"; echo "$PATH" >> "$1/second.txt""#,
            ),
            (
                "release",
                "cat <<'YAML'\n---\naddons: []\ndefault_process_types:\n  web: default-web\n  console: bash\nYAML",
            ),
        ],
    );
    let tar = source_tar(
        &h.dir("app"),
        &[("Procfile", "web: my-web\nworker: my-worker\n", 0o644)],
    );
    let mut req = request("custom", &[&first, &second]);
    req.config.insert("SECRET".into(), "s3cr3t".into());
    req.config.insert("MULTI".into(), "a\nb\nc\n".into());
    let (result, lines) = h.build(req, &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    let out = joined(&lines);

    assert!(out.contains("-----> Using buildpacks:"), "{out}");
    assert!(out.contains(&format!("       1. {first}")), "{out}");
    assert!(
        lines.contains(&"-----> First app detected".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"-----> Second Thing app detected".to_string()),
        "{out}"
    );
    // stdout and stderr arrive as one stream, in order.
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l == needle)
            .unwrap_or_else(|| panic!("{needle} missing:\n{out}"))
    };
    assert!(pos("-----> First step") < pos("       out 1"));
    assert!(pos("       out 1") < pos("       err 2"));
    assert!(pos("       err 2") < pos("       out 3"));
    assert!(
        lines.contains(&"       Procfile declares types     -> web, worker".to_string()),
        "{out}"
    );
    assert!(
        lines.contains(&"       Default types for buildpack -> console, web".to_string()),
        "{out}"
    );

    // Procfile wins type by type; the last buildpack's other defaults stay.
    assert_eq!(
        slug.process_types,
        types(&[
            ("web", "my-web"),
            ("worker", "my-worker"),
            ("console", "bash")
        ])
    );
    assert_eq!(slug.buildpack_description, "Second Thing");

    let unpacked = h.unpack(&slug.sha256).await;
    let first_txt = std::fs::read_to_string(unpacked.join("first.txt")).unwrap();
    let field = |name: &str| -> String {
        first_txt
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {first_txt}"))
            .to_owned()
    };
    assert_eq!(field("argc"), "3");
    let build_dir = field("build");
    assert!(
        Path::new(&build_dir).starts_with(h.root().join("tmp"))
            && Path::new(&build_dir)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("build_"),
        "{build_dir}"
    );
    assert_eq!(field("pwd"), build_dir);
    // CACHE_DIR and ENV_DIR are per-build dirs on the build dir's filesystem, under the root.
    for dir in [field("cache"), field("env")] {
        assert!(Path::new(&dir).starts_with(h.root().join("tmp")), "{dir}");
        assert_ne!(dir, build_dir);
    }
    assert_eq!(field("stack"), "slipway-host");
    assert_eq!(
        field("source_version"),
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(field("home_set"), "yes");
    assert_eq!(field("path"), common::BUILD_PATH);
    assert_eq!(field("secret_in_env"), "absent");
    assert_eq!(field("secret_file"), "s3cr3t");
    assert_eq!(field("multiline"), "3");

    let second_txt = std::fs::read_to_string(unpacked.join("second.txt")).unwrap();
    let mut second_lines = second_txt.lines();
    assert_eq!(second_lines.next(), Some("hello from first"));
    assert!(second_lines.next().unwrap().starts_with("/first/bin:"));
    h.assert_tmp_empty();
}

#[tokio::test]
async fn cache_persists_between_builds_but_not_from_failed_ones() {
    let h = Harness::new().await;
    let bp = buildpack(
        &h.dir("bp"),
        &[
            ("detect", "echo Cachey"),
            (
                "compile",
                r#"if [ -f "$2/stamp" ]; then echo "       cache hit: $(cat "$2/stamp")"; else echo "       cache miss"; fi
echo "$(cat "$3/ROUND")" > "$2/stamp"
if [ -f "$3/FAIL" ]; then echo "       failing on purpose"; exit 7; fi"#,
            ),
        ],
    );
    let tar = source_tar(&h.dir("app"), &[("Procfile", "web: x\n", 0o644)]);
    let build = |round: &str, fail: bool| {
        let mut req = request("cached", &[&bp]);
        req.config.insert("ROUND".into(), round.into());
        if fail {
            req.config.insert("FAIL".into(), "1".into());
        }
        req
    };

    let (r1, l1) = h.build(build("one", false), &tar).await;
    r1.unwrap();
    assert!(
        l1.contains(&"       cache miss".to_string()),
        "{}",
        joined(&l1)
    );

    let (r2, l2) = h.build(build("two", false), &tar).await;
    r2.unwrap();
    assert!(
        l2.contains(&"       cache hit: one".to_string()),
        "{}",
        joined(&l2)
    );

    let (r3, l3) = h.build(build("three", true), &tar).await;
    match r3 {
        Err(BuildError::CompileFailed { status, name, .. }) => {
            assert_eq!(status.code(), Some(7));
            assert_eq!(name, "Cachey");
        }
        other => panic!("expected CompileFailed, got {other:?}"),
    }
    assert!(
        l3.contains(&"       cache hit: two".to_string()),
        "{}",
        joined(&l3)
    );
    h.assert_tmp_empty();

    // The failed build's writes to the cache were discarded.
    let (r4, l4) = h.build(build("four", false), &tar).await;
    r4.unwrap();
    assert!(
        l4.contains(&"       cache hit: two".to_string()),
        "{}",
        joined(&l4)
    );

    // Another app never sees this app's cache; a purge empties it.
    let mut other = build("other", false);
    other.app_id = "other-app".into();
    let (r5, l5) = h.build(other, &tar).await;
    r5.unwrap();
    assert!(
        l5.contains(&"       cache miss".to_string()),
        "{}",
        joined(&l5)
    );
    h.builder.purge_cache("cached").await.unwrap();
    let (r6, l6) = h.build(build("six", false), &tar).await;
    r6.unwrap();
    assert!(
        l6.contains(&"       cache miss".to_string()),
        "{}",
        joined(&l6)
    );
}

#[tokio::test]
async fn malformed_procfile_fails_the_build() {
    let h = Harness::new().await;
    let tar = source_tar(
        &h.dir("app"),
        &[("Procfile", "web: ok\nworker:python w.py\n", 0o644)],
    );
    let (result, lines) = h.build(request("badproc", &[]), &tar).await;
    match result {
        Err(BuildError::InvalidProcfile(msg)) => assert!(msg.contains("line 2"), "{msg}"),
        other => panic!(
            "expected InvalidProcfile, got {other:?}\n{}",
            joined(&lines)
        ),
    }
    h.assert_tmp_empty();
}

#[tokio::test]
async fn git_url_buildpack_at_a_ref() {
    let h = Harness::new().await;
    let repo = h.dir("bp-repo");
    buildpack(
        &repo,
        &[
            ("detect", "echo Tagged"),
            ("compile", "echo v1 > \"$1/version.txt\""),
        ],
    );
    common::git(&repo, &["init", "-q"]);
    common::git(&repo, &["add", "-A"]);
    common::git(&repo, &["commit", "-q", "-m", "v1"]);
    common::git(&repo, &["tag", "v1"]);
    buildpack(&repo, &[("compile", "echo v2 > \"$1/version.txt\"")]);
    common::git(&repo, &["commit", "-q", "-am", "v2"]);

    let tar = source_tar(&h.dir("app"), &[("Procfile", "web: x\n", 0o644)]);
    let url = format!("file://{}", repo.display());
    for (reference, expected) in [(format!("{url}#v1"), "v1\n"), (url.clone(), "v2\n")] {
        let (result, lines) = h.build(request("gitbp", &[&reference]), &tar).await;
        let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
        assert_eq!(slug.buildpack_description, "Tagged");
        let unpacked = h.unpack(&slug.sha256).await;
        assert_eq!(
            std::fs::read_to_string(unpacked.join("version.txt")).unwrap(),
            expected
        );
    }

    let (result, _) = h
        .build(request("gitbp", &[&format!("{url}#nope")]), &tar)
        .await;
    assert!(
        matches!(result, Err(BuildError::BuildpackFetch(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn slugignore_matches_are_gone_before_compile() {
    let h = Harness::new().await;
    let bp = buildpack(
        &h.dir("bp"),
        &[
            ("detect", "echo Lister"),
            (
                "compile",
                "cd \"$1\" && find . -name '*.psd' -o -name docs | sort > seen.txt",
            ),
        ],
    );
    let tar = source_tar(
        &h.dir("app"),
        &[
            (".slugignore", "*.psd\n/docs\n", 0o644),
            ("Procfile", "web: x\n", 0o644),
            ("art/logo.psd", "big", 0o644),
            ("docs/guide.md", "doc", 0o644),
            ("src/docs/keep.md", "keep", 0o644),
        ],
    );
    let (result, lines) = h.build(request("ignore", &[&bp]), &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    assert!(
        lines.contains(&"-----> Deleting 2 files matching .slugignore patterns.".to_string()),
        "{}",
        joined(&lines)
    );
    let unpacked = h.unpack(&slug.sha256).await;
    assert_eq!(
        std::fs::read_to_string(unpacked.join("seen.txt")).unwrap(),
        "./src/docs\n"
    );
    assert!(!unpacked.join("art/logo.psd").exists());
    assert!(unpacked.join("src/docs/keep.md").exists());
}

/// A `.slugignore` that is a symlink is not followed (it could name any file on the server):
/// the build says so and deletes nothing.
#[tokio::test]
async fn a_slugignore_symlink_is_not_followed() {
    let h = Harness::new().await;
    let bp = buildpack(
        &h.dir("bp"),
        &[("detect", "echo Plain"), ("compile", "true")],
    );
    let outside = h.dir("host").join("patterns");
    std::fs::write(&outside, "*.psd\n").unwrap();
    let app = h.dir("app");
    write_files(
        &app,
        &[
            ("Procfile", "web: x\n", 0o644),
            ("art/logo.psd", "big", 0o644),
        ],
    );
    std::os::unix::fs::symlink(&outside, app.join(".slugignore")).unwrap();
    common::git(&app, &["init", "-q"]);
    common::git(&app, &["add", "-A"]);
    common::git(&app, &["commit", "-q", "-m", "test"]);
    let tar = common::git(&app, &["archive", "--format=tar", "HEAD"]);
    let (result, lines) = h.build(request("linked", &[&bp]), &tar).await;
    let slug = result.unwrap_or_else(|e| panic!("{e}\n{}", joined(&lines)));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(".slugignore is not a regular file")),
        "{}",
        joined(&lines)
    );
    assert!(h.unpack(&slug.sha256).await.join("art/logo.psd").exists());
}

#[tokio::test]
async fn compile_past_the_timeout_is_killed_with_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let store = slipway_build::SlugStore::local(tmp.path().join("slugs")).unwrap();
    let builder = Builder::new(tmp.path().join("builder"), store)
        .await
        .unwrap()
        .with_local_buildpacks(&[tmp.path().to_path_buf()])
        .with_compile_timeout(Duration::from_secs(2));
    let marker = tmp.path().join("child-survived");
    let bp_dir = tmp.path().join("bp");
    let bp = buildpack(
        &bp_dir,
        &[
            ("detect", "echo Slow"),
            (
                "compile",
                &format!(
                    "echo '       starting'\n(sleep 4; touch '{}') &\nsleep 60",
                    marker.display()
                ),
            ),
        ],
    );
    let app = tmp.path().join("app");
    let tar = source_tar(&app, &[("Procfile", "web: x\n", 0o644)]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let result = builder.build(request("slow", &[&bp]), &tar[..], tx).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    match result {
        Err(BuildError::CompileTimeout { name, .. }) => assert_eq!(name, "Slow"),
        other => panic!("expected CompileTimeout, got {other:?}"),
    }
    let mut lines = Vec::new();
    while let Ok(line) = rx.try_recv() {
        lines.push(line);
    }
    assert!(lines.contains(&"       starting".to_string()), "{lines:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !marker.exists(),
        "a process started by bin/compile outlived the timeout"
    );
}

#[tokio::test]
async fn invalid_references_and_app_ids_are_refused() {
    let h = Harness::new().await;
    let tar = source_tar(&h.dir("app"), &[("Procfile", "web: x\n", 0o644)]);
    let (result, _) = h.build(request("refs", &["ruby"]), &tar).await;
    assert!(
        matches!(result, Err(BuildError::UnknownBuildpack(_))),
        "{result:?}"
    );
    let missing = h.tmp.path().join("does-not-exist");
    let (result, _) = h
        .build(request("refs", &[missing.to_str().unwrap()]), &tar)
        .await;
    assert!(
        matches!(result, Err(BuildError::BuildpackFetch(_))),
        "{result:?}"
    );
    let (result, _) = h.build(request("refs", &["/does/not/exist"]), &tar).await;
    assert!(
        matches!(result, Err(BuildError::InvalidBuildpack { .. })),
        "{result:?}"
    );
    let incomplete = h.dir("incomplete");
    buildpack(&incomplete, &[("detect", "echo X")]);
    let (result, _) = h
        .build(request("refs", &[incomplete.to_str().unwrap()]), &tar)
        .await;
    assert!(
        matches!(result, Err(BuildError::InvalidBuildpack { .. })),
        "{result:?}"
    );
    let (result, _) = h.build(request("../escape", &[]), &tar).await;
    assert!(
        matches!(result, Err(BuildError::InvalidAppId(_))),
        "{result:?}"
    );
    h.assert_tmp_empty();
}
