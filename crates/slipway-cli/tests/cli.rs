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
    /// The query string, without `?`.
    query: Option<String>,
    authorization: Option<String>,
    accept: Option<String>,
    range: Option<String>,
    accept_expansion: Option<String>,
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
        query: parts.uri.query().map(str::to_owned),
        authorization: header("authorization"),
        accept: header("accept"),
        range: header("range"),
        accept_expansion: header("accept-expansion"),
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
    // Bound but not listening: connections are refused, and no other test can take the port.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}", held.local_addr().unwrap());
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

// ---- add-ons and Redis

fn addon_json(name: &str, plan: &str, owner: &str, vars: &[&str], state: &str) -> Value {
    let service = plan.split_once(':').unwrap().0;
    json!({
        "actions": [], "id": format!("id-{name}"), "name": name,
        "addon_service": {"id": format!("svc-{service}"), "name": service},
        "app": {"id": format!("id-{owner}"), "name": owner},
        "billing_entity": {"id": format!("id-{owner}"), "name": owner, "type": "app"},
        "billed_price": {"cents": 0, "contract": false, "unit": "month"},
        "config_vars": vars, "created_at": T, "updated_at": T,
        "plan": {"id": format!("plan-{plan}"), "name": plan},
        "provider_id": "p1", "provision_message": null, "state": state, "web_url": null,
    })
}

fn attachment_json(name: &str, addon: &str, owner: &str, app: &str) -> Value {
    json!({
        "id": format!("att-{app}-{name}"), "name": name,
        "addon": {"id": format!("id-{addon}"), "name": addon,
                  "app": {"id": format!("id-{owner}"), "name": owner}},
        "app": {"id": format!("id-{app}"), "name": app},
        "created_at": T, "updated_at": T, "namespace": null, "web_url": null, "log_input_url": null,
    })
}

fn plan_json(name: &str, human: &str, default: bool, limits: Value) -> Value {
    json!({
        "id": format!("plan-{name}"), "name": name, "human_name": human, "default": default,
        "description": human, "price": {"cents": 0, "contract": false, "unit": "month"},
        "addon_service": {"id": "svc", "name": name.split_once(':').unwrap().0},
        "state": "public", "visible": true, "created_at": T, "updated_at": T, "limits": limits,
    })
}

