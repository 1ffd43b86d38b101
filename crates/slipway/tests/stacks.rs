//! `slipway stacks:install debian-12` builds a Debian stack with debootstrap, and an app set to it
//! builds and runs there. Slow (minutes, downloads from the Debian mirror), so it runs only when
//! SLIPWAY_TEST_DEBOOTSTRAP=1 (and as root); it prints SKIPPED otherwise.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_app_runs_on_an_installed_debian_stack() {
    if std::env::var_os("SLIPWAY_TEST_DEBOOTSTRAP").is_none() || !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: set SLIPWAY_TEST_DEBOOTSTRAP=1 and run as root to build a Debian stack");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(BIN)
        .args(["stacks:install", "debian-12", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(data
        .join("stacks/debian-12/rootfs/etc/slipway-stack")
        .exists());

    let s = TestServer::start_in(dir, &[]);
    let out = s.ok(s.dir.path(), &["stacks"]);
    assert!(out.contains("debian-12"), "{out}");
    let app = s.home().join("on-debian");
    let app_py = "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n\
class H(BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = open('/etc/slipway-stack').read().encode()\n        \
self.send_response(200)\n        self.send_header('Content-Length', str(len(b)))\n        self.end_headers()\n        self.wfile.write(b)\n\
HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n";
    s.repo(
        &app,
        &[
            ("requirements.txt", "# none\n"),
            ("Procfile", "web: python3 app.py\n"),
            ("app.py", app_py),
        ],
    );
    s.ok(&app, &["apps:create", "on-debian"]);
    let out = s.ok(&app, &["stack:set", "debian-12"]);
    assert!(out.contains("redeploy"), "{out}");
    let out = s.git(&app, &["push", "slipway", "main"]);
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{output}");
    assert!(
        output.contains("Building on the debian-12 stack"),
        "{output}"
    );
    let client = s.router_client("on-debian");
    eventually(60, "the app serves from the debian-12 stack", || async {
        let r = client.get(s.app_url("on-debian", "/")).send().await.ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()?.starts_with("debian-12 ").then_some(())
    })
    .await;
}
