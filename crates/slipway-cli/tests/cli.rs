//! Runs CLI commands through `run_with` against a fake Platform API on 127.0.0.1:0 that records
//! every request and answers from a per-test function.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use slipway_cli::{run_with, Env, Input};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    accept: Option<String>,
    range: Option<String>,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// The fake server's answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    }
}

fn not_found() -> Reply {
    reply(
        404,
        json!({"id": "not_found", "message": "Couldn't find that app."}),
    )
}

type Handler = Arc<dyn Fn(&Seen, &str) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
    url: String,
}

struct FakeApi {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeApi {
    /// Starts the server; `handler` gets each request and the server's base URL.
    async fn start(handler: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static) -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            seen: seen.clone(),
            handler: Arc::new(handler),
            url: url.clone(),
        };
        let app = Router::new().fallback(serve).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(State(shared): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        authorization: header("authorization"),
        accept: header("accept"),
        range: header("range"),
        body: String::new(),
    };
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    seen.body = String::from_utf8_lossy(&bytes).into_owned();
    shared.seen.lock().unwrap().push(seen.clone());
    let r = (shared.handler)(&seen, &shared.url);
    let mut builder = Response::builder().status(StatusCode::from_u16(r.status).unwrap());
    for (k, v) in r.headers {
        builder = builder.header(k, v);
    }
    builder.body(Body::from(r.body)).unwrap()
}

const T: &str = "2026-11-26T06:00:00Z";

fn app_json(name: &str) -> Value {
    json!({
        "id": format!("id-{name}"), "name": name,
        "owner": {"id": "u1", "email": "owner@example.com"},
        "region": {"id": "r1", "name": "local"},
        "stack": {"id": "s1", "name": "heroku-24"},
        "build_stack": {"id": "s1", "name": "heroku-24"},
        "web_url": format!("http://{name}.localhost:8080/"),
        "git_url": format!("http://127.0.0.1:5050/{name}.git"),
        "created_at": T, "updated_at": T,
    })
}

fn release_json(version: i64, current: bool, description: &str) -> Value {
    json!({
        "id": format!("rel-{version}"), "version": version, "description": description,
        "status": "succeeded", "current": current, "eligible_for_rollback": true,
        "app": {"id": "id-demo", "name": "demo"},
        "user": {"id": "u1", "email": "owner@example.com"},
        "created_at": T, "updated_at": T,
    })
}

fn formation_json(ty: &str, quantity: u32, size: &str) -> Value {
    json!({
        "id": format!("f-{ty}"), "app": {"id": "id-demo", "name": "demo"}, "type": ty,
        "quantity": quantity, "size": size, "command": "npm start",
        "created_at": T, "updated_at": T,
    })
}

fn account_json() -> Value {
    json!({"id": "u1", "email": "owner@example.com", "created_at": T, "updated_at": T})
}

struct Out {
    code: i32,
    out: String,
    err: String,
}