#[tokio::test]
async fn addons_list_shows_each_addon_with_its_attachments_as_a_tree() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/apps/shop/addons") => reply(
            200,
            json!([
                addon_json(
                    "redis-rigid-12345",
                    "heroku-redis:mini",
                    "shop",
                    &["REDIS_URL"],
                    "provisioned"
                ),
                addon_json(
                    "redis-shared-11111",
                    "heroku-redis:premium-0",
                    "cache",
                    &["CACHE_URL"],
                    "provisioned"
                ),
                addon_json(
                    "postgresql-concave-52656",
                    "heroku-postgresql:essential-0",
                    "shop",
                    &["DATABASE_URL", "HEROKU_POSTGRESQL_ONYX_URL"],
                    "provisioning"
                ),
            ]),
        ),
        ("GET", "/addon-attachments") => reply(
            200,
            json!([
                attachment_json(
                    "DATABASE",
                    "postgresql-concave-52656",
                    "shop",
                    "shop-worker"
                ),
                attachment_json("REDIS", "redis-rigid-12345", "shop", "shop"),
                attachment_json(
                    "HEROKU_POSTGRESQL_ONYX",
                    "postgresql-concave-52656",
                    "shop",
                    "shop"
                ),
                attachment_json("DATABASE", "postgresql-concave-52656", "shop", "shop"),
                attachment_json("CACHE", "redis-shared-11111", "cache", "shop"),
                attachment_json("REDIS", "redis-shared-11111", "cache", "cache"),
                attachment_json(
                    "DATABASE",
                    "postgresql-unrelated-1",
                    "elsewhere",
                    "elsewhere"
                ),
            ]),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(&env_for(&api, dir.path()), &["addons", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "\
Add-on                                        Plan         Price                  State
────────────────────────────────────────────  ───────────  ─────────────────────  ────────
heroku-postgresql (postgresql-concave-52656)  essential-0  free                   creating
 ├─ as DATABASE
 ├─ as HEROKU_POSTGRESQL_ONYX
 └─ as DATABASE on ⬢ shop-worker app
heroku-redis (redis-rigid-12345)              mini         free                   created
 └─ as REDIS
heroku-redis (redis-shared-11111)             premium-0    (billed to cache app)  created
 ├─ as CACHE
 └─ as REDIS on ⬢ cache app

The table above shows add-ons and the attachments to the current app (shop) or other apps.
"
    );
    let seen = api.seen();
    assert_eq!(seen[0].path, "/apps/shop/addons");
    assert_eq!(
        seen[0].accept_expansion.as_deref(),
        Some("addon_service,plan")
    );
}

#[tokio::test]
async fn addons_list_all_and_empty() {
    let api = FakeApi::start(|req, _| match req.path.as_str() {
        "/addons" => reply(
            200,
            json!([
                addon_json(
                    "redis-rigid-12345",
                    "heroku-redis:mini",
                    "shop",
                    &["REDIS_URL"],
                    "provisioned"
                ),
                addon_json(
                    "postgresql-a-1",
                    "heroku-postgresql:essential-1",
                    "admin",
                    &[],
                    "deprovisioned"
                ),
            ]),
        ),
        "/apps/empty/addons" => reply(200, json!([])),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["addons", "--all"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "\
Owning App  Add-on             Plan                           Price  State
──────────  ─────────────────  ─────────────────────────────  ─────  ─────────
admin       postgresql-a-1     heroku-postgresql:essential-1  free   destroyed
shop        redis-rigid-12345  heroku-redis:mini              free   created
"
    );
    let r = cli(&env, &["addons", "-a", "empty"]).await;
    assert_eq!((r.code, r.out.as_str()), (0, "No add-ons for app empty.\n"));
    let r = cli(&env, &["addons", "-a", "empty", "--json"]).await;
    assert_eq!((r.code, r.out.as_str()), (0, "[]\n"));
}

#[tokio::test]
async fn addons_create_sends_heroku_body_and_prints_the_config_vars() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/addon-services/heroku-postgresql/plans") => reply(
            200,
            json!([
                plan_json(
                    "heroku-postgresql:essential-0",
                    "Essential 0",
                    true,
                    json!({})
                ),
                plan_json(
                    "heroku-postgresql:essential-1",
                    "Essential 1",
                    false,
                    json!({})
                ),
            ]),
        ),
        ("POST", "/apps/shop/addons") => {
            let mut addon = addon_json(
                "postgresql-concave-52656",
                "heroku-postgresql:essential-0",
                "shop",
                &["DATABASE_URL", "HEROKU_POSTGRESQL_ONYX_URL"],
                "provisioned",
            );
            addon["plan"]["price"] = json!({"cents": 0, "unit": "month"});
            reply(201, addon)
        }
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["addons:create", "heroku-postgresql", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Creating heroku-postgresql:essential-0 on ⬢ shop... free\n\
         Created postgresql-concave-52656 as DATABASE_URL, HEROKU_POSTGRESQL_ONYX_URL\n\
         Use slipway addons:info postgresql-concave-52656 to see it.\n"
    );
    let post = api.seen().into_iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(
        post.json(),
        json!({"plan": {"name": "heroku-postgresql"}, "attachment": {}, "config": {}})
    );
    assert_eq!(post.accept_expansion.as_deref(), Some("plan"));

    let r = cli(
        &env,
        &[
            "addons:create",
            "heroku-postgresql:essential-1",
            "--as",
            "MAIN_DB",
            "--name",
            "shop-db",
            "--confirm",
            "shop",
            "-a",
            "shop",
            "--",
            "--version",
            "15",
            "--fast",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out
            .starts_with("Creating heroku-postgresql:essential-1 on ⬢ shop... free\n"),
        "{}",
        r.out
    );
    let seen = api.seen();
    let post = seen.last().unwrap();
    assert_eq!(post.method, "POST", "a plan given in full needs no lookup");
    assert_eq!(
        post.json(),
        json!({
            "plan": {"name": "heroku-postgresql:essential-1"},
            "attachment": {"name": "MAIN_DB"},
            "name": "shop-db",
            "confirm": "shop",
            "config": {"version": "15", "fast": true},
        })
    );

    // Provider settings that are not `--KEY` fail before any request.
    let before = api.seen().len();
    let r = cli(
        &env,
        &["addons:create", "heroku-redis", "-a", "shop", "--", "oops"],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    Unexpected argument oops. Give provider settings as -- --KEY VALUE.\n"
    );
    assert_eq!(api.seen().len(), before);
}

#[tokio::test]
async fn addons_create_in_the_background_and_with_wait() {
    let polls = Arc::new(Mutex::new(0));
    let counter = polls.clone();
    let api = FakeApi::start(
        move |req, _| match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/apps/shop/addons") => reply(
                201,
                addon_json(
                    "redis-rigid-12345",
                    "heroku-redis:mini",
                    "shop",
                    &[],
                    "provisioning",
                ),
            ),
            ("GET", "/addons/id-redis-rigid-12345") => {
                *counter.lock().unwrap() += 1;
                reply(
                    200,
                    addon_json(
                        "redis-rigid-12345",
                        "heroku-redis:mini",
                        "shop",
                        &["REDIS_URL"],
                        "provisioned",
                    ),
                )
            }
            _ => not_found(),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["addons:create", "heroku-redis:mini", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Creating heroku-redis:mini on ⬢ shop... free\n\
         redis-rigid-12345 is being created in the background. The app will restart when complete...\n\
         Use slipway addons:info redis-rigid-12345 to check creation progress.\n"
    );
    assert_eq!(*polls.lock().unwrap(), 0);

    let r = cli(
        &env,
        &["addons:create", "heroku-redis:mini", "--wait", "-a", "shop"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Creating heroku-redis:mini on ⬢ shop... free\n\
         Waiting for redis-rigid-12345... done\n\
         Created redis-rigid-12345 as REDIS_URL\n\
         Use slipway addons:info redis-rigid-12345 to see it.\n"
    );
    assert_eq!(*polls.lock().unwrap(), 1);
}

#[tokio::test]
async fn addons_destroy_refuses_without_confirm_before_any_request() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/apps/shop/addons/postgresql-concave-52656") => reply(
            200,
            addon_json(
                "postgresql-concave-52656",
                "heroku-postgresql:essential-0",
                "shop",
                &[],
                "provisioned",
            ),
        ),
        ("DELETE", "/apps/shop/addons/id-postgresql-concave-52656") => reply(
            200,
            addon_json(
                "postgresql-concave-52656",
                "heroku-postgresql:essential-0",
                "shop",
                &[],
                "deprovisioned",
            ),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let expected =
        " ▸    This will destroy postgresql-concave-52656 on shop and its data. To proceed, run: slipway addons:destroy postgresql-concave-52656 -a shop --confirm shop\n";
    let r = cli(
        &env,
        &["addons:destroy", "postgresql-concave-52656", "-a", "shop"],
    )
    .await;
    assert_ne!(r.code, 0);
    assert_eq!(r.out, "");
    assert_eq!(r.err, expected);
    let r = cli(
        &env,
        &[
            "addons:destroy",
            "postgresql-concave-52656",
            "-a",
            "shop",
            "--confirm",
            "shop-worker",
        ],
    )
    .await;
    assert_ne!(r.code, 0);
    assert_eq!(r.err, expected);
    assert!(api.seen().is_empty(), "{:?}", api.seen());

    let r = cli(
        &env,
        &[
            "addons:destroy",
            "postgresql-concave-52656",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Destroying postgresql-concave-52656 on ⬢ shop... done\n"
    );
    let seen = api.seen();
    let delete = seen.iter().find(|s| s.method == "DELETE").unwrap();
    assert_eq!(delete.json(), json!({"force": false}));

    let r = cli(
        &env,
        &[
            "addons:destroy",
            "postgresql-concave-52656",
            "-a",
            "shop",
            "-c",
            "shop",
            "--force",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    let delete = api
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.method == "DELETE")
        .unwrap();
    assert_eq!(delete.json(), json!({"force": true}));
}

#[tokio::test]
async fn addons_attach_and_detach_print_the_new_release() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/addon-attachments") => reply(
            201,
            attachment_json(
                "DATABASE",
                "postgresql-concave-52656",
                "shop",
                "shop-worker",
            ),
        ),
        ("GET", "/apps/shop-worker/addon-attachments/DATABASE") => reply(
            200,
            attachment_json(
                "DATABASE",
                "postgresql-concave-52656",
                "shop",
                "shop-worker",
            ),
        ),
        ("DELETE", "/addon-attachments/att-shop-worker-DATABASE") => reply(
            200,
            attachment_json(
                "DATABASE",
                "postgresql-concave-52656",
                "shop",
                "shop-worker",
            ),
        ),
        ("GET", "/apps/shop-worker/releases") => reply(
            200,
            json!([release_json(
                3,
                true,
                "Attach DATABASE (@ref:postgresql-concave-52656)"
            )]),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(
        &env,
        &[
            "addons:attach",
            "postgresql-concave-52656",
            "--as",
            "DATABASE",
            "-a",
            "shop-worker",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Attaching postgresql-concave-52656 as DATABASE to ⬢ shop-worker... done\n\
         Setting DATABASE config vars and restarting ⬢ shop-worker... done, v3\n"
    );
    let seen = api.seen();
    assert_eq!(
        seen[0].json(),
        json!({"addon": {"name": "postgresql-concave-52656"}, "app": {"name": "shop-worker"}, "name": "DATABASE"})
    );
    assert_eq!(seen[1].path, "/apps/shop-worker/releases");
    assert_eq!(
        seen[1].range.as_deref(),
        Some("version ..; order=desc, max=1")
    );

    let r = cli(&env, &["addons:detach", "DATABASE", "-a", "shop-worker"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Detaching DATABASE to postgresql-concave-52656 from ⬢ shop-worker... done\n\
         Unsetting DATABASE config vars and restarting ⬢ shop-worker... done, v3\n"
    );
}

#[tokio::test]
async fn addons_attach_refusal_says_how_to_confirm() {
    let api = FakeApi::start(|_, _| {
        reply(
            422,
            json!({"id": "confirmation_required",
                   "message": "DATABASE is already attached to shop-worker."}),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(
        &env_for(&api, dir.path()),
        &[
            "addons:attach",
            "pg-1",
            "--as",
            "DATABASE",
            "-a",
            "shop-worker",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "Attaching pg-1 as DATABASE to ⬢ shop-worker... !\n");
    assert_eq!(
        r.err,
        " ▸    DATABASE is already attached to shop-worker. To proceed, run slipway addons:attach pg-1 --as DATABASE -a shop-worker --confirm shop-worker\n"
    );
}

#[tokio::test]
async fn addons_plans_and_services_tables() {
    let api = FakeApi::start(|req, _| match req.path.as_str() {
        "/addon-services/heroku-postgresql/plans" => reply(
            200,
            json!([
                plan_json("heroku-postgresql:essential-0", "Essential 0", true,
                    json!({"connections": 20, "storage_bytes": 1073741824u64, "rows": 10000, "memory_bytes": 268435456})),
                plan_json("heroku-postgresql:essential-1", "Essential 1", false,
                    json!({"connections": 20, "storage_bytes": 10737418240u64, "rows": 10000000})),
                plan_json("heroku-postgresql:standard-0", "Standard 0", false,
                    json!({"connections": 120, "storage_bytes": 68719476736u64})),
            ]),
        ),
        "/addon-services/heroku-redis/plans" => reply(
            200,
            json!([plan_json("heroku-redis:mini", "Mini", true,
                json!({"connections": 20, "maxmemory_bytes": 26214400, "memory_bytes": 85983232}))]),
        ),
        "/addon-services" => reply(
            200,
            json!([
                {"id": "s1", "name": "heroku-postgresql", "human_name": "Heroku Postgres", "state": "ga"},
                {"id": "s2", "name": "heroku-redis", "human_name": "Heroku Key-Value Store", "state": "ga"},
            ]),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["addons:plans", "heroku-postgresql"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "         Slug                           Name         Price  Limits
───────  ─────────────────────────────  ───────────  ─────  ──────────────────────────────────────
default  heroku-postgresql:essential-0  Essential 0  free   20 connections, 1 GB, 10,000 rows
         heroku-postgresql:essential-1  Essential 1  free   20 connections, 10 GB, 10,000,000 rows
         heroku-postgresql:standard-0   Standard 0   free   120 connections, 64 GB
"
    );
    let r = cli(&env, &["addons:plans", "heroku-redis"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out
            .ends_with("default  heroku-redis:mini  Mini  free   25 MB, 20 clients\n"),
        "{}",
        r.out
    );
    let r = cli(&env, &["addons:services"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Slug               Name                    State
─────────────────  ──────────────────────  ─────
heroku-postgresql  Heroku Postgres         ga
heroku-redis       Heroku Key-Value Store  ga

See plans with slipway addons:plans SERVICE
"
    );
}

#[tokio::test]
async fn addons_info_falls_back_from_the_app_and_lists_attachments() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/addons/postgresql-concave-52656") => reply(
            200,
            addon_json(
                "postgresql-concave-52656",
                "heroku-postgresql:essential-0",
                "shop",
                &["DATABASE_URL"],
                "provisioned",
            ),
        ),
        ("GET", "/addons/id-postgresql-concave-52656/addon-attachments") => reply(
            200,
            json!([
                attachment_json(
                    "HEROKU_POSTGRESQL_ONYX",
                    "postgresql-concave-52656",
                    "shop",
                    "shop"
                ),
                attachment_json("DATABASE", "postgresql-concave-52656", "shop", "shop"),
            ]),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(
        &env_for(&api, dir.path()),
        &["addons:info", "postgresql-concave-52656", "-a", "other"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== postgresql-concave-52656

Attachments:  shop::DATABASE
              shop::HEROKU_POSTGRESQL_ONYX
Installed at: 2026/11/26 06:00:00 +0000
Owning app:   shop
Plan:         heroku-postgresql:essential-0
Price:        free
State:        created
"
    );
    let paths: Vec<String> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/apps/other/addons/postgresql-concave-52656",
            "/addons/postgresql-concave-52656",
            "/addons/id-postgresql-concave-52656/addon-attachments"
        ]
    );
}

#[tokio::test]
async fn addons_upgrade_prefixes_the_service() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/apps/shop/addons/postgresql-concave-52656") => reply(
            200,
            addon_json(
                "postgresql-concave-52656",
                "heroku-postgresql:essential-0",
                "shop",
                &[],
                "provisioned",
            ),
        ),
        ("PATCH", "/apps/shop/addons/id-postgresql-concave-52656") => reply(
            200,
            addon_json(
                "postgresql-concave-52656",
                "heroku-postgresql:essential-1",
                "shop",
                &[],
                "provisioned",
            ),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(
        &env_for(&api, dir.path()),
        &[
            "addons:downgrade",
            "postgresql-concave-52656",
            "essential-1",
            "-a",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Changing postgresql-concave-52656 on ⬢ shop from essential-0 to essential-1... done, free\n"
    );
    let patch = api
        .seen()
        .into_iter()
        .find(|s| s.method == "PATCH")
        .unwrap();
    assert_eq!(
        patch.json(),
        json!({"plan": {"name": "heroku-postgresql:essential-1"}})
    );
}

fn redis_handler(req: &Seen, _: &str) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/actions/addon-attachments/resolve") => reply(
            200,
            json!([attachment_json(
                "REDIS",
                "redis-rigid-12345",
                "shop",
                "shop"
            )]),
        ),
        ("GET", "/addons/id-redis-rigid-12345/redis")
        | ("PATCH", "/addons/id-redis-rigid-12345/redis") => reply(
            200,
            json!({
                "plan": "mini", "status": "available", "created_at": "2026-11-26T05:19:49Z",
                "version": "7.0.15", "timeout": 300, "maxmemory_policy": "noeviction",
                "used_memory": 1153434, "maxmemory": 26214400, "memory_cap": 85983232,
                "clients": 1, "maxclients": 20, "persistence": "AOF (everysec)",
                "config_vars": ["REDIS_URL"],
            }),
        ),
        ("GET", "/apps/shop/config-vars") => reply(
            200,
            json!({"REDIS_URL": "redis://:s3cret@10.9.0.1:6380", "OTHER": "x"}),
        ),
        _ => not_found(),
    }
}

#[tokio::test]
async fn redis_info_resolves_the_attachment() {
    let api = FakeApi::start(redis_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(&env_for(&api, dir.path()), &["redis:info", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== redis-rigid-12345 (REDIS_URL)

Plan:         Mini
Status:       available
Created:      2026-11-26 05:19 UTC
Version:      7.0.15
Timeout:      300
Maxmemory:    noeviction
Memory:       1.1 MB / 25 MB (cap 82 MB outside Redis)
Clients:      1/20
Persistence:  AOF (everysec)
Requires TLS: No
"
    );
    assert_eq!(
        api.seen()[0].json(),
        json!({"addon_attachment": "REDIS", "app": "shop", "addon_service": "heroku-redis"})
    );
}

#[tokio::test]
async fn redis_maxmemory_checks_the_policy_locally() {
    let api = FakeApi::start(redis_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["redis:maxmemory", "-a", "shop", "--policy", "lru"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    Invalid maxmemory policy lru. Use one of: noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl.\n"
    );
    assert!(api.seen().is_empty());

    let r = cli(
        &env,
        &[
            "redis:maxmemory",
            "HEROKU_REDIS_BLUE",
            "-a",
            "shop",
            "--policy",
            "allkeys-lru",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Maxmemory policy for redis-rigid-12345 (REDIS_URL) set to allkeys-lru.\n"
    );
    let seen = api.seen();
    assert_eq!(seen[0].json()["addon_attachment"], "HEROKU_REDIS_BLUE");
    assert_eq!(seen[1].method, "PATCH");
    assert_eq!(seen[1].json(), json!({"maxmemory_policy": "allkeys-lru"}));
}

#[tokio::test]
async fn redis_cli_passes_the_password_in_the_environment_only() {
    let api = FakeApi::start(redis_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&api, dir.path());
    let r = cli(&env, &["redis:cli", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    The local redis-cli command could not be located. Install it with apt-get install -y redis-tools.\n"
    );

    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("redis-cli");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"args: $*\"\necho \"auth: $REDISCLI_AUTH\"\necho \"stdin: $(cat)\"\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.path = Some(bin.into_os_string());
    env.input = Input::Text("PING\n".into());
    let r = cli(&env, &["redis:cli", "-a", "shop"]).await;
    assert_eq!(r.code, 3, "{}", r.err);
    assert_eq!(
        r.out,
        "Connecting to redis-rigid-12345 (REDIS_URL):\n\
         args: -h 10.9.0.1 -p 6380\n\
         auth: s3cret\n\
         stdin: PING\n"
    );
}

#[tokio::test]
async fn apps_info_lists_the_plans_of_the_apps_addons() {
    let api = FakeApi::start(|req, _| match req.path.as_str() {
        "/apps/shop" => reply(200, app_json("shop")),
        "/apps/shop/dynos" => reply(200, json!([])),
        "/apps/shop/addons" => reply(
            200,
            json!([
                addon_json(
                    "pg-1",
                    "heroku-postgresql:essential-0",
                    "shop",
                    &[],
                    "provisioned"
                ),
                addon_json("redis-1", "heroku-redis:mini", "shop", &[], "provisioned"),
            ]),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let r = cli(&env_for(&api, dir.path()), &["apps:info", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.starts_with(
            "=== shop\n\nAddons:  heroku-postgresql:essential-0\n         heroku-redis:mini\nGit URL: "
        ),
        "{}",
        r.out
    );
}

const PG: &str = "postgresql-concave-52656";

fn pg_not_found() -> Reply {
    reply(
        404,
        json!({"id": "not_found", "message": "Couldn't find that add-on attachment.",
               "resource": "add_on attachment"}),
    )
}

fn pg_handler(req: &Seen, _: &str) -> Reply {
    let base = "/addons/id-postgresql-concave-52656/postgres";
    let sub = req.path.strip_prefix(base);
    match (req.method.as_str(), req.path.as_str(), sub) {
        ("POST", "/actions/addon-attachments/resolve", _) if req.json()["app"] != "shop" => {
            not_found()
        }
        ("POST", "/actions/addon-attachments/resolve", _) => {
            match req.json()["addon_attachment"].as_str().unwrap_or("") {
                "DATABASE" | "DATABASE_URL" | "HEROKU_POSTGRESQL_ONYX" | PG => reply(
                    200,
                    json!([
                        attachment_json("DATABASE", PG, "shop", "shop"),
                        attachment_json("HEROKU_POSTGRESQL_ONYX", PG, "shop", "shop"),
                    ]),
                ),
                "HEROKU_POSTGRESQL_BIG_URL" => reply(
                    200,
                    json!([attachment_json(
                        "HEROKU_POSTGRESQL_BIG",
                        "postgresql-big-12",
                        "shop",
                        "shop"
                    )]),
                ),
                _ => pg_not_found(),
            }
        }
        ("GET", "/apps/shop/addons", _) => reply(
            200,
            json!([
                addon_json(
                    PG,
                    "heroku-postgresql:essential-0",
                    "shop",
                    &["DATABASE_URL", "HEROKU_POSTGRESQL_ONYX_URL"],
                    "provisioned"
                ),
                addon_json(
                    "redis-rigid-12345",
                    "heroku-redis:mini",
                    "shop",
                    &["REDIS_URL"],
                    "provisioned"
                ),
            ]),
        ),
        ("GET", "/apps/shop/config-vars", _) => reply(
            200,
            json!({
                "DATABASE_URL": "postgres://uabc123:p%40ss%2Fw0rd@10.213.0.1:15400/dabc123",
                "HEROKU_POSTGRESQL_ONYX_URL": "postgres://uabc123:p%40ss%2Fw0rd@10.213.0.1:15400/dabc123",
                "REDIS_URL": "redis://:s3cret@10.9.0.1:6380",
            }),
        ),
        ("GET", _, Some("")) => reply(
            200,
            json!({
                "name": PG, "plan": "heroku-postgresql:essential-0", "status": "Available",
                "connections": 1, "connection_limit": 20, "version": "15.18",
                "created_at": "2026-11-26T05:19:49Z", "data_size": 7_969_177,
                "storage_limit": 1_073_741_824u64, "tables": 1, "rows": 100, "row_limit": 10000,
                "row_status": "In compliance",
                "config_vars": ["DATABASE_URL", "HEROKU_POSTGRESQL_ONYX_URL"],
            }),
        ),
        ("GET", "/addons/id-postgresql-big-12/postgres", _) => reply(
            200,
            json!({
                "name": "postgresql-big-12", "plan": "heroku-postgresql:standard-0",
                "status": "Available", "connections": 3, "connection_limit": 120,
                "version": "15.18", "created_at": "2026-11-27T10:00:00Z",
                "data_size": 2_411_724_800u64, "storage_limit": null, "tables": 12,
                "rows": 1_234_567, "row_limit": null, "row_status": "In compliance",
                "config_vars": ["HEROKU_POSTGRESQL_BIG_URL"],
            }),
        ),
        ("GET", _, Some("/credentials")) => reply(
            200,
            json!([{"name": "default", "state": "active", "username": "uabc123",
                    "database": "dabc123", "host": "10.213.0.1", "port": 15400,
                    "connections": 2}]),
        ),
        ("POST", _, Some("/credentials/default/actions/rotate")) => reply(
            200,
            json!({"name": "default", "state": "active", "username": "uabc123",
                   "database": "dabc123", "host": "10.213.0.1", "port": 15400,
                   "connections": 0}),
        ),
        ("GET", _, Some("/activity")) => {
            let mut rows = vec![json!([
                "4242",
                "active",
                "slipway-psql",
                "uabc123",
                "00:00:03.5",
                "2026-11-26 06:00:00+00",
                "f",
                "SELECT pg_sleep(10)"
            ])];
            if req.query.as_deref() == Some("verbose=true") {
                rows.push(json!([
                    "77", "idle", "", "uabc123", null, null, "f", "COMMIT"
                ]));
            }
            reply(
                200,
                json!({
                    "columns": ["pid", "state", "source", "username", "running_for",
                                "transaction_start", "waiting", "query"],
                    "rows": rows,
                }),
            )
        }
        ("POST", _, Some("/activity/4242/actions/cancel")) => {
            reply(200, json!({"pid": 4242, "result": true}))
        }
        ("POST", _, Some("/activity/4242/actions/terminate")) => {
            reply(200, json!({"pid": 4242, "result": false}))
        }
        ("POST", _, Some("/activity/9/actions/cancel")) => reply(
            404,
            json!({"id": "not_found", "message": "No connection of postgresql-concave-52656 has pid 9."}),
        ),
        ("POST", _, Some("/actions/terminate-all")) => reply(200, json!({"terminated": 2})),
        ("GET", _, Some("/locks")) => reply(
            200,
            json!({
                "columns": ["pid", "relname", "transactionid", "granted", "query_snippet", "age"],
                "rows": [["4242", null, "1234", "t",
                          "UPDATE accounts SET balance = balance - 100 WHERE id = 1",
                          "00:00:05.1"]],
            }),
        ),
        ("GET", _, Some("/outliers")) => reply(
            200,
            json!({
                "columns": ["total_exec_time", "prop_exec_time", "ncalls", "sync_io_time", "query"],
                "rows": [
                    ["00:00:01.5", "75.0%", "1,200", "00:00:00", "SELECT * FROM items WHERE owner_id = $1 ORDER BY created_at DESC"],
                    ["00:00:00.5", "25.0%", "3", "00:00:00", "INSERT INTO items (name) VALUES ($1)"],
                ],
            }),
        ),
        ("DELETE", _, Some("/outliers")) => reply(200, json!({})),
        ("POST", _, Some("/diagnose")) => reply(201, diagnose_report_json()),
        ("GET", "/pg-diagnose/5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f", _) => {
            reply(200, diagnose_report_json())
        }
        ("GET", p, _) if p.starts_with("/pg-diagnose/") => reply(
            404,
            json!({"id": "not_found", "message": "Couldn't find that diagnose report."}),
        ),
        ("GET", _, Some("/bloat")) => reply(
            200,
            json!({
                "columns": ["type", "schemaname", "object_name", "bloat", "waste"],
                "rows": [
                    ["table", "public", "items", "12.3", "96 MB"],
                    ["index", "public", "items::items_name_idx", "1.0", "0 bytes"],
                ],
            }),
        ),
        ("GET", _, Some("/index-usage")) => reply(
            200,
            json!({
                "columns": ["relname", "percent_of_times_index_used", "rows_in_table"],
                "rows": [["items", "99", "100"], ["events", null, "0"]],
            }),
        ),
        ("GET", _, Some("/cache-hit")) => reply(
            200,
            json!({
                "columns": ["name", "ratio"],
                "rows": [["index hit rate", "0.99"], ["table hit rate", "0.95"]],
            }),
        ),
        ("POST", _, Some("/explain")) => reply(
            200,
            json!({"plan": "Seq Scan on items  (cost=0.00..1.10 rows=10 width=36) (actual time=0.010..0.011 rows=10 loops=1)\nPlanning Time: 0.050 ms\nExecution Time: 0.030 ms"}),
        ),
        _ => not_found(),
    }
}

#[tokio::test]
async fn pg_info_shows_the_database_like_heroku() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:info", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== DATABASE_URL, HEROKU_POSTGRESQL_ONYX_URL

Plan:        essential-0
Status:      Available
Connections: 1/20
PG Version:  15.18
Created:     2026-11-26 05:19 UTC
Data Size:   7.6 MB / 1 GB (0.74%)
Tables:      1
Rows:        100/10000 (In compliance)
Fork/Follow: Available
Rollback:    Unsupported
Add-on:      postgresql-concave-52656
"
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/actions/addon-attachments/resolve")
    );
    assert_eq!(
        seen[0].json(),
        json!({"addon_attachment": "DATABASE", "app": "shop", "addon_service": "heroku-postgresql"})
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/addons/id-postgresql-concave-52656/postgres")
    );

    // No row limit, no storage limit; the argument is passed as given.
    let r = cli(&env, &["pg", "HEROKU_POSTGRESQL_BIG_URL", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== HEROKU_POSTGRESQL_BIG_URL

Plan:        standard-0
Status:      Available
Connections: 3/120
PG Version:  15.18
Created:     2026-11-27 10:00 UTC
Data Size:   2.2 GB
Tables:      12
Rows:        1234567
Fork/Follow: Available
Rollback:    Unsupported
Add-on:      postgresql-big-12
"
    );
    assert_eq!(
        api.seen()[2].json()["addon_attachment"],
        "HEROKU_POSTGRESQL_BIG_URL"
    );

    let r = cli(&env, &["pg:info", "-a", "shop", "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["row_limit"], 10000);
}

#[tokio::test]
async fn pg_commands_without_a_database_say_how_to_create_one() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/actions/addon-attachments/resolve") => pg_not_found(),
        ("GET", "/apps/bare/addons") => reply(
            200,
            json!([addon_json(
                "redis-rigid-12345",
                "heroku-redis:mini",
                "bare",
                &["REDIS_URL"],
                "provisioned"
            )]),
        ),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    for args in [
        &["pg:info", "-a", "bare"][..],
        &["pg:ps", "-a", "bare"],
        &["pg:psql", "-a", "bare"],
    ] {
        let r = cli(&env, args).await;
        assert_eq!(r.code, 1, "{args:?}");
        assert_eq!(r.out, "");
        assert_eq!(
            r.err,
            " ▸    No Heroku Postgres databases on ⬢ bare. Create one with slipway addons:create heroku-postgresql -a bare.\n"
        );
    }
    // A name that matches nothing, on an app that has a database: the valid ones are named.
    let api = FakeApi::start(pg_handler).await;
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:info", "HEROKU_POSTGRESQL_NOPE", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    Unknown database: HEROKU_POSTGRESQL_NOPE. Valid options are: postgresql-concave-52656.\n"
    );
    // An app that does not exist says so.
    let r = cli(&env, &["pg:info", "-a", "ghost"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, " ▸    Couldn't find that app.\n");
}

#[tokio::test]
async fn pg_ps_prints_a_psql_table() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:ps", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            " pid  | state  |    source    | username | running_for |   transaction_start    | waiting |        query        \n",
            "------+--------+--------------+----------+-------------+------------------------+---------+---------------------\n",
            " 4242 | active | slipway-psql | uabc123  | 00:00:03.5  | 2026-11-26 06:00:00+00 | f       | SELECT pg_sleep(10)\n",
            "(1 row)\n",
            "\n",
        )
    );
    let seen = api.seen();
    assert_eq!(
        seen[1].path,
        "/addons/id-postgresql-concave-52656/postgres/activity"
    );
    assert_eq!(seen[1].query, None);

    let r = cli(&env, &["pg:ps", "DATABASE_URL", "-a", "shop", "-v"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            " pid  | state  |    source    | username | running_for |   transaction_start    | waiting |        query        \n",
            "------+--------+--------------+----------+-------------+------------------------+---------+---------------------\n",
            " 4242 | active | slipway-psql | uabc123  | 00:00:03.5  | 2026-11-26 06:00:00+00 | f       | SELECT pg_sleep(10)\n",
            "   77 | idle   |              | uabc123  |             |                        | f       | COMMIT\n",
            "(2 rows)\n",
            "\n",
        )
    );
    let seen = api.seen();
    assert_eq!(seen[2].json()["addon_attachment"], "DATABASE_URL");
    assert_eq!(seen[3].query.as_deref(), Some("verbose=true"));
}

#[tokio::test]
async fn pg_kill_killall_and_locks() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:kill", "4242", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        " pg_cancel_backend \n-------------------\n t\n(1 row)\n\n"
    );
    let r = cli(
        &env,
        &["pg:kill", "4242", "DATABASE", "-a", "shop", "--force"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        " pg_terminate_backend \n----------------------\n f\n(1 row)\n\n"
    );
    let r = cli(&env, &["pg:kill", "9", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    No connection of postgresql-concave-52656 has pid 9.\n"
    );
    let r = cli(&env, &["pg:kill", "abc", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    let posts: Vec<String> = api
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path.starts_with("/addons/"))
        .map(|s| s.path)
        .collect();
    assert_eq!(
        posts,
        [
            "/addons/id-postgresql-concave-52656/postgres/activity/4242/actions/cancel",
            "/addons/id-postgresql-concave-52656/postgres/activity/4242/actions/terminate",
            "/addons/id-postgresql-concave-52656/postgres/activity/9/actions/cancel",
        ]
    );

    let r = cli(&env, &["pg:killall", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Terminating connections for all credentials... done\n"
    );
    let last = api.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        (
            "POST",
            "/addons/id-postgresql-concave-52656/postgres/actions/terminate-all"
        )
    );

    let r = cli(&env, &["pg:locks", "-a", "shop", "-t"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            " pid  | relname | transactionid | granted |              query_snippet               |    age     \n",
            "------+---------+---------------+---------+------------------------------------------+------------\n",
            " 4242 |         |          1234 | t       | UPDATE accounts SET balance = balance -… | 00:00:05.1\n",
            "(1 row)\n",
            "\n",
        )
    );
}

#[tokio::test]
async fn pg_outliers_show_and_reset() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:outliers", "-a", "shop", "--reset"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "pg_stat_statements statistics reset\n");
    let last = api.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        (
            "DELETE",
            "/addons/id-postgresql-concave-52656/postgres/outliers"
        )
    );

    let r = cli(
        &env,
        &["pg:outliers", "-a", "shop", "-n", "2", "--truncate"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            " total_exec_time | prop_exec_time | ncalls | sync_io_time |                  query                   \n",
            "-----------------+----------------+--------+--------------+------------------------------------------\n",
            " 00:00:01.5      | 75.0%          | 1,200  | 00:00:00     | SELECT * FROM items WHERE owner_id = $1…\n",
            " 00:00:00.5      | 25.0%          | 3      | 00:00:00     | INSERT INTO items (name) VALUES ($1)\n",
            "(2 rows)\n",
            "\n",
        )
    );
    let last = api.seen().pop().unwrap();
    assert_eq!(
        last.path,
        "/addons/id-postgresql-concave-52656/postgres/outliers"
    );
    assert_eq!(last.query.as_deref(), Some("limit=2"));

    cli(&env, &["pg:outliers", "-a", "shop"]).await;
    assert_eq!(api.seen().pop().unwrap().query.as_deref(), Some("limit=10"));
}

#[tokio::test]
async fn pg_credentials_list_url_and_rotate() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:credentials", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Credential  State   Connections\n──────────  ──────  ───────────\ndefault     active  2\n"
    );
    assert_eq!(
        api.seen().pop().unwrap().path,
        "/addons/id-postgresql-concave-52656/postgres/credentials"
    );

    let r = cli(&env, &["pg:credentials:url", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Connection information for default credential.
Connection info string:
   \"dbname=dabc123 host=10.213.0.1 port=15400 user=uabc123 password=p@ss/w0rd sslmode=disable\"
Connection URL:
   postgres://uabc123:p%40ss%2Fw0rd@10.213.0.1:15400/dabc123
"
    );
    let r = cli(
        &env,
        &["pg:credentials:url", "-a", "shop", "--name", "reader"],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    Couldn't find the credential reader on postgresql-concave-52656. Its credentials: default.\n"
    );

    // Without the app's name as --confirm: refused before any request.
    let before = api.seen().len();
    let expected = " ▸    This will change the password of the default credential of DATABASE on shop and close its connections. To proceed, run: slipway pg:credentials:rotate -a shop --confirm shop\n";
    let r = cli(&env, &["pg:credentials:rotate", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert_eq!(r.err, expected);
    let r = cli(
        &env,
        &["pg:credentials:rotate", "-a", "shop", "--confirm", "other"],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, expected);
    let r = cli(
        &env,
        &[
            "pg:credentials:rotate",
            "HEROKU_POSTGRESQL_ONYX",
            "-a",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    This will change the password of the default credential of HEROKU_POSTGRESQL_ONYX on shop and close its connections. To proceed, run: slipway pg:credentials:rotate HEROKU_POSTGRESQL_ONYX -a shop --confirm shop\n"
    );
    assert_eq!(api.seen().len(), before, "{:?}", api.seen());

    let r = cli(
        &env,
        &["pg:credentials:rotate", "-a", "shop", "--confirm", "shop"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Rotating default on postgresql-concave-52656... done\n"
    );
    let last = api.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.body.as_str()),
        (
            "POST",
            "/addons/id-postgresql-concave-52656/postgres/credentials/default/actions/rotate",
            ""
        )
    );
}

#[tokio::test]
async fn pg_psql_passes_the_password_in_the_environment_only() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:psql", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    The local psql command could not be located. Install it with apt-get install -y postgresql-client-15.\n"
    );

    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("psql");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         echo \"args: $*\"\n\
         echo \"env: $PGHOST $PGPORT $PGUSER $PGDATABASE $PGAPPNAME\"\n\
         echo \"password: $PGPASSWORD\"\n\
         echo \"stdin: $(cat)\"\n\
         echo oops >&2\n\
         exit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.path = Some(bin.into_os_string());
    env.input = Input::Text("SELECT 1;\n".into());
    let r = cli(&env, &["pg:psql", "-a", "shop", "-c", "SELECT 2"]).await;
    assert_eq!(r.code, 3, "{}", r.err);
    assert_eq!(
        r.out,
        "args: -c SELECT 2\n\
         env: 10.213.0.1 15400 uabc123 dabc123 slipway-psql\n\
         password: p@ss/w0rd\n\
         stdin: SELECT 1;\n"
    );
    assert_eq!(r.err, "--> Connecting to postgresql-concave-52656\noops\n");

    let r = cli(
        &env,
        &[
            "psql",
            "HEROKU_POSTGRESQL_ONYX",
            "-a",
            "shop",
            "-f",
            "x.sql",
        ],
    )
    .await;
    assert_eq!(r.code, 3, "{}", r.err);
    assert!(r.out.starts_with("args: -f x.sql\n"), "{}", r.out);
    let resolve = api
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.method == "POST")
        .unwrap();
    assert_eq!(resolve.json()["addon_attachment"], "HEROKU_POSTGRESQL_ONYX");
}

// ---- pg:diagnose and the other diagnostics

const REPORT_ID: &str = "5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f";

/// A stored report whose checks come in the server's order, not the printed one.
fn diagnose_report_json() -> Value {
    let table = |columns: Value, rows: Value| json!({"columns": columns, "rows": rows});
    let empty = || table(json!([]), json!([]));
    json!({
        "id": REPORT_ID,
        "created_at": "2026-11-26T15:10:00Z",
        "app": "shop",
        "database": "DATABASE",
        "addon": {"id": "id-postgresql-concave-52656", "name": PG},
        "checks": [
            {"name": "Connection Count", "status": "green", "message": null,
             "results": table(json!(["count"]), json!([["1"]]))},
            {"name": "Load", "status": "skipped", "message": "no host metrics",
             "results": empty()},
            {"name": "Unlogged Tables", "status": "yellow",
             "message": "Unlogged tables are emptied after a crash.",
             "results": table(json!(["table"]), json!([["public.scratch"]]))},
            {"name": "Long Queries", "status": "green", "message": null, "results": empty()},
            {"name": "Blocking Queries", "status": "red", "message": null,
             "results": table(
                 json!(["blocked_pid", "blocking_pid", "blocked_statement", "blocking_duration"]),
                 json!([["4243", "4242", "UPDATE accounts SET balance = 0", null]]),
             )},
        ],
    })
}

const REPORT_TEXT: &str = concat!(
    "Report 5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f for shop::DATABASE\n",
    "available for one month after creation on 2026-11-26 15:10:00 +0000\n",
    "\n",
    "RED: Blocking Queries\n",
    " blocked_pid | blocking_pid |        blocked_statement        | blocking_duration \n",
    "-------------+--------------+---------------------------------+-------------------\n",
    "        4243 |         4242 | UPDATE accounts SET balance = 0 | \n",
    "(1 row)\n",
    "\n",
    "YELLOW: Unlogged Tables\n",
    "Unlogged tables are emptied after a crash.\n",
    "     table      \n",
    "----------------\n",
    " public.scratch\n",
    "(1 row)\n",
    "\n",
    "GREEN: Connection Count\n",
    "GREEN: Long Queries\n",
    "SKIPPED: Load (no host metrics)\n",
);

#[tokio::test]
async fn pg_diagnose_prints_red_then_yellow_with_rows_then_green_on_one_line() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:diagnose", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, REPORT_TEXT);
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0].json(),
        json!({"addon_attachment": "DATABASE", "app": "shop", "addon_service": "heroku-postgresql"})
    );
    assert_eq!(
        (
            seen[1].method.as_str(),
            seen[1].path.as_str(),
            seen[1].body.as_str()
        ),
        (
            "POST",
            "/addons/id-postgresql-concave-52656/postgres/diagnose",
            ""
        )
    );

    // A database by name; --json prints the report as the server sent it.
    let r = cli(
        &env,
        &[
            "pg:diagnose",
            "HEROKU_POSTGRESQL_ONYX",
            "-a",
            "shop",
            "--json",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v, diagnose_report_json());
    let seen = api.seen();
    assert_eq!(seen[2].json()["addon_attachment"], "HEROKU_POSTGRESQL_ONYX");
    assert_eq!(seen[3].method, "POST");

    // An unknown database is named; nothing is run.
    let r = cli(
        &env,
        &["pg:diagnose", "HEROKU_POSTGRESQL_NOPE", "-a", "shop"],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    Unknown database: HEROKU_POSTGRESQL_NOPE. Valid options are: postgresql-concave-52656.\n"
    );
    let runs = api
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/diagnose"))
        .count();
    assert_eq!(runs, 2);
}

#[tokio::test]
async fn pg_diagnose_shows_a_report_by_its_id() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:diagnose", REPORT_ID, "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, REPORT_TEXT);
    let seen = api.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/pg-diagnose/5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f")
    );

    // Upper case works, and no app is needed to look a report up.
    let r = cli(&env, &["pg:diagnose", &REPORT_ID.to_uppercase(), "--json"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["id"], REPORT_ID);
    assert_eq!(
        api.seen()[1].path,
        "/pg-diagnose/5f4c2a10-9b3e-4c1d-8e2f-0a1b2c3d4e5f"
    );

    // Unknown or expired.
    let r = cli(
        &env,
        &[
            "pg:diagnose",
            "00000000-0000-0000-0000-000000000000",
            "-a",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert_eq!(r.err, " ▸    Couldn't find that diagnose report.\n");
    assert!(!api.seen().iter().any(|s| s.method == "POST"));
}

#[tokio::test]
async fn pg_explain_takes_the_sql_last_and_sends_analyze() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let plan = "Seq Scan on items  (cost=0.00..1.10 rows=10 width=36) (actual time=0.010..0.011 rows=10 loops=1)\n\
                Planning Time: 0.050 ms\n\
                Execution Time: 0.030 ms\n";

    // One argument: the query, on DATABASE.
    let r = cli(&env, &["pg:explain", "SELECT * FROM items", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, plan);
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].json()["addon_attachment"], "DATABASE");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        (
            "POST",
            "/addons/id-postgresql-concave-52656/postgres/explain"
        )
    );
    assert_eq!(
        seen[1].json(),
        json!({"sql": "SELECT * FROM items", "analyze": true})
    );

    // Two arguments: the database, then the query.
    let r = cli(
        &env,
        &[
            "pg:explain",
            "HEROKU_POSTGRESQL_ONYX",
            "DELETE FROM items",
            "--no-analyze",
            "-a",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, plan);
    let seen = api.seen();
    assert_eq!(seen[2].json()["addon_attachment"], "HEROKU_POSTGRESQL_ONYX");
    assert_eq!(
        seen[3].json(),
        json!({"sql": "DELETE FROM items", "analyze": false})
    );

    // No query, or one too many: usage errors before any request.
    let before = api.seen().len();
    let r = cli(&env, &["pg:explain", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert!(r.err.contains("<SQL>"), "{}", r.err);
    assert!(
        r.err.ends_with("See slipway help pg:explain.\n"),
        "{}",
        r.err
    );
    let r = cli(
        &env,
        &[
            "pg:explain",
            "DATABASE",
            "SELECT 1",
            "SELECT 2",
            "-a",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err.lines().count(), 1, "{}", r.err);
    assert_eq!(api.seen().len(), before);

    let r = cli(&env, &["help", "pg:explain"]).await;
    assert_eq!(r.code, 0);
    assert!(
        r.out.contains("pg:explain [OPTIONS] [DATABASE] <SQL>"),
        "{}",
        r.out
    );
}

#[tokio::test]
async fn pg_bloat_index_usage_and_cache_hit_print_psql_tables() {
    let api = FakeApi::start(pg_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:bloat", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            " type  | schemaname |      object_name      | bloat |  waste  \n",
            "-------+------------+-----------------------+-------+---------\n",
            " table | public     | items                 |  12.3 | 96 MB\n",
            " index | public     | items::items_name_idx |   1.0 | 0 bytes\n",
            "(2 rows)\n",
            "\n",
        )
    );
    let seen = api.seen();
    assert_eq!(seen[0].json()["addon_attachment"], "DATABASE");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/addons/id-postgresql-concave-52656/postgres/bloat")
    );

    let r = cli(&env, &["pg:index-usage", "DATABASE_URL", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            " relname | percent_of_times_index_used | rows_in_table \n",
            "---------+-----------------------------+---------------\n",
            " items   |                          99 |           100\n",
            " events  |                             |             0\n",
            "(2 rows)\n",
            "\n",
        )
    );
    let seen = api.seen();
    assert_eq!(seen[2].json()["addon_attachment"], "DATABASE_URL");
    assert_eq!(
        seen[3].path,
        "/addons/id-postgresql-concave-52656/postgres/index-usage"
    );

    let r = cli(&env, &["pg:cache-hit", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            "      name      | ratio \n",
            "----------------+-------\n",
            " index hit rate |  0.99\n",
            " table hit rate |  0.95\n",
            "(2 rows)\n",
            "\n",
        )
    );
    assert_eq!(
        api.seen()[5].path,
        "/addons/id-postgresql-concave-52656/postgres/cache-hit"
    );

    let r = cli(&env, &["pg:bloat", "-a", "ghost"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, " ▸    Couldn't find that app.\n");
}

// ---- pg:backups

fn backup_json(
    num: u32,
    status: &str,
    size: u64,
    started: &str,
    finished: Option<&str>,
    error: Option<&str>,
) -> Value {
    json!({
        "id": format!("00000000-0000-4000-8000-00000000000{num}"), "num": num,
        "name": format!("b{num:03}"), "status": status, "source": "DATABASE",
        "addon": {"id": "id-postgresql-concave-52656", "name": PG},
        "size": size, "started_at": started, "finished_at": finished, "error": error,
        "scheduled": num == 1,
    })
}

fn schedule_json() -> Value {
    json!({"database": "DATABASE",
           "addon": {"id": "id-postgresql-concave-52656", "name": PG},
           "at": "02:00", "timezone": "UTC"})
}

/// The pg handler plus backups: b001 failed (scheduled), b002 completed, b003 running; one
/// schedule; a public URL on the fake server itself that serves a dump without a key.
fn backups_handler(req: &Seen, url: &str) -> Reply {
    let b001 = backup_json(
        1,
        "failed",
        0,
        "2026-11-25T02:00:00Z",
        Some("2026-11-25T02:00:09Z"),
        Some("pg_dump: error: connection to server failed."),
    );
    let b002 = backup_json(
        2,
        "completed",
        1_258_291,
        "2026-11-26T14:10:00Z",
        Some("2026-11-26T14:10:02Z"),
        None,
    );
    let b003 = backup_json(3, "running", 524_288, "2026-11-26T14:20:00Z", None, None);
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/apps/shop/pg-backups") => reply(200, json!([b003, b002, b001])),
        ("GET", "/apps/shop/pg-backups/b002" | "/apps/shop/pg-backups/latest") => reply(200, b002),
        ("GET", "/apps/shop/pg-backups/b001") => reply(200, b001),
        ("GET", "/apps/shop/pg-backups/b404") | ("DELETE", "/apps/shop/pg-backups/b404") => reply(
            404,
            json!({"id": "not_found", "message": "Couldn't find backup b404 on shop."}),
        ),
        ("DELETE", "/apps/shop/pg-backups/b001") => reply(200, b001),
        ("POST", "/apps/shop/pg-backups/b002/actions/public-url") => reply(
            200,
            json!({"url": format!("{url}/pg-backup-files/b002.dump?token=t0k3n"),
                   "expires_at": "2026-11-26T15:10:00Z"}),
        ),
        ("POST", "/apps/shop/pg-backups/b001/actions/public-url") => reply(
            200,
            json!({"url": "/pg-backup-files/gone.dump", "expires_at": "2026-11-26T15:10:00Z"}),
        ),
        ("GET", "/pg-backup-files/gone.dump") => reply(
            410,
            json!({"id": "gone", "message": "This backup URL has expired."}),
        ),
        ("GET", "/pg-backup-files/b002.dump") if req.query.as_deref() == Some("token=t0k3n") => {
            Reply {
                status: 200,
                headers: vec![("content-type", "application/octet-stream".into())],
                body: "PGDMP\u{1}\u{e}\u{0}dump bytes".into(),
            }
        }
        ("POST", "/apps/shop/pg-backups/b002/actions/restore") => reply(
            200,
            json!({"status": "completed", "backup": "b002", "database": "DATABASE"}),
        ),
        ("GET", "/apps/shop/pg-backup-schedules") => reply(200, json!([schedule_json()])),
        ("PUT" | "DELETE", "/apps/shop/pg-backup-schedules/DATABASE") => {
            reply(200, schedule_json())
        }
        _ => pg_handler(req, url),
    }
}

#[tokio::test]
async fn pg_backups_lists_backups_and_schedules() {
    let api = FakeApi::start(|req, url| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/apps/empty/pg-backups" | "/apps/empty/pg-backup-schedules") => {
            reply(200, json!([]))
        }
        _ => backups_handler(req, url),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:backups", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        concat!(
            "=== Backups\n",
            "\n",
            "ID    Created at                 Status                               Size    Database\n",
            "────  ─────────────────────────  ───────────────────────────────────  ──────  ────────\n",
            "b003  2026-11-26 14:20:00 +0000  Running                              512 KB  DATABASE\n",
            "b002  2026-11-26 14:10:00 +0000  Completed 2026-11-26 14:10:02 +0000  1.2 MB  DATABASE\n",
            "b001  2026-11-25 02:00:00 +0000  Failed 2026-11-25 02:00:09 +0000     0 B     DATABASE\n",
            "\n",
            "=== Backup Schedules\n",
            "\n",
            "DATABASE_URL: daily at 2:00 UTC\n",
        )
    );
    let paths: Vec<(String, String)> = api.seen().into_iter().map(|s| (s.method, s.path)).collect();
    assert_eq!(
        paths,
        [
            ("GET".to_owned(), "/apps/shop/pg-backups".to_owned()),
            (
                "GET".to_owned(),
                "/apps/shop/pg-backup-schedules".to_owned()
            ),
        ]
    );

    let r = cli(&env, &["pg:backups", "-a", "empty"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== Backups\n\nNo backups. Capture one with slipway pg:backups:capture\n\n\
         === Backup Schedules\n\nNo backup schedules found. Use slipway pg:backups:schedule to set one up\n"
    );

    let r = cli(&env, &["pg:backups:schedules", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== Backup Schedules\n\nDATABASE_URL: daily at 2:00 UTC\n"
    );
    let r = cli(&env, &["pg:backups:schedules", "-a", "empty"]).await;
    assert_eq!(
        r.out,
        "=== Backup Schedules\n\nNo backup schedules found. Use slipway pg:backups:schedule to set one up\n"
    );

    // An app that does not exist says so.
    let r = cli(&env, &["pg:backups", "-a", "ghost"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, " ▸    Couldn't find that app.\n");
}

#[tokio::test]
async fn pg_backups_info_shows_one_backup() {
    let api = FakeApi::start(backups_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:backups:info", "b002", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== Backup b002

Database:    DATABASE
Started at:  2026-11-26 14:10:00 +0000
Finished at: 2026-11-26 14:10:02 +0000
Status:      Completed
Type:        Manual
Backup Size: 1.2 MB
"
    );
    let r = cli(&env, &["pg:backups:info", "b001", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "=== Backup b001

Database:    DATABASE
Started at:  2026-11-25 02:00:00 +0000
Finished at: 2026-11-25 02:00:09 +0000
Status:      Failed
Type:        Scheduled
Backup Size: 0 B
Error:       pg_dump: error: connection to server failed.
"
    );
    // Without a backup: the newest one, even while it runs.
    let r = cli(&env, &["pg:backups:info", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.starts_with("=== Backup b003\n\nDatabase:    DATABASE\nStarted at:  2026-11-26 14:20:00 +0000\nStatus:      Running\n"),
        "{}",
        r.out
    );
    let r = cli(&env, &["pg:backups:info", "b404", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, " ▸    Couldn't find backup b404 on shop.\n");
}

/// A fake where a capture of DATABASE starts b003, which runs for one more check and then
/// completes; a capture of HEROKU_POSTGRESQL_BIG starts b004, which fails.
async fn capture_api() -> FakeApi {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = Arc::new(AtomicUsize::new(0));
    FakeApi::start(move |req, url| {
        let started = "2026-11-26T14:20:00Z";
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/apps/shop/pg-backups") if req.json()["database"] == "DATABASE" => {
                reply(202, backup_json(3, "running", 0, started, None, None))
            }
            ("POST", "/apps/shop/pg-backups") => {
                let mut b = backup_json(4, "running", 0, started, None, None);
                b["source"] = json!("HEROKU_POSTGRESQL_BIG");
                reply(202, b)
            }
            ("GET", "/apps/shop/pg-backups/b003") => {
                if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                    reply(200, backup_json(3, "running", 524_288, started, None, None))
                } else {
                    let done = Some("2026-11-26T14:20:05Z");
                    reply(
                        200,
                        backup_json(3, "completed", 1_258_291, started, done, None),
                    )
                }
            }
            ("GET", "/apps/shop/pg-backups/b004") => {
                let done = Some("2026-11-26T14:20:01Z");
                let mut b = backup_json(
                    4,
                    "failed",
                    0,
                    started,
                    done,
                    Some("pg_dump: error: out of disk space."),
                );
                b["source"] = json!("HEROKU_POSTGRESQL_BIG");
                reply(200, b)
            }
            _ => backups_handler(req, url),
        }
    })
    .await
}

#[tokio::test]
async fn pg_backups_capture_follows_the_backup_until_it_completes() {
    let api = capture_api().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_for(&api, dir.path());
    let r = cli(
        &env,
        &["pg:backups:capture", "-a", "shop", "--wait-interval", "1"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Starting backup of postgresql-concave-52656... done

Use Ctrl-C at any time to stop monitoring progress; the backup will continue running.
Use slipway pg:backups:info to check progress.

Backing up DATABASE to b003... done
"
    );
    assert_eq!(r.err, "");
    let seen: Vec<(String, String, Value)> = api
        .seen()
        .into_iter()
        .map(|s| (s.method.clone(), s.path.clone(), s.json()))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("POST", "/actions/addon-attachments/resolve")
    );
    assert_eq!(
        (seen[1].0.as_str(), seen[1].1.as_str(), &seen[1].2),
        (
            "POST",
            "/apps/shop/pg-backups",
            &json!({"database": "DATABASE"})
        )
    );
    for s in &seen[2..] {
        assert_eq!(
            (s.0.as_str(), s.1.as_str()),
            ("GET", "/apps/shop/pg-backups/b003")
        );
    }

    // On a terminal the size so far is redrawn in place.
    let api = capture_api().await;
    env = env_for(&api, dir.path());
    env.out_is_tty = true;
    let r = cli(
        &env,
        &[
            "pg:backups:capture",
            "DATABASE_URL",
            "-a",
            "shop",
            "--wait-interval",
            "1",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.ends_with(
            "\n\nBacking up DATABASE to b003... \
             \rBacking up DATABASE to b003... 0 B\x1b[K\
             \rBacking up DATABASE to b003... 512 KB\x1b[K\
             \rBacking up DATABASE to b003... done\x1b[K\n"
        ),
        "{:?}",
        r.out
    );
    assert_eq!(api.seen()[0].json()["addon_attachment"], "DATABASE_URL");

    // A backup that fails: its error, and a non-zero exit.
    let api = capture_api().await;
    env = env_for(&api, dir.path());
    let r = cli(
        &env,
        &[
            "pg:backups:capture",
            "HEROKU_POSTGRESQL_BIG_URL",
            "-a",
            "shop",
            "--wait-interval",
            "1",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.out
            .starts_with("Starting backup of postgresql-big-12... done\n"),
        "{}",
        r.out
    );
    assert!(
        r.out
            .ends_with("\nBacking up HEROKU_POSTGRESQL_BIG to b004... !\n"),
        "{}",
        r.out
    );
    assert_eq!(
        r.err,
        " ▸    An error occurred and the backup did not finish: pg_dump: error: out of disk space. See slipway pg:backups:info b004.\n"
    );
    assert_eq!(
        api.seen()[1].json(),
        json!({"database": "HEROKU_POSTGRESQL_BIG"})
    );
}

#[tokio::test]
async fn pg_backups_restore_needs_confirm_then_restores() {
    let api = FakeApi::start(backups_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:backups:restore", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert_eq!(
        r.err,
        " ▸    This will replace all data in DATABASE on shop with the latest completed backup. To proceed, run: slipway pg:backups:restore -a shop --confirm shop\n"
    );
    let r = cli(
        &env,
        &[
            "pg:backups:restore",
            "b002",
            "HEROKU_POSTGRESQL_ONYX",
            "-a",
            "shop",
            "--confirm",
            "other",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    This will replace all data in HEROKU_POSTGRESQL_ONYX on shop with backup b002. To proceed, run: slipway pg:backups:restore b002 HEROKU_POSTGRESQL_ONYX -a shop --confirm shop\n"
    );
    // A lone upper-case argument is the database.
    let r = cli(&env, &["pg:backups:restore", "DATABASE_URL", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    This will replace all data in DATABASE_URL on shop with the latest completed backup. To proceed, run: slipway pg:backups:restore DATABASE_URL -a shop --confirm shop\n"
    );
    assert!(api.seen().is_empty(), "{:?}", api.seen());

    let r = cli(
        &env,
        &["pg:backups:restore", "-a", "shop", "--confirm", "shop"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Starting restore of b002 to postgresql-concave-52656... done\nRestoring... done\n"
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].json()["addon_attachment"], "DATABASE");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/apps/shop/pg-backups/latest")
    );
    assert_eq!(
        (seen[2].method.as_str(), seen[2].path.as_str()),
        ("POST", "/apps/shop/pg-backups/b002/actions/restore")
    );
    assert_eq!(seen[2].json(), json!({"database": "DATABASE"}));

    let r = cli(
        &env,
        &[
            "pg:backups:restore",
            "DATABASE_URL",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    let seen = api.seen();
    assert_eq!(seen[3].json()["addon_attachment"], "DATABASE_URL");
    assert_eq!(seen[4].path, "/apps/shop/pg-backups/latest");

    // A backup that did not complete is refused before the restore.
    let r = cli(
        &env,
        &[
            "pg:backups:restore",
            "b001",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "");
    assert_eq!(
        r.err,
        " ▸    Backup b001 is failed; only a completed backup can be restored.\n"
    );
    // An unknown backup: the server's message, and no restore.
    let r = cli(
        &env,
        &[
            "pg:backups:restore",
            "b404",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.err, " ▸    Couldn't find backup b404 on shop.\n");
    assert!(!api
        .seen()
        .iter()
        .any(|s| s.path.ends_with("/actions/restore") && !s.path.contains("b002")));
}

#[tokio::test]
async fn pg_backups_delete_needs_confirm() {
    let api = FakeApi::start(backups_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:backups:delete", "b001", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        " ▸    This will permanently delete backup b001 of shop. To proceed, run: slipway pg:backups:delete b001 -a shop --confirm shop\n"
    );
    assert!(api.seen().is_empty());
    let r = cli(
        &env,
        &[
            "pg:backups:delete",
            "b001",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "Deleting backup b001 on ⬢ shop... done\n");
    let last = api.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/apps/shop/pg-backups/b001")
    );
    let r = cli(
        &env,
        &[
            "pg:backups:delete",
            "b404",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "Deleting backup b404 on ⬢ shop... !\n");
    assert_eq!(r.err, " ▸    Couldn't find backup b404 on shop.\n");
}

#[tokio::test]
async fn pg_backups_schedule_checks_the_time_then_puts_it() {
    let api = FakeApi::start(backups_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    for (at, message) in [
        (
            "25:00",
            " ▸    Invalid --at \"25:00\": give the time as HH:MM in 24-hour form, optionally followed by the time zone, e.g. --at '02:00 UTC'.\n",
        ),
        (
            "2am",
            " ▸    Invalid --at \"2am\": give the time as HH:MM in 24-hour form, optionally followed by the time zone, e.g. --at '02:00 UTC'.\n",
        ),
        (
            "02:00 America/New_York",
            " ▸    Backup schedules only support the UTC time zone for now, not America/New_York. Give the time in UTC, e.g. --at '02:00 UTC'.\n",
        ),
    ] {
        let r = cli(&env, &["pg:backups:schedule", "-a", "shop", "--at", at]).await;
        assert_eq!(r.code, 1, "{at}");
        assert_eq!(r.out, "");
        assert_eq!(r.err, message);
    }
    // --at is required.
    let r = cli(&env, &["pg:backups:schedule", "-a", "shop"]).await;
    assert_eq!(r.code, 1);
    assert!(api.seen().is_empty(), "{:?}", api.seen());

    let r = cli(
        &env,
        &[
            "pg:backups:schedule",
            "DATABASE_URL",
            "-a",
            "shop",
            "--at",
            "02:00 UTC",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Scheduling automatic daily backups of postgresql-concave-52656 at 02:00 UTC... done\n"
    );
    let seen = api.seen();
    assert_eq!(seen[0].json()["addon_attachment"], "DATABASE_URL");
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("PUT", "/apps/shop/pg-backup-schedules/DATABASE")
    );
    assert_eq!(seen[1].json(), json!({"at": "02:00 UTC"}));

    // A time without a zone is UTC.
    let r = cli(&env, &["pg:backups:schedule", "-a", "shop", "--at", "3:30"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(api.seen().pop().unwrap().json(), json!({"at": "03:30 UTC"}));

    let r = cli(&env, &["pg:backups:unschedule", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Stopping automatic backups of postgresql-concave-52656... done\n"
    );
    let last = api.seen().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/apps/shop/pg-backup-schedules/DATABASE")
    );
}

#[tokio::test]
async fn pg_backups_url_and_download() {
    let api = FakeApi::start(backups_handler).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    let r = cli(&env, &["pg:backups:url", "b002", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        format!("{}/pg-backup-files/b002.dump?token=t0k3n\n", api.url)
    );

    let r = cli(&env, &["pg:backups:download", "-a", "shop"]).await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Getting backup from ⬢ shop... done, #b002\nDownloading latest.dump... done\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("latest.dump")).unwrap(),
        b"PGDMP\x01\x0e\x00dump bytes"
    );
    let seen = api.seen();
    let n = seen.len();
    assert_eq!(
        (seen[n - 3].method.as_str(), seen[n - 3].path.as_str()),
        ("GET", "/apps/shop/pg-backups/latest")
    );
    assert_eq!(
        (seen[n - 2].method.as_str(), seen[n - 2].path.as_str()),
        ("POST", "/apps/shop/pg-backups/b002/actions/public-url")
    );
    // The file is fetched without the API key.
    assert_eq!(seen[n - 1].path, "/pg-backup-files/b002.dump");
    assert_eq!(seen[n - 1].authorization, None);

    let r = cli(
        &env,
        &[
            "pg:backups:download",
            "b002",
            "-a",
            "shop",
            "-o",
            "shop.dump",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out,
        "Getting backup from ⬢ shop... done, #b002\nDownloading shop.dump... done\n"
    );
    assert!(dir.path().join("shop.dump").exists());

    // A backup that does not exist: nothing is written.
    let r = cli(
        &env,
        &[
            "pg:backups:download",
            "b404",
            "-a",
            "shop",
            "-o",
            "missing.dump",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(r.out, "Getting backup from ⬢ shop... !\n");
    assert_eq!(r.err, " ▸    Couldn't find backup b404 on shop.\n");
    assert!(!dir.path().join("missing.dump").exists());
    // A URL that fails (given as a path on the API server): nothing is written either.
    let r = cli(
        &env,
        &[
            "pg:backups:download",
            "b001",
            "-a",
            "shop",
            "-o",
            "gone.dump",
        ],
    )
    .await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.out,
        "Getting backup from ⬢ shop... done, #b001\nDownloading gone.dump... !\n"
    );
    assert_eq!(r.err, " ▸    This backup URL has expired.\n");
    assert_eq!(api.seen().pop().unwrap().path, "/pg-backup-files/gone.dump");
    assert!(!dir.path().join("gone.dump").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// With `--json`, standard output is the JSON alone: the action line (`Adding ... done`) goes
/// to standard error, so the output can be piped into a JSON tool.
#[tokio::test]
async fn json_output_is_only_json() {
    let domain = json!({
        "id": "d1", "hostname": "www.example.com", "kind": "custom",
        "cname": "fair-meadow-1a2b3c.apps.test", "status": "none", "acm_status": null,
        "app": {"id": "a1", "name": "demo"}, "sni_endpoint": null,
        "created_at": "2026-11-27T00:00:00Z", "updated_at": "2026-11-27T00:00:00Z"
    });
    let answer = domain.clone();
    let api = FakeApi::start(move |req, _| match req.method.as_str() {
        "POST" | "DELETE" => reply(201, answer.clone()),
        _ => reply(
            200,
            json!([
                formation_json("web", 1, "basic"),
                formation_json("worker", 0, "basic")
            ]),
        ),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&api, dir.path());
    for args in [
        &["domains:add", "www.example.com", "--json", "-a", "demo"][..],
        &["domains:remove", "www.example.com", "--json", "-a", "demo"][..],
        &["ps:type", "--json", "-a", "demo"][..],
    ] {
        let r = cli(&env, args).await;
        assert_eq!(r.code, 0, "{args:?}: {}", r.err);
        let parsed: Result<Value, _> = serde_json::from_str(&r.out);
        assert!(
            parsed.is_ok(),
            "{args:?}: stdout is not JSON alone:\n{}",
            r.out
        );
    }
    let r = cli(
        &env,
        &["domains:add", "www.example.com", "--json", "-a", "demo"],
    )
    .await;
    assert!(
        r.err.contains("Adding www.example.com to ⬢ demo... done"),
        "{}",
        r.err
    );
    // Without --json the action line is on standard output, as before.
    let r = cli(&env, &["domains:add", "www.example.com", "-a", "demo"]).await;
    assert!(
        r.out
            .starts_with("Adding www.example.com to ⬢ demo... done\n"),
        "{}",
        r.out
    );
}
