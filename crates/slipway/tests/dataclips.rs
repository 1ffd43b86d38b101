//! Dataclips through `slipway server` on real PostgreSQL clusters: the CLI makes, runs, shares,
//! rotates and revokes them; the secret link serves an HTML table, plain CSV and JSON to whom it
//! is shared with; queries run on the follower, read only, within their row and time limits; the
//! attacks of a read-only SQL box are refused; the link is rate limited per client address.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn config(s: &TestServer, dir: &Path, app: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(dir, &["config", "--json", "-a", app])).expect("config json")
}

fn host_psql(url: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([url, "-X", "-tAc", sql])
        .output()
        .expect("psql")
}

fn value(url: &str, sql: &str) -> String {
    let out = host_psql(url, sql);
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// The secret link a `dataclips:create` or `dataclips:rotate` printed.
fn link_in(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.contains("/dataclips/") && !w.ends_with(".csv") && !w.ends_with(".json"))
        .unwrap_or_else(|| panic!("no link in: {out}"))
        .to_string()
}

/// A client that never follows redirects, from a chosen local address.
fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<std::net::IpAddr>().ok())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A request to a link, from an address of its own (the CLI's runs come from 127.0.0.1, and the
/// limit per address is tested on others).
async fn fetch(url: &str, key: Option<&str>) -> (u16, String, String) {
    let mut req = client("127.0.0.2").get(url);
    if let Some(k) = key {
        req = req.basic_auth("", Some(k));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ctype, resp.text().await.unwrap())
}

fn owner_key(s: &TestServer) -> String {
    std::fs::read_to_string(s.data_dir().join("owner.api-key"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn dataclips_share_results_by_link_and_read_only() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start_with(&[
        "--dataclip-statement-timeout",
        "2s",
        "--dataclip-timeout",
        "4s",
    ]);
    let dir = s.home().join("clips");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "clips"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--name",
            "clips-db",
            "-a",
            "clips",
        ],
    );
    let url = config(&s, &dir, "clips")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    value(
        &url,
        "CREATE TABLE users (id serial PRIMARY KEY, email text, note text); \
         INSERT INTO users (email, note) VALUES ('ann@example.com', 'likes, \"quotes\"'), \
         ('bo@example.com', NULL), ('cy@example.com', '<script>alert(1)</script>'); \
         CREATE SEQUENCE s1; SELECT 1",
    );

    // Made from the CLI; the link is shown once.
    let out = s.ok(
        &dir,
        &[
            "dataclips:create",
            "Active users",
            "--sql",
            "SELECT id, email, note FROM users ORDER BY id -- newest last",
            "-a",
            "clips",
        ],
    );
    assert!(out.contains("Creating dataclip Active users"), "{out}");
    let link = link_in(&out);
    let token = link.rsplit('/').next().unwrap().to_string();
    assert!(token.len() >= 43, "a 256-bit token: {token}");
    // The database and its write-ahead log, where a fresh row is until a checkpoint (the log
    // first: a checkpoint in between moves rows from it into the database, not back).
    let mut stored = Vec::new();
    for file in ["state.db-wal", "state.db"] {
        stored.extend(std::fs::read(s.data_dir().join(file)).unwrap_or_default());
    }
    assert!(
        String::from_utf8_lossy(&stored).contains("Active users"),
        "the clip is in the files read"
    );
    assert!(
        !String::from_utf8_lossy(&stored).contains(&token),
        "only the token's hash is stored"
    );
    let listed = s.ok(&dir, &["dataclips", "-a", "clips"]);
    assert!(listed.contains("Active users"), "{listed}");

    // Not shared with anyone yet: the link asks who you are, and the owner may read it.
    let (status, _, _) = fetch(&format!("{link}.csv"), None).await;
    assert_eq!(status, 401);
    let owner = owner_key(&s);
    let (status, ctype, csv) = fetch(&format!("{link}.csv"), Some(&owner)).await;
    assert_eq!(status, 200, "{csv}");
    assert!(ctype.starts_with("text/csv"), "{ctype}");
    assert_eq!(
        csv,
        "id,email,note\r\n1,ann@example.com,\"likes, \"\"quotes\"\"\"\r\n2,bo@example.com,\r\n\
         3,cy@example.com,<script>alert(1)</script>\r\n"
    );

    // Shared with everyone holding the link: plain CSV with no credentials and no redirect, as
    // a spreadsheet's IMPORTDATA fetches it; JSON; and an HTML table with values escaped.
    s.ok(
        &dir,
        &[
            "dataclips:share",
            "Active users",
            "--everyone",
            "-a",
            "clips",
        ],
    );
    let (status, _, csv2) = fetch(&format!("{link}.csv"), None).await;
    assert_eq!((status, csv2.as_str()), (200, csv.as_str()));
    let (status, ctype, json) = fetch(&format!("{link}.json"), None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["fields"], serde_json::json!(["id", "email", "note"]));
    assert_eq!(
        json["values"][1],
        serde_json::json!(["2", "bo@example.com", null])
    );
    assert_eq!(json["truncated"], false);
    let (status, ctype, html) = fetch(&link, None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        html.contains("<table>") && html.contains("Active users"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"),
        "{html}"
    );

    // Shared with chosen users instead.
    let added = s.ok(&dir, &["accounts:add", "bob@example.com", "--json"]);
    let bob: serde_json::Value = serde_json::from_str(&added).unwrap();
    let bob_key = bob["api_key"].as_str().unwrap().to_string();
    s.ok(
        &dir,
        &[
            "dataclips:unshare",
            "Active users",
            "--everyone",
            "-a",
            "clips",
        ],
    );
    assert_eq!(fetch(&format!("{link}.csv"), None).await.0, 401);
    assert_eq!(fetch(&format!("{link}.csv"), Some(&bob_key)).await.0, 403);
    s.ok(
        &dir,
        &[
            "dataclips:share",
            "Active users",
            "--user",
            "bob@example.com",
            "-a",
            "clips",
        ],
    );
    let (status, _, bobs) = fetch(&format!("{link}.csv"), Some(&bob_key)).await;
    assert_eq!((status, bobs.as_str()), (200, csv.as_str()));
    let shared: serde_json::Value = s
        .http()
        .get(format!("{}/dataclips", s.api_url()))
        .bearer_auth(&bob_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shared[0]["title"], "Active users", "{shared}");
    // Bob reads what is shared with him, and nothing else of the app.
    let bobs_view = s
        .http()
        .get(format!("{}/apps/clips/dataclips", s.api_url()))
        .bearer_auth(&bob_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bobs_view.status().as_u16(), 404);
    let info = s.ok(&dir, &["dataclips:info", "Active users", "-a", "clips"]);
    assert!(info.contains("bob@example.com"), "{info}");
    let table = s.ok(&dir, &["dataclips:run", "Active users", "-a", "clips"]);
    assert!(
        table.contains("cy@example.com") && table.contains("(3 rows)"),
        "{table}"
    );

    // Rotating the link ends the old one at once; revoking ends every one.
    let out = s.ok(&dir, &["dataclips:rotate", "Active users", "-a", "clips"]);
    let new_link = link_in(&out);
    assert_ne!(new_link, link);
    assert_eq!(fetch(&format!("{link}.csv"), Some(&owner)).await.0, 404);
    assert_eq!(fetch(&format!("{new_link}.csv"), Some(&owner)).await.0, 200);
    s.ok(&dir, &["dataclips:revoke", "Active users", "-a", "clips"]);
    assert_eq!(fetch(&format!("{new_link}.csv"), Some(&owner)).await.0, 404);
    assert_eq!(fetch(&new_link, Some(&owner)).await.0, 404);

    // At most 100,000 rows, and the result says it was cut.
    s.ok(
        &dir,
        &[
            "dataclips:create",
            "Many",
            "--sql",
            "SELECT n FROM generate_series(1, 100001) AS n",
            "-a",
            "clips",
        ],
    );
    let many: serde_json::Value =
        serde_json::from_str(&s.ok(&dir, &["dataclips:run", "Many", "--json", "-a", "clips"]))
            .unwrap();
    assert_eq!(many["row_count"], 100_000);
    assert_eq!(many["values"].as_array().unwrap().len(), 100_000);
    assert_eq!(many["values"][99_999][0], "100000");
    assert_eq!(many["truncated"], true);
    // And at most 32 MB of values: wide rows are cut short the same way.
    s.ok(
        &dir,
        &[
            "dataclips:create",
            "Wide",
            "--sql",
            "SELECT repeat('x', 1000000) AS w FROM generate_series(1, 100)",
            "-a",
            "clips",
        ],
    );
    let wide: serde_json::Value =
        serde_json::from_str(&s.ok(&dir, &["dataclips:run", "Wide", "--json", "-a", "clips"]))
            .unwrap();
    assert_eq!(wide["truncated"], true);
    let rows = wide["row_count"].as_u64().unwrap();
    assert!((30..=34).contains(&rows), "{rows} rows of 1 MB");

    // A statement past its timeout is canceled; so is a run past the wall clock, even when
    // each of its statements is quick, and the server stops working on it.
    s.ok(
        &dir,
        &[
            "dataclips:create",
            "Slow",
            "--sql",
            "SELECT pg_sleep(10)",
            "-a",
            "clips",
        ],
    );
    let started = Instant::now();
    let out = s.cli(&dir, &["dataclips:run", "Slow", "-a", "clips"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("canceled"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    s.ok(
        &dir,
        &[
            "dataclips:create",
            "Slow rows",
            "--sql",
            "SELECT i, set_config('statement_timeout', '0', true), \
             pg_sleep(CASE WHEN i > 5000 THEN 0.001 ELSE 0 END) \
             FROM generate_series(1, 100000) AS i",
            "-a",
            "clips",
        ],
    );
    let started = Instant::now();
    let out = s.cli(&dir, &["dataclips:run", "Slow rows", "-a", "clips"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("at most 4 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(9));
    eventually(10, "the canceled query stops on the server", || async {
        (value(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'slipway dataclip' \
             AND state = 'active'",
        ) == "0")
            .then_some(())
    })
    .await;

    // The attacks of a read-only SQL box. Each is refused when made or when run.
    let app_user = url
        .trim_start_matches("postgres://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let mut sleeper = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([url.as_str(), "-X", "-c", "SELECT pg_sleep(60)"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(20, "the app's session is open", || async {
        (value(
            &url,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{app_user}' \
                 AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()"
            ),
        ) == "1")
            .then_some(())
    })
    .await;
    let attacks = [
        "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
        "SELECT nextval('s1')",
        "SELECT set_config('transaction_read_only', 'off', true), email FROM users",
        "SELECT * FROM users FOR UPDATE",
        "CREATE TEMP TABLE t AS SELECT 1",
        "SELECT pg_read_file('/etc/passwd')",
        "COPY users TO '/tmp/dataclip-copy'",
        "EXPLAIN ANALYZE DELETE FROM users",
        "SELECT 1; DELETE FROM users",
        "SELECT 1; COMMIT; DELETE FROM users",
        "DELETE FROM users",
        "SELECT rolname, rolpassword FROM pg_authid",
        "SELECT * FROM slipway_admin.pg_stat_statements",
        "SELECT lo_import('/etc/passwd')",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{app_user}'"
        ),
    ];
    for (i, sql) in attacks.iter().enumerate() {
        let title = format!("attack {i}");
        let made = s.cli(
            &dir,
            &["dataclips:create", &title, "--sql", sql, "-a", "clips"],
        );
        if made.status.success() {
            let out = s.cli(&dir, &["dataclips:run", &title, "-a", "clips"]);
            assert!(!out.status.success(), "{sql} ran: {}", text(&out.stdout));
            let err = text(&out.stderr);
            assert!(err.lines().count() <= 2 && !err.is_empty(), "{sql}: {err}");
        } else {
            let err = text(&made.stderr);
            assert!(
                err.contains("single query") || err.contains("ERROR") || err.contains("is a query"),
                "{sql}: {err}"
            );
        }
    }
    assert_eq!(value(&url, "SELECT count(*) FROM users"), "3");
    assert_eq!(value(&url, "SELECT is_called FROM s1"), "f");
    assert!(!Path::new("/tmp/dataclip-copy").exists());
    assert_eq!(
        sleeper.try_wait().unwrap(),
        None,
        "the app's session was not ended"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // Its role holds SELECT and nothing else, whatever transaction it is in.
    assert_eq!(
        value(
            &url,
            &format!(
                "SELECT string_agg(DISTINCT privilege_type, ',') FROM \
                 information_schema.role_table_grants WHERE table_name = 'users' \
                 AND grantee <> '{app_user}'"
            )
        ),
        "SELECT"
    );
    // A comment at the end does not swallow what Slipway adds after the query.
    let out = s.ok(
        &dir,
        &[
            "dataclips:create",
            "Count",
            "--sql",
            "SELECT count(*) AS n FROM users -- all of them",
            "-a",
            "clips",
        ],
    );
    let count_link = link_in(&out);
    let run = s.ok(&dir, &["dataclips:run", "Count", "--csv", "-a", "clips"]);
    assert_eq!(run.replace("\r\n", "\n").trim(), "n\n3");
    // Updated; a query that does not parse is refused and the old one kept.
    s.ok(
        &dir,
        &[
            "dataclips:update",
            "Count",
            "--sql",
            "SELECT count(*) AS n FROM users WHERE id > 1",
            "-a",
            "clips",
        ],
    );
    let bad = s.cli(
        &dir,
        &[
            "dataclips:update",
            "Count",
            "--sql",
            "SELEC nothing",
            "-a",
            "clips",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("syntax error"),
        "{}",
        text(&bad.stderr)
    );
    let run = s.ok(&dir, &["dataclips:run", "Count", "--csv", "-a", "clips"]);
    assert_eq!(run.replace("\r\n", "\n").trim(), "n\n2");

    // With a follower, clips run there.
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql:standard-0",
            "--follow",
            "DATABASE_URL",
            "--name",
            "clips-follower",
            "-a",
            "clips",
        ],
    );
    let ran: serde_json::Value = eventually(60, "the clip runs on the follower", || async {
        let out = s.cli(&dir, &["dataclips:run", "Count", "--json", "-a", "clips"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["source"] == "clips-follower").then_some(v)
    })
    .await;
    assert_eq!(ran["values"][0][0], "2");

    // Secrets never reach the app's log.
    let logs = s.logs("clips");
    assert!(logs.contains("Dataclip Active users created"), "{logs}");
    assert!(!logs.contains(&token), "{logs}");

    // Destroying a clip ends its link.
    s.ok(
        &dir,
        &["dataclips:share", "Count", "--everyone", "-a", "clips"],
    );
    assert_eq!(fetch(&format!("{count_link}.csv"), None).await.0, 200);
    s.ok(
        &dir,
        &[
            "dataclips:destroy",
            "Count",
            "--confirm",
            "clips",
            "-a",
            "clips",
        ],
    );
    assert_eq!(fetch(&format!("{count_link}.csv"), None).await.0, 404);

    // 30 requests a minute from one address, guesses included; other addresses are not held up.
    s.ok(
        &dir,
        &["dataclips:share", "Many", "--everyone", "-a", "clips"],
    );
    let out = s.ok(&dir, &["dataclips:rotate", "Many", "-a", "clips"]);
    let many_link = link_in(&out);
    let mut limited = None;
    for i in 0..31 {
        let resp = client("127.0.0.3")
            .get(format!("{}/dataclips/not-a-token-{i}.csv", s.api_url()))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status().as_u16(), 404);
    }
    let limited = limited.expect("no 429 within 31 requests");
    assert!(limited.headers().get("retry-after").is_some());
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["id"], "rate_limit", "{body}");
    let resp = client("127.0.0.3")
        .get(format!("{many_link}.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let resp = client("127.0.0.4")
        .get(format!("{many_link}.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// Dataclips and add-on changes follow what an app may use: a collaborator of an app that has
/// another app's database attached may read it through clips, but not change the database or
/// share it on; detached, the database is out of the clips' reach; removed, the collaborator
/// loses the clips shared with it.
#[tokio::test(flavor = "multi_thread")]
async fn clips_and_add_on_changes_follow_what_an_app_may_use() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: add-on servers run as their services' users; needs root");
        return;
    }
    let s = TestServer::start();
    let dir = s.home().join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "shop"]);
    s.ok(&dir, &["apps:create", "vault"]);
    s.ok(
        &dir,
        &[
            "addons:create",
            "heroku-postgresql",
            "--name",
            "vault-db",
            "-a",
            "vault",
        ],
    );
    s.ok(
        &dir,
        &["addons:attach", "vault-db", "--as", "VAULT", "-a", "shop"],
    );
    let added: serde_json::Value =
        serde_json::from_str(&s.ok(&dir, &["accounts:add", "bob@example.test", "--json"])).unwrap();
    let bob_key = added["api_key"].as_str().unwrap().to_string();
    let bob = |args: &[&str]| s.cli_env(&dir, args, &[("SLIPWAY_API_KEY", bob_key.as_str())]);
    s.ok(&dir, &["access:add", "bob@example.test", "-a", "shop"]);

    // Bob reads the attached database through a clip, and shares it with himself.
    let out = bob(&[
        "dataclips:create",
        "Vault",
        "--sql",
        "SELECT 42 AS answer",
        "--database",
        "VAULT",
        "-a",
        "shop",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bob(&["dataclips:run", "Vault", "--csv", "-a", "shop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).replace("\r\n", "\n").trim(), "answer\n42");
    let out = bob(&[
        "dataclips:share",
        "Vault",
        "--user",
        "bob@example.test",
        "-a",
        "shop",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // But the database is vault's: Bob may not change it or attach it to his own app.
    let out = bob(&[
        "pg:credentials:rotate",
        "VAULT",
        "--confirm",
        "shop",
        "-a",
        "shop",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("belongs to vault"),
        "{}",
        text(&out.stderr)
    );
    let out = bob(&["apps:create", "bobs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bob(&["addons:attach", "vault-db", "-a", "bobs"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("belongs to vault"),
        "{}",
        text(&out.stderr)
    );

    // Nor replace its contents with a backup taken through his app.
    let out = bob(&["pg:backups:capture", "VAULT", "-a", "shop"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = bob(&[
        "pg:backups:restore",
        "b001",
        "VAULT",
        "--confirm",
        "shop",
        "-a",
        "shop",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("belongs to vault"),
        "{}",
        text(&out.stderr)
    );

    // Detached from shop, the database is out of the clip's reach.
    s.ok(&dir, &["addons:detach", "VAULT", "-a", "shop"]);
    let out = s.cli(&dir, &["dataclips:run", "Vault", "-a", "shop"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no longer attached"),
        "{}",
        text(&out.stderr)
    );

    // Removed from shop, Bob loses the clips shared with him there.
    let shared = |key: &str| {
        let key = key.to_string();
        let url = format!("{}/dataclips", s.api_url());
        let http = s.http();
        async move {
            let v: serde_json::Value = http
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v.as_array().unwrap().len()
        }
    };
    assert_eq!(shared(&bob_key).await, 1);
    s.ok(&dir, &["access:remove", "bob@example.test", "-a", "shop"]);
    assert_eq!(shared(&bob_key).await, 0);
}