async fn cli(env: &Env, args: &[&str]) -> Out {
    let mut argv: Vec<OsString> = vec!["slipway".into()];
    argv.extend(args.iter().map(OsString::from));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(argv, env, &mut out, &mut err).await;
    Out {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn env_for(api: &FakeApi, dir: &Path) -> Env {
    let mut env = Env::bare(dir, dir);
    env.api_url = Some(api.url.clone());
    env.api_key = Some("secret-key".into());
    env
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn config_set_sends_patch_with_bearer_and_prints_the_new_version() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("PATCH", "/apps/demo/config-vars") => reply(200, json!({"A": "1", "OTHER": "x"})),
        ("GET", "/apps/demo/releases") => {
            reply(200, json!([release_json(4, true, "Set A config vars")]))
        }
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(
        &env_for(&api, dir.path()),
        &["config:set", "A=1", "-a", "demo"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "Setting A and restarting demo... done, v4\nA: 1\n");
    assert_eq!(r.err, "");

    let seen = api.seen();
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(seen[0].path, "/apps/demo/config-vars");
    assert_eq!(seen[0].json(), json!({"A": "1"}));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer secret-key"));
    assert_eq!(
        seen[0].accept.as_deref(),
        Some("application/vnd.heroku+json; version=3")
    );
    assert_eq!(
        seen[1].range.as_deref(),
        Some("version ..; order=desc, max=1")
    );
}

#[tokio::test]
async fn config_unset_sends_nulls() {
    let api = FakeApi::start(|req, _| match req.method.as_str() {
        "PATCH" => reply(200, json!({})),
        _ => reply(
            200,
            json!([release_json(5, true, "Unset A, B config vars")]),
        ),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(
        &env_for(&api, dir.path()),
        &["config:unset", "A", "B", "--app", "demo"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "Unsetting A, B and restarting demo... done, v5\n");
    assert_eq!(api.seen()[0].json(), json!({"A": null, "B": null}));
}

#[tokio::test]
async fn api_errors_print_the_server_message_on_one_line() {
    let api = FakeApi::start(|_, _| not_found()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["config:set", "A=1", "-a", "demo"]).await;
    assert_ne!(r.code, 0);
    assert_eq!(r.out, "Setting A and restarting demo... !\n");
    assert_eq!(r.err, " ▸    Couldn't find that app.\n");

    let r = cli(&env, &["apps:info", "-a", "demo"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, " ▸    Couldn't find that app.\n");
}

#[tokio::test]
async fn bad_arguments_fail_before_any_request() {
    let api = FakeApi::start(|_, _| not_found()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["config:set", "FOO", "-a", "demo"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    FOO is invalid. Must be in the format KEY=value.\n"
    );
    let r = cli(&env, &["ps:scale", "web=x", "-a", "demo"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(" ▸    Invalid argument \"web=x\"."),
        "{}",
        r.err
    );
    let r = cli(&env, &["no-such-command"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err.lines().count(), 1, "{}", r.err);
    assert!(api.seen().is_empty());
}

#[tokio::test]
async fn help_and_version_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::bare(dir.path(), dir.path());
    let r = cli(&env, &["--help"]).await;
    assert_eq!(r.code, 0);
    for cmd in [
        "apps:create",
        "config:set",
        "ps:scale",
        "logs",
        "rollback",
        "git:remote",
    ] {
        assert!(r.out.contains(cmd), "{cmd} missing from help");
    }
    let r = cli(&env, &["--version"]).await;
    assert_eq!(r.code, 0);
    assert!(r.out.starts_with("slipway "));
}

#[tokio::test]
async fn lists_follow_next_range() {
    let api = FakeApi::start(|req, _| match (req.path.as_str(), req.range.as_deref()) {
        ("/apps", None) => Reply {
            status: 206,
            headers: vec![("next-range", "id ]id-beta..; max=1".into())],
            body: json!([app_json("alpha"), app_json("beta")]).to_string(),
        },
        ("/apps", Some("id ]id-beta..; max=1")) => reply(200, json!([app_json("gamma")])),
        ("/account", _) => reply(200, account_json()),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(&env_for(&api, dir.path()), &["apps"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "=== owner@example.com Apps\n\nalpha\nbeta\ngamma\n");
}

#[tokio::test]
async fn scale_sends_string_quantities_and_sizes() {
    let api = FakeApi::start(|req, _| match req.method.as_str() {
        "PATCH" => reply(
            200,
            json!([
                formation_json("web", 2, "standard-2x"),
                formation_json("worker", 1, "basic")
            ]),
        ),
        _ => reply(
            200,
            json!([
                formation_json("worker", 0, "basic"),
                formation_json("web", 1, "basic")
            ]),
        ),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(
        &env,
        &["ps:scale", "web=2:standard-2x", "worker+1", "-a", "demo"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Scaling dynos... done, now running web at 2:standard-2x, worker at 1:basic\n"
    );
    let seen = api.seen();
    assert_eq!(seen[0].path, "/apps/demo/formation");
    assert_eq!(
        seen[0].json(),
        json!({"updates": [
            {"type": "web", "quantity": "2", "size": "standard-2x"},
            {"type": "worker", "quantity": "+1"}
        ]})
    );
    let r = cli(&env, &["scale", "-a", "demo"]).await;
    assert_eq!(r.out, "web=1:basic worker=0:basic\n");
}

#[tokio::test]
async fn restart_targets() {
    let api = FakeApi::start(|_, _| reply(202, json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let cases = [
        (
            vec!["ps:restart"],
            "/apps/demo/dynos",
            "Restarting dynos on demo... done\n",
        ),
        (
            vec!["restart", "web"],
            "/apps/demo/formations/web",
            "Restarting web dynos on demo... done\n",
        ),
        (
            vec!["ps:restart", "web.1"],
            "/apps/demo/dynos/web.1",
            "Restarting web.1 dyno on demo... done\n",
        ),
    ];
    for (i, (args, path, out)) in cases.iter().enumerate() {
        let mut args = args.clone();
        args.extend(["-a", "demo"]);
        let r = cli(&env, &args).await;
        assert_eq!(r.out, *out);
        let seen = api.seen();
        assert_eq!(
            (seen[i].method.as_str(), seen[i].path.as_str()),
            ("DELETE", *path)
        );
    }
}

#[tokio::test]
async fn logs_open_a_session_then_stream_plain_text() {
    let api = FakeApi::start(|req, base| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/apps/demo/log-sessions") => reply(
            201,
            json!({"id": "ls1", "logplex_url": format!("{base}/log-stream/tok123"),
                   "created_at": T, "updated_at": T}),
        ),
        ("GET", "/log-stream/tok123") => Reply {
            status: 200,
            headers: vec![("content-type", "text/plain".into())],
            body: "2026-11-26T06:00:00.000001+00:00 app[web.1]: hello\n2026-11-26T06:00:01.000001+00:00 heroku[router]: at=info\n".into(),
        },
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(
        &env_for(&api, dir.path()),
        &[
            "logs", "-n", "5", "--tail", "-d", "web.1", "-s", "app", "-a", "demo",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r
        .out
        .starts_with("2026-11-26T06:00:00.000001+00:00 app[web.1]: hello\n"));
    assert_eq!(r.out.lines().count(), 2);
    let seen = api.seen();
    assert_eq!(
        seen[0].json(),
        json!({"lines": 5, "tail": true, "dyno": "web.1", "source": "app"})
    );
    assert_eq!(
        seen[1].authorization, None,
        "the stream URL carries its own token"
    );
    assert_eq!(seen[1].accept.as_deref(), Some("text/plain"));
}

#[tokio::test]
async fn create_in_a_repo_adds_the_remote_and_credential_helper() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/apps") => reply(201, app_json("demo")),
        ("GET", "/apps/demo/config-vars") => reply(200, json!({"B": "two words", "A": "1"})),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let mut env = env_for(&api, dir.path());
    env.exe = "/usr/local/bin/slipway".into();
    let r = cli(&env, &["apps:create", "demo"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Creating demo... done\nhttp://demo.localhost:8080/ | http://127.0.0.1:5050/demo.git\n"
    );
    assert_eq!(api.seen()[0].json(), json!({"name": "demo"}));
    assert_eq!(
        git(dir.path(), &["remote", "get-url", "slipway"]),
        "http://127.0.0.1:5050/demo.git\n"
    );
    assert_eq!(
        git(
            dir.path(),
            &[
                "config",
                "--local",
                "--get-all",
                "credential.http://127.0.0.1:5050.helper"
            ]
        ),
        "\n!/usr/local/bin/slipway git:credentials\n"
    );

    // The app now comes from the remote.
    let r = cli(&env, &["config"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "=== demo Config Vars\n\nA: 1\nB: two words\n");
    let r = cli(&env, &["config", "--shell"]).await;
    assert_eq!(r.out, "A=1\nB='two words'\n");
    let r = cli(&env, &["config:get", "B"]).await;
    assert_eq!(r.out, "two words\n");
    let r = cli(&env, &["config:get", "MISSING"]).await;
    assert_eq!((r.code, r.out.as_str()), (0, "\n"));
}

#[tokio::test]
async fn credential_helper_answers_get_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = Env::bare(dir.path(), dir.path());
    env.api_key = Some("k1".into());
    env.input = Input::Text("protocol=http\nhost=127.0.0.1:5050\n\n".into());
    let r = cli(&env, &["git:credentials", "get"]).await;
    assert_eq!(
        (r.code, r.out.as_str()),
        (0, "username=slipway\npassword=k1\n")
    );
    let r = cli(&env, &["git:credentials", "store"]).await;
    assert_eq!((r.code, r.out.as_str()), (0, ""));
}

#[tokio::test]
async fn without_an_app_or_key_the_cli_says_what_to_do() {
    let api = FakeApi::start(|_, _| not_found()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["config"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    No app specified. Run this command from an app folder or specify which app to use with --app APP.\n"
    );
    let mut env = Env::bare(dir.path(), dir.path());
    env.api_url = Some(api.url.clone());
    let r = cli(&env, &["config", "-a", "demo"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    Not logged in. Run slipway login, or set SLIPWAY_API_KEY.\n"
    );
}

#[tokio::test]
async fn connection_refused_names_the_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let mut env = Env::bare(dir.path(), dir.path());
    env.api_url = Some(url.clone());
    env.api_key = Some("k".into());
    let r = cli(&env, &["apps"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        format!(" ▸    Cannot reach Slipway at {url}: connection refused. Is `slipway server` running?\n")
    );
}

#[tokio::test]
async fn login_saves_the_key_in_netrc_and_logout_removes_it() {
    let api = FakeApi::start(|req, _| match req.authorization.as_deref() {
        Some("Bearer good-key") => reply(200, account_json()),
        _ => reply(
            401,
            json!({"id": "unauthorized", "message": "Invalid credentials provided."}),
        ),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join(".netrc");
    std::fs::write(&netrc, "machine example.com login x password y\n").unwrap();
    let mut env = Env::bare(dir.path(), dir.path());
    env.api_url = Some(api.url.clone());
    env.input = Input::Text("bad-key\n".into());
    let r = cli(&env, &["login"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with(" ▸    Invalid credentials provided."),
        "{}",
        r.err
    );

    env.input = Input::Text("good-key\n".into());
    let r = cli(&env, &["login"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "Logged in as owner@example.com\n");
    let machine = api.url.trim_start_matches("http://");
    let text = std::fs::read_to_string(&netrc).unwrap();
    assert_eq!(
        text,
        format!("machine example.com login x password y\nmachine {machine}\n  login owner@example.com\n  password good-key\n")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&netrc).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The saved key is found again.
    let r = cli(&env, &["auth:token"]).await;
    assert_eq!(r.out, "good-key\n");
    let r = cli(&env, &["whoami"]).await;
    assert_eq!(r.out, "owner@example.com\n");

    let r = cli(&env, &["logout"]).await;
    assert_eq!(r.out, "Logging out... done\n");
    assert_eq!(
        std::fs::read_to_string(&netrc).unwrap(),
        "machine example.com login x password y\n"
    );
}

#[tokio::test]
async fn releases_and_rollback() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/apps/demo/releases") => reply(
            200,
            json!([
                release_json(3, true, "Set FOO config vars"),
                release_json(2, false, "Deploy abc1234"),
                release_json(1, false, "Initial release"),
            ]),
        ),
        ("POST", "/apps/demo/releases") => reply(201, release_json(4, true, "Rollback to v2")),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["releases", "-a", "demo", "-n", "3"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let mut lines = r.out.lines();
    assert_eq!(lines.next(), Some("=== demo Releases - Current: v3"));
    assert_eq!(lines.next(), Some(""));
    assert!(lines
        .next()
        .unwrap()
        .starts_with("v3  Set FOO config vars  owner@example.com  2026/11/26 06:00:00 +0000"));
    assert!(r
        .out
        .contains("\nv2  Deploy abc1234       owner@example.com  2026/11/26 06:00:00 +0000"));
    assert_eq!(
        api.seen()[0].range.as_deref(),
        Some("version ..; order=desc, max=3")
    );

    let r = cli(&env, &["rollback", "-a", "demo"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "Rolling back demo to v2... done, v4\n");
    let post = api.seen().into_iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(post.json(), json!({"release": "rel-2"}));
}
