//! Accounts and collaborators through the `slipway` CLI: the admin adds an account, the owner
//! makes it a collaborator, who may use the app but not destroy it or manage its access, and
//! loses it when removed.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn collaborators_use_the_app_until_removed() {
    let s = TestServer::start_with(&["--runtime", "host"]);
    let dir = s.home().join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "shared"]);

    let added: serde_json::Value =
        serde_json::from_str(&s.ok(&dir, &["accounts:add", "Bob@Example.test", "--json"])).unwrap();
    assert_eq!(added["email"], "bob@example.test");
    let bob_key = added["api_key"].as_str().unwrap().to_string();
    let bob = |args: &[&str]| s.cli_env(&dir, args, &[("SLIPWAY_API_KEY", bob_key.as_str())]);
    let out = s.cli(&dir, &["accounts:add", "not-an-email"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not an email address"),
        "{}",
        text(&out.stderr)
    );
    let listed = s.ok(&dir, &["accounts"]);
    assert!(listed.contains("bob@example.test"), "{listed}");

    // Not yet a collaborator: the app is not there for Bob.
    let out = bob(&["config", "-a", "shared"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Couldn't find that app"),
        "{}",
        text(&out.stderr)
    );
    // Nor may Bob add accounts.
    let out = bob(&["accounts:add", "eve@example.test"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("admin"), "{}", text(&out.stderr));

    let out = s.ok(&dir, &["access:add", "bob@example.test", "-a", "shared"]);
    assert!(
        out.contains("Adding bob@example.test access to the app shared... done"),
        "{out}"
    );
    let out = s.cli(&dir, &["access:add", "nobody@example.test", "-a", "shared"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("accounts:add"),
        "{}",
        text(&out.stderr)
    );
    let access = s.ok(&dir, &["access", "-a", "shared"]);
    assert!(
        access
            .lines()
            .any(|l| l.contains("owner@slipway.local") && l.contains("owner"))
            && access
                .lines()
                .any(|l| l.contains("bob@example.test") && l.contains("collaborator")),
        "{access}"
    );

    // Bob uses the app, sees it among his apps, and may not destroy it or change its access.
    let out = bob(&["config:set", "FROM=bob", "-a", "shared"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s
        .ok(&dir, &["config:get", "FROM", "-a", "shared"])
        .contains("bob"));
    assert!(text(&bob(&["apps"]).stdout).contains("shared"));
    let out = bob(&["apps:destroy", "shared", "--confirm", "shared"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Only shared's owner"),
        "{}",
        text(&out.stderr)
    );
    let out = bob(&["access:add", "owner@slipway.local", "-a", "shared"]);
    assert!(!out.status.success());

    // Removed, the app is gone for Bob again.
    let out = s.ok(&dir, &["access:remove", "bob@example.test", "-a", "shared"]);
    assert!(out.contains("done"), "{out}");
    let out = bob(&["config", "-a", "shared"]);
    assert!(!out.status.success());
    assert!(!s.ok(&dir, &["access", "-a", "shared"]).contains("bob@"));
}
