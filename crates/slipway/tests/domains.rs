//! Custom domains, SNI certificates, router timeouts and the router features, through the real
//! `slipway` CLI and the Platform API over HTTP. What the router does with them is tested with
//! the router.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use serde_json::{json, Value};

const ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// An API call: status and JSON body (`Value::Null` when the body is not JSON), plus the raw
/// text so tests can look for what must never be in it.
async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s
        .http()
        .request(method, format!("{}{path}", s.api_url()))
        .bearer_auth(&s.key)
        .header("Accept", ACCEPT);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// Runs the CLI and insists it fails with one ` ▸    ` line on stderr; returns that line.
fn fails(s: &TestServer, args: &[&str]) -> String {
    let out: Output = s.cli(&s.home(), args);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "slipway {args:?} should fail: {}\n{err}",
        text(&out.stdout)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line for {args:?}: {err}");
    assert!(lines[0].starts_with(" ▸    "), "{err}");
    lines[0].to_string()
}

fn ok(s: &TestServer, args: &[&str]) -> String {
    s.ok(&s.home(), args)
}

/// `<adjective>-<noun>-<6 hex>.<domain>`.
fn is_dns_target(t: &str, domain: &str) -> bool {
    let Some(label) = t.strip_suffix(&format!(".{domain}")) else {
        return false;
    };
    let parts: Vec<&str> = label.split('-').collect();
    parts.len() == 3
        && parts[..2]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[2].len() == 6
        && parts[2]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_domains_through_the_cli_and_the_api() {
    let s = TestServer::start_with(&["--dns-target-domain", "dns.slipway.test"]);
    ok(&s, &["apps:create", "shop", "--no-remote"]);
    ok(&s, &["apps:create", "other", "--no-remote"]);

    // Every app has its <app>.<base-domain> domain, first in the list.
    let list: Value = serde_json::from_str(&ok(&s, &["domains", "-a", "shop", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "heroku");
    assert_eq!(list[0]["hostname"], "shop.localhost");
    assert_eq!(list[0]["cname"], Value::Null);
    assert_eq!(list[0]["status"], "none");
    assert_eq!(list[0]["app"]["name"], "shop");

    // domains:add prints the DNS target; the name is stored in lower case.
    let out = ok(&s, &["domains:add", "www.Example.com", "-a", "shop"]);
    assert!(
        out.contains("Adding www.example.com to ⬢ shop... done"),
        "{out}"
    );
    let prefix = "Configure your app's DNS provider to point to the DNS Target ";
    let line = out
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("{out}"));
    let target = line.split(prefix).nth(1).unwrap().trim_end_matches('.');
    assert!(is_dns_target(target, "dns.slipway.test"), "{target}");
    assert!(!out.contains("apex"), "{out}");
    // An apex domain (two labels) needs an ALIAS/ANAME record or A records.
    let out = ok(&s, &["domains:add", "example.com", "-a", "shop"]);
    assert!(out.contains("apex domain"), "{out}");
    assert!(out.contains("ALIAS or ANAME"), "{out}");
    ok(&s, &["domains:add", "*.example.org", "-a", "shop"]);

    // The wire shape.
    let (status, list, _) = call(&s, "GET", "/apps/shop/domains", None).await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    let hosts: Vec<&str> = list
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "shop.localhost",
            "*.example.org",
            "example.com",
            "www.example.com"
        ]
    );
    let www = &list[3];
    let mut keys: Vec<&str> = www
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "acm_status",
            "acm_status_reason",
            "app",
            "cname",
            "created_at",
            "hostname",
            "id",
            "kind",
            "sni_endpoint",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(www["kind"], "custom");
    assert_eq!(www["cname"], target);
    assert_eq!(www["status"], "succeeded");
    assert_eq!(www["acm_status"], Value::Null);
    assert_eq!(www["acm_status_reason"], Value::Null);
    assert_eq!(www["sni_endpoint"], Value::Null);
    assert_eq!(www["app"]["name"], "shop");
    assert!(www["app"]["id"].is_string());
    // DNS targets differ per domain.
    assert_ne!(list[2]["cname"], www["cname"]);
    let id = www["id"].as_str().unwrap();
    let (status, by_id, _) = call(&s, "GET", &format!("/apps/shop/domains/{id}"), None).await;
    assert_eq!(
        (status, by_id["hostname"].as_str()),
        (200, Some("www.example.com"))
    );
    let (status, by_name, _) = call(&s, "GET", "/apps/shop/domains/WWW.example.com", None).await;
    assert_eq!((status, by_name["id"].as_str()), (200, Some(id)));
    let (status, heroku, _) = call(&s, "GET", "/apps/shop/domains/shop.localhost", None).await;
    assert_eq!((status, heroku["kind"].as_str()), (200, Some("heroku")));
    assert_eq!(heroku["id"], list[0]["id"]);
    let (status, e, _) = call(&s, "GET", "/apps/shop/domains/nope.example.com", None).await;
    assert_eq!((status, e["id"].as_str()), (404, Some("not_found")));
    // Another app cannot see it.
    let (status, _, _) = call(&s, "GET", &format!("/apps/other/domains/{id}"), None).await;
    assert_eq!(status, 404);

    // The CLI's table.
    let out = ok(&s, &["domains", "-a", "shop"]);
    assert!(
        out.starts_with("=== shop Heroku Domain\n\nshop.localhost\n"),
        "{out}"
    );
    assert!(out.contains("=== shop Custom Domains"), "{out}");
    for col in [
        "Domain Name",
        "DNS Record Type",
        "DNS Target",
        "SNI Endpoint",
    ] {
        assert!(out.contains(col), "{col}: {out}");
    }
    let row = |host: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("{host}: {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("www.example.com"),
        format!("www.example.com CNAME {target} none")
    );
    assert!(
        row("example.com").starts_with("example.com ALIAS or ANAME "),
        "{out}"
    );
    let info = ok(&s, &["domains:info", "www.example.com", "-a", "shop"]);
    assert!(info.starts_with("=== www.example.com"), "{info}");
    assert!(info.contains(target) && info.contains("CNAME"), "{info}");

    // Validation: Heroku's 422 invalid_params with a message that says what is wrong.
    for bad in [
        "bad_name.example.com",
        "-bad.example.com",
        "bad-.example.com",
        "a..example.com",
        "example",
        "www.*.example.com",
        "1.2.3.4",
        "",
    ] {
        let (status, e, _) = call(
            &s,
            "POST",
            "/apps/shop/domains",
            Some(json!({"hostname": bad, "sni_endpoint": null})),
        )
        .await;
        assert_eq!(
            (status, e["id"].as_str()),
            (422, Some("invalid_params")),
            "{bad}: {e}"
        );
        assert!(e["message"].as_str().unwrap().len() > 10, "{e}");
    }
    let long = format!("{}.example.com", "a".repeat(64));
    let (status, _, _) = call(
        &s,
        "POST",
        "/apps/shop/domains",
        Some(json!({"hostname": long})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, e, _) = call(&s, "POST", "/apps/shop/domains", Some(json!({}))).await;
    assert_eq!((status, e["id"].as_str()), (422, Some("invalid_params")));
    for under_base in ["api.localhost", "localhost", "*.localhost", "a.b.localhost"] {
        let (status, e, _) = call(
            &s,
            "POST",
            "/apps/shop/domains",
            Some(json!({"hostname": under_base})),
        )
        .await;
        assert_eq!(
            (status, e["id"].as_str()),
            (422, Some("invalid_params")),
            "{under_base}"
        );
        assert!(
            e["message"].as_str().unwrap().contains("base domain"),
            "{e}"
        );
    }
    let (status, e, _) = call(
        &s,
        "POST",
        "/apps/shop/domains",
        Some(json!({"hostname": "WWW.EXAMPLE.COM"})),
    )
    .await;
    assert_eq!((status, e["id"].as_str()), (422, Some("invalid_params")));
    assert_eq!(e["message"], "Domain already added to this app.");
    let (status, e, _) = call(
        &s,
        "POST",
        "/apps/other/domains",
        Some(json!({"hostname": "www.example.com"})),
    )
    .await;
    assert_eq!((status, e["id"].as_str()), (422, Some("invalid_params")));
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("www.example.com is currently in use by another app."),
        "{e}"
    );
    // The CLI: one line, non-zero exit.
    let err = fails(&s, &["domains:add", "bad_name.example.com", "-a", "shop"]);
    assert!(err.contains("not a valid domain name"), "{err}");
    let err = fails(&s, &["domains:add", "www.example.com", "-a", "other"]);
    assert!(err.contains("currently in use by another app"), "{err}");
    let err = fails(&s, &["domains:add", "www.localhost", "-a", "other"]);
    assert!(err.contains("base domain"), "{err}");

    // The heroku domain cannot be removed.
    let (status, e, _) = call(&s, "DELETE", "/apps/shop/domains/shop.localhost", None).await;
    assert_eq!((status, e["id"].as_str()), (422, Some("invalid_params")));
    let err = fails(&s, &["domains:remove", "shop.localhost", "-a", "shop"]);
    assert!(err.contains("cannot be removed"), "{err}");
    fails(&s, &["domains:remove", "nope.example.com", "-a", "shop"]);

    // Removing frees the name for other apps.
    let out = ok(&s, &["domains:remove", "www.example.com", "-a", "shop"]);
    assert!(
        out.contains("Removing www.example.com from ⬢ shop... done"),
        "{out}"
    );
    let (_, list, _) = call(&s, "GET", "/apps/shop/domains", None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (status, d, _) = call(
        &s,
        "POST",
        "/apps/other/domains",
        Some(json!({"hostname": "www.example.com", "sni_endpoint": null})),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["app"]["name"], "other");
    // So does destroying the app.
    ok(&s, &["apps:destroy", "other", "--confirm", "other"]);
    ok(&s, &["domains:add", "www.example.com", "-a", "shop"]);
}

/// A self-signed certificate for `names`: (chain PEM, key PEM).
fn self_signed(names: &[&str]) -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

/// The base64 body of a PEM, which must never show up anywhere.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_certificates_through_the_cli_and_the_api() {
    let s = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    ok(&s, &["apps:create", "shop", "--no-remote"]);
    for d in [
        "www.example.com",
        "shop.example.com",
        "a.b.example.com",
        "other.test",
    ] {
        ok(&s, &["domains:add", d, "-a", "shop"]);
    }
    let out = ok(&s, &["certs", "-a", "shop"]);
    assert!(out.contains("shop has no SSL certificates"), "{out}");

    let (chain, key) = self_signed(&["shop.example.com", "*.example.com"]);
    let (other_chain, other_key) = self_signed(&["api.example.net"]);
    let secrets = [pem_body(&key), pem_body(&other_key)];
    let cert_file = write(files.path(), "cert.pem", &chain);
    let key_file = write(files.path(), "key.pem", &key);
    let other_key_file = write(files.path(), "other.key", &other_key);
    let mut seen = Vec::new();

    // A key that is not the certificate's: a clear error, nothing added.
    let err = fails(
        &s,
        &["certs:add", &cert_file, &other_key_file, "-a", "shop"],
    );
    assert!(
        err.contains("private key does not match the certificate"),
        "{err}"
    );
    let err = fails(
        &s,
        &[
            "certs:add",
            &cert_file,
            "/nonexistent/key.pem",
            "-a",
            "shop",
        ],
    );
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
    let (status, e, t) = call(
        &s,
        "POST",
        "/apps/shop/sni-endpoints",
        Some(json!({"certificate_chain": chain, "private_key": other_key})),
    )
    .await;
    assert_eq!(
        (status, e["id"].as_str()),
        (422, Some("invalid_params")),
        "{e}"
    );
    seen.push(t);
    let (status, e, t) = call(
        &s,
        "POST",
        "/apps/shop/sni-endpoints",
        Some(json!({"certificate_chain": "not a certificate", "private_key": key})),
    )
    .await;
    assert_eq!(
        (status, e["id"].as_str()),
        (422, Some("invalid_params")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("No certificate found in the PEM"),
        "{e}"
    );
    seen.push(t);
    let (status, _, t) = call(
        &s,
        "POST",
        "/apps/shop/sni-endpoints",
        Some(json!({"certificate_chain": chain})),
    )
    .await;
    assert_eq!(status, 422);
    seen.push(t);
    let (_, list, _) = call(&s, "GET", "/apps/shop/sni-endpoints", None).await;
    assert_eq!(list, json!([]));

    // certs:add.
    let out = ok(&s, &["certs:add", &cert_file, &key_file, "-a", "shop"]);
    assert!(
        out.contains("Adding SSL certificate to ⬢ shop... done"),
        "{out}"
    );
    assert!(
        out.contains("Common Name(s): shop.example.com, *.example.com"),
        "{out}"
    );
    assert!(
        out.contains("Domains:        shop.example.com, www.example.com"),
        "{out}"
    );
    assert!(
        out.contains("Expires At:") && out.contains("Issuer:"),
        "{out}"
    );
    assert!(out.contains("SSL certificate is self signed."), "{out}");
    seen.push(out);

    let (status, list, t) = call(&s, "GET", "/apps/shop/sni-endpoints", None).await;
    assert_eq!(status, 200);
    seen.push(t);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    let e = &list[0];
    let name = e["name"].as_str().unwrap().to_string();
    let parts: Vec<&str> = name.split('-').collect();
    assert!(
        parts.len() == 3 && parts[2].len() == 5 && parts[2].bytes().all(|b| b.is_ascii_digit()),
        "{name}"
    );
    assert!(e["id"].is_string() && e["created_at"].is_string() && e["updated_at"].is_string());
    assert_eq!(e["certificate_chain"], chain.as_str());
    assert_eq!(e["app"]["name"], "shop");
    assert!(e.get("private_key").is_none(), "{e}");
    assert_eq!(e["domains"], json!(["shop.example.com", "www.example.com"]));
    let c = &e["ssl_cert"];
    assert_eq!(
        c["cert_domains"],
        json!(["shop.example.com", "*.example.com"])
    );
    assert_eq!(c["self_signed?"], true);
    assert_eq!(c["ca_signed?"], false);
    assert_eq!(c["subject"], c["issuer"]);
    assert!(c["subject"].as_str().unwrap().contains("CN="), "{c}");
    let expires = chrono::DateTime::parse_from_rfc3339(c["expires_at"].as_str().unwrap()).unwrap();
    let starts = chrono::DateTime::parse_from_rfc3339(c["starts_at"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now() && starts < expires, "{c}");

    // Domains name the certificate that covers them, the wildcard included.
    for (host, covered) in [
        ("www.example.com", true),
        ("shop.example.com", true),
        ("a.b.example.com", false),
        ("other.test", false),
    ] {
        let (_, d, _) = call(&s, "GET", &format!("/apps/shop/domains/{host}"), None).await;
        if covered {
            assert_eq!(d["sni_endpoint"]["name"], name.as_str(), "{host}");
            assert_eq!(d["sni_endpoint"]["id"], e["id"], "{host}");
        } else {
            assert_eq!(d["sni_endpoint"], Value::Null, "{host}");
        }
    }
    let out = ok(&s, &["domains", "-a", "shop"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("www.example.com ") && l.trim_end().ends_with(&name)),
        "{out}"
    );

    // certs and certs:info (with one certificate --name is optional).
    let out = ok(&s, &["certs", "-a", "shop"]);
    for col in [
        "Name",
        "Common Name(s)",
        "Expires",
        "Trusted",
        "Type",
        "Domains",
    ] {
        assert!(out.lines().next().unwrap().contains(col), "{col}: {out}");
    }
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("shop.example.com, *.example.com"), "{row}");
    assert!(row.contains("False") && row.contains("SNI"), "{row}");
    seen.push(out);
    let out = ok(&s, &["certs:info", "-a", "shop"]);
    assert!(out.contains(&format!("=== {name}")), "{out}");
    assert!(out.contains("Subject:"), "{out}");
    seen.push(out);
    seen.push(ok(
        &s,
        &["certs:info", "--name", &name, "-a", "shop", "--json"],
    ));
    seen.push(ok(&s, &["certs", "-a", "shop", "--json"]));
    let (status, by_id, t) = call(
        &s,
        "GET",
        &format!("/apps/shop/sni-endpoints/{}", e["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, by_id["name"].as_str()), (200, Some(name.as_str())));
    seen.push(t);

    // A second certificate: now --name is needed.
    let other_cert_file = write(files.path(), "other.pem", &other_chain);
    let out = ok(
        &s,
        &[
            "certs:add",
            &other_cert_file,
            &other_key_file,
            "-a",
            "shop",
            "--json",
        ],
    );
    seen.push(out.clone());
    // With --json, standard output is the JSON alone.
    let second: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let second_name = second["name"].as_str().unwrap().to_string();
    assert_ne!(second_name, name);
    assert_eq!(second["domains"], json!([]));
    let err = fails(&s, &["certs:info", "-a", "shop"]);
    assert!(err.contains("--name"), "{err}");
    let err = fails(&s, &["certs:remove", "-a", "shop", "--confirm", "shop"]);
    assert!(err.contains("--name"), "{err}");

    // certs:update replaces the chain and key, checked the same way.
    let (new_chain, new_key) = self_signed(&["www.example.com"]);
    let new_cert_file = write(files.path(), "new.pem", &new_chain);
    let new_key_file = write(files.path(), "new.key", &new_key);
    let err = fails(
        &s,
        &[
            "certs:update",
            &new_cert_file,
            &key_file,
            "--name",
            &second_name,
            "-a",
            "shop",
        ],
    );
    assert!(err.contains("does not match"), "{err}");
    let out = ok(
        &s,
        &[
            "certs:update",
            &new_cert_file,
            &new_key_file,
            "--name",
            &second_name,
            "-a",
            "shop",
        ],
    );
    assert!(
        out.contains(&format!(
            "Updating SSL certificate {second_name} for ⬢ shop... done"
        )),
        "{out}"
    );
    seen.push(out);
    let (_, updated, t) = call(
        &s,
        "GET",
        &format!("/apps/shop/sni-endpoints/{second_name}"),
        None,
    )
    .await;
    assert_eq!(
        updated["ssl_cert"]["cert_domains"],
        json!(["www.example.com"])
    );
    assert_eq!(updated["domains"], json!(["www.example.com"]));
    seen.push(t);
    let (status, patched, t) = call(
        &s,
        "PATCH",
        &format!("/apps/shop/sni-endpoints/{second_name}"),
        Some(json!({"certificate_chain": other_chain, "private_key": other_key})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    seen.push(t);

    // certs:remove needs --confirm APP.
    let err = fails(&s, &["certs:remove", "--name", &name, "-a", "shop"]);
    assert!(err.contains("--confirm shop"), "{err}");
    let err = fails(
        &s,
        &[
            "certs:remove",
            "--name",
            &name,
            "-a",
            "shop",
            "--confirm",
            "nope",
        ],
    );
    assert!(err.contains("did not match"), "{err}");
    let out = ok(
        &s,
        &[
            "certs:remove",
            "--name",
            &name,
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
    );
    assert!(
        out.contains(&format!(
            "Removing SSL certificate {name} from ⬢ shop... done"
        )),
        "{out}"
    );
    let (_, list, t) = call(&s, "GET", "/apps/shop/sni-endpoints", None).await;
    seen.push(t);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _, _) = call(&s, "GET", &format!("/apps/shop/sni-endpoints/{name}"), None).await;
    assert_eq!(status, 404);
    let (_, d, _) = call(&s, "GET", "/apps/shop/domains/shop.example.com", None).await;
    assert_eq!(d["sni_endpoint"], Value::Null);
    let (status, deleted, t) = call(
        &s,
        "DELETE",
        &format!("/apps/shop/sni-endpoints/{second_name}"),
        None,
    )
    .await;
    assert_eq!(
        (status, deleted["name"].as_str()),
        (200, Some(second_name.as_str()))
    );
    seen.push(t);

    // The private keys appear in no answer, CLI output, app log or server log.
    seen.push(s.logs("shop"));
    seen.push(s.log.lock().unwrap().join("\n"));
    for text in &seen {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for secret in &secrets {
            // The private scalar, past the PKCS#8 header every P-256 key shares.
            assert!(!text.contains(&secret[52..88]), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn router_timeouts_and_router_features() {
    let s = TestServer::start();
    ok(&s, &["apps:create", "slow", "--no-remote"]);
    let t = |p: &str, r: u32, i: u32| json!({"path": p, "response_timeout": r, "idle_timeout": i});
    let get = || async { call(&s, "GET", "/apps/slow/router-timeouts", None).await.1 };

    // The defaults are Heroku's.
    assert_eq!(get().await, json!([t("/", 30, 55)]));
    let out = ok(&s, &["router:timeouts", "-a", "slow"]);
    assert!(out.starts_with("=== slow Router Timeouts"), "{out}");
    assert!(
        out.contains("Path") && out.contains("Response") && out.contains("Idle"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["/", "30s", "55s"]),
        "{out}"
    );

    // A path prefix; what it leaves out comes from "/".
    let out = ok(
        &s,
        &[
            "router:timeouts:set",
            "--path",
            "/reports",
            "--response",
            "120",
            "-a",
            "slow",
        ],
    );
    assert!(
        out.contains("Setting router timeouts for /reports on ⬢ slow... done"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["/reports", "120s", "55s"]),
        "{out}"
    );
    ok(&s, &["router:timeouts:set", "--idle", "70", "-a", "slow"]);
    assert_eq!(get().await, json!([t("/", 30, 70), t("/reports", 120, 70)]));
    // Setting one value keeps the other.
    ok(
        &s,
        &["router:timeouts:set", "--response", "45", "-a", "slow"],
    );
    ok(
        &s,
        &[
            "router:timeouts:set",
            "--path",
            "/reports",
            "--idle",
            "10",
            "-a",
            "slow",
        ],
    );
    assert_eq!(get().await, json!([t("/", 45, 70), t("/reports", 120, 10)]));
    let (status, body, _) = call(
        &s,
        "PUT",
        "/apps/slow/router-timeouts",
        Some(json!({"path": "/api", "response_timeout": 5, "idle_timeout": 6})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([t("/", 45, 70), t("/api", 5, 6), t("/reports", 120, 10)])
    );

    // Validation.
    for bad in [
        json!({"path": "reports", "response_timeout": 5}),
        json!({"path": "/a b", "response_timeout": 5}),
        json!({"path": "/x", "response_timeout": 0}),
        json!({"path": "/x", "response_timeout": 3601}),
        json!({"path": "/x", "idle_timeout": -1}),
        json!({"path": "/x", "idle_timeout": "soon"}),
        json!({"path": "/x"}),
    ] {
        let (status, e, _) = call(&s, "PUT", "/apps/slow/router-timeouts", Some(bad.clone())).await;
        assert_eq!(
            (status, e["id"].as_str()),
            (422, Some("invalid_params")),
            "{bad}: {e}"
        );
    }
    let err = fails(
        &s,
        &["router:timeouts:set", "--response", "5000", "-a", "slow"],
    );
    assert!(err.contains("1 to 3600"), "{err}");
    let err = fails(&s, &["router:timeouts:set", "--path", "/x", "-a", "slow"]);
    assert!(err.contains("--response"), "{err}");
    let err = fails(
        &s,
        &[
            "router:timeouts:set",
            "--path",
            "x",
            "--idle",
            "5",
            "-a",
            "slow",
        ],
    );
    assert!(err.contains("starts with /"), "{err}");
    assert_eq!(get().await.as_array().unwrap().len(), 3);

    // Unset: the path inherits again; "/" goes back to the defaults.
    let out = ok(
        &s,
        &["router:timeouts:unset", "--path", "/reports", "-a", "slow"],
    );
    assert!(
        out.contains("Removing router timeouts for /reports from ⬢ slow... done"),
        "{out}"
    );
    let err = fails(
        &s,
        &["router:timeouts:unset", "--path", "/reports", "-a", "slow"],
    );
    assert!(err.contains("/reports"), "{err}");
    let (status, body, _) = call(&s, "DELETE", "/apps/slow/router-timeouts?path=%2F", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([t("/", 30, 55), t("/api", 5, 6)]));
    let (status, _, _) = call(&s, "DELETE", "/apps/slow/router-timeouts", None).await;
    assert_eq!(status, 422);

    // The router features are listed, off, and can be turned on and off.
    let features: Value =
        serde_json::from_str(&ok(&s, &["features", "-a", "slow", "--json"])).unwrap();
    let names: Vec<&str> = features
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for f in [
        "preboot",
        "http-session-affinity",
        "http-least-outstanding",
        "http2-to-dyno",
        "http-to-https-redirect",
    ] {
        assert!(names.contains(&f), "{f}: {names:?}");
    }
    let mut ids: Vec<&str> = features
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), names.len());
    assert!(features
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["enabled"] == false));
    for f in [
        "http-session-affinity",
        "http-least-outstanding",
        "http2-to-dyno",
        "http-to-https-redirect",
    ] {
        ok(&s, &["features:enable", f, "-a", "slow"]);
        let (_, info, _) = call(&s, "GET", &format!("/apps/slow/features/{f}"), None).await;
        assert_eq!(info["enabled"], true, "{f}");
        assert!(info["description"].as_str().unwrap().len() > 20);
    }
    let out = ok(&s, &["features", "-a", "slow"]);
    assert!(
        out.lines().any(|l| l.starts_with("[+] http2-to-dyno")),
        "{out}"
    );
    ok(&s, &["features:disable", "http2-to-dyno", "-a", "slow"]);
    let (_, info, _) = call(&s, "GET", "/apps/slow/features/http2-to-dyno", None).await;
    assert_eq!(info["enabled"], false);
}
