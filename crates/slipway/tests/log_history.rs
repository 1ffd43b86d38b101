//! The log history kept on disk: `logs --since/--until/--grep`, and lines that outlive a restart
//! of the server.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn history_is_searchable_and_survives_a_restart() {
    let s = TestServer::start();
    let dir = s.home().join("hist");
    std::fs::create_dir_all(&dir).unwrap();
    s.ok(&dir, &["apps:create", "hist"]);
    for i in 1..=3 {
        s.ok(
            &dir,
            &["config:set", &format!("STEP=value{i}"), "-a", "hist"],
        );
    }
    let all = eventually(10, "the releases in the history", || async {
        let out = s.ok(&dir, &["logs", "--since", "1h", "-a", "hist"]);
        (out.matches("Release v").count() >= 4).then_some(out)
    })
    .await;
    assert!(all.contains("heroku[api]: Release v1 created by"), "{all}");

    // --grep finds one line among them.
    let found = s.ok(&dir, &["logs", "--grep", "Release v3 ", "-a", "hist"]);
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines.len(), 1, "{found}");
    assert!(
        lines[0].contains("heroku[api]: Release v3 created by"),
        "{found}"
    );
    // --until an hour ago: nothing yet.
    let none = s.ok(&dir, &["logs", "--until", "1h", "-a", "hist"]);
    assert_eq!(none.trim(), "", "{none}");
    // --source and -n apply too.
    let newest = s.ok(
        &dir,
        &[
            "logs", "--since", "1h", "--source", "heroku", "-n", "1", "-a", "hist",
        ],
    );
    assert_eq!(newest.lines().count(), 1, "{newest}");

    // Bad input: one clear line and a failure.
    let out = s.cli(&dir, &["logs", "--since", "yesterday-ish", "-a", "hist"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("Invalid time \"yesterday-ish\""), "{err}");
    let out = s.cli(&dir, &["logs", "--until", "5m", "--tail", "-a", "hist"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot go together"),
        "{}",
        text(&out.stderr)
    );

    // How much is kept, per app.
    let shown = s.ok(&dir, &["logs:retention", "-a", "hist"]);
    assert!(
        shown.contains("Size: 100 MB")
            && shown.contains("Age:  7 days")
            && shown.contains("(the defaults)"),
        "{shown}"
    );
    let set = s.ok(
        &dir,
        &[
            "logs:retention:set",
            "--size",
            "50",
            "--age",
            "3",
            "-a",
            "hist",
        ],
    );
    assert!(
        set.contains("Size: 50 MB") && set.contains("Age:  3 days"),
        "{set}"
    );
    let out = s.cli(&dir, &["logs:retention:set", "--size", "0", "-a", "hist"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("max_size_mb must be a whole number from 1 to 100000"),
        "{}",
        text(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&dir, &["logs:retention", "--json", "-a", "hist"])).unwrap();
    assert_eq!(json["max_size_mb"], 50);
    assert_eq!(json["max_age_days"], 3);
    assert_eq!(json["default"], false);

    // The server goes away hard and comes back: the history is still there.
    let mut s = s;
    s.kill_hard();
    let s = s.restart_after_kill();
    let again = s.ok(&dir, &["logs", "--grep", "Release v2 ", "-a", "hist"]);
    // The recent lines too, as `logs -n` shows them, and a tail's ids go on from them.
    let recent = s.ok(&dir, &["logs", "-n", "1500", "-a", "hist"]);
    assert!(
        recent.contains("heroku[api]: Release v1 created by")
            && recent.contains("heroku[api]: Release v3 created by"),
        "{recent}"
    );
    let kept = s.ok(&dir, &["logs:retention", "-a", "hist"]);
    assert!(kept.contains("Size: 50 MB"), "{kept}");
    s.ok(&dir, &["logs:retention:set", "--default", "-a", "hist"]);
    assert!(
        again.contains("heroku[api]: Release v2 created by"),
        "{again}"
    );
    // Destroying the app removes its history.
    s.ok(&dir, &["apps:destroy", "--confirm", "hist", "-a", "hist"]);
    let logs_dir = s.data_dir().join("logs");
    eventually(10, "the app's history is removed", || async {
        let left = std::fs::read_dir(&logs_dir).map(|d| d.count()).unwrap_or(0);
        (left == 0).then_some(())
    })
    .await;
}

/// A tail that does not keep up is told, in-band, how many lines it lost; the history on disk
/// still has them all.
#[tokio::test(flavor = "multi_thread")]
async fn a_tail_that_falls_behind_is_told_what_it_lost() {
    let s = TestServer::start();
    let dir = s.home().join("flood");
    s.repo(
        &dir,
        &[
            ("Procfile", "worker: python3 flood.py\n"),
            (
                "flood.py",
                "import sys, time\nfor i in range(300000):\n    sys.stdout.write('flood line %d\\n' % i)\nsys.stdout.flush()\nwhile True:\n    time.sleep(1)\n    print('flood done', flush=True)\n",
            ),
        ],
    );
    s.ok(&dir, &["apps:create", "flood"]);
    let out = s.git(&dir, &["push", "slipway", "main"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A tail that reads nothing for a while.
    let session: serde_json::Value = s
        .http()
        .post(format!("{}/apps/flood/log-sessions", s.api_url()))
        .bearer_auth(&s.key)
        .json(&serde_json::json!({"tail": true, "lines": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = session["logplex_url"].as_str().unwrap().to_string();
    let mut resp = s.http().get(&url).send().await.unwrap();
    s.ok(&dir, &["ps:scale", "worker=1"]);
    // The worker prints its 300,000 lines while the tail sleeps, then `flood done` every
    // second (one of them reaches the history even if a loaded machine made it drop some).
    eventually(60, "the worker wrote everything", || async {
        let found = s.ok(&dir, &["logs", "--grep", "flood done"]);
        found.contains("flood done").then_some(())
    })
    .await;
    let mut seen = String::new();
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("flood done") {
                break;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "the tail caught up with the end");
    let report = seen
        .lines()
        .find(|l| l.contains("heroku[logplex]: Error L11 (Tail buffer overflow): "))
        .unwrap_or_else(|| panic!("no L11 line among {} lines", seen.lines().count()));
    assert!(report.ends_with("messages dropped."), "{report}");
    // The history on disk kept every line: the newest 100,000 are 200000 to 299999, in order.
    // Only a history that said it dropped lines (L12, which a starved writer may) is let off.
    let all = s.ok(&dir, &["logs", "--grep", "flood line", "-n", "100000"]);
    let dropped = s.ok(&dir, &["logs", "--grep", "Error L12"]);
    assert_eq!(
        all.lines().count(),
        100_000,
        "the newest 100,000 of 300,000"
    );
    if dropped.contains("Error L12") {
        println!("the history reported dropped lines: {dropped}");
    } else {
        let numbers: Vec<u32> = all
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            numbers.iter().copied().eq(200_000..300_000),
            "lines missing or out of order: first {:?}, last {:?}",
            numbers.first(),
            numbers.last()
        );
    }
}
