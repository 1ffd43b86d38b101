"""Walks the Platform API schema's links against a Slipway server and validates each answer.

Usage: schema_walk.py SCHEMA API_URL KEY IDS_JSON

IDS_JSON maps a schema definition name (app, release, dyno, ...) to the identity to put in
its place in link paths. Every GET link whose placeholders can all be filled is requested;
an answer of 404 with Slipway's "no such API path" message means the link is not
implemented and is skipped. Then a fixed list of changes (POST, PATCH, PUT, DELETE) is made.
Each answer in 2xx is validated against the link's target schema, with two rules made
stricter and one looser than the schema itself:
  - every property a resource defines must be present (null where the schema allows it);
  - types must match;
  - properties Slipway adds beyond the schema are allowed.
Prints a JSON report: {"checked": [...], "skipped": [...], "failures": [...]}.
"""

import copy
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import jsonschema

schema_path, api, key, ids_json = sys.argv[1:5]
ids = json.loads(ids_json)
with open(schema_path) as f:
    SCHEMA = json.load(f)
DEFS = SCHEMA["definitions"]


def loosen(node, top=False):
    """Drops additionalProperties/strictProperties; requires every defined property of a
    resource (a top-level definition)."""
    if isinstance(node, dict):
        node.pop("additionalProperties", None) if node.get("additionalProperties") is False else None
        node.pop("strictProperties", None)
        # Heroku's own host names (herokuapp.com, git.heroku.com): Slipway serves its own.
        if "heroku" in str(node.get("pattern", "")):
            node.pop("pattern")
        for k, v in list(node.items()):
            if k == "links":
                continue
            loosen(v)
        if top and "properties" in node:
            node["required"] = sorted(set(node.get("required", [])) | set(node["properties"]))
    elif isinstance(node, list):
        for v in node:
            loosen(v)


STRICT = copy.deepcopy(SCHEMA)
for name, d in STRICT["definitions"].items():
    loosen(d, top=True)

PLACEHOLDER = re.compile(r"\{\(([^)]*)\)\}")


def fill(href):
    """The path with each placeholder replaced by a known identity, or None."""
    out = href
    for m in PLACEHOLDER.finditer(href):
        ref = urllib.parse.unquote(m.group(1))  # #/definitions/app/definitions/identity
        parts = ref.split("/")
        name = parts[2]
        field = parts[-1]
        value = ids.get(f"{name}.{field}", ids.get(name))
        if value is None:
            return None
        out = out.replace(m.group(0), urllib.parse.quote(str(value), safe="~"))
    return out


def request(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    req.add_header("Accept", "application/vnd.heroku+json; version=3")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, raw
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def validator(link):
    target = link.get("targetSchema")
    if target is None:
        return None
    root = {"definitions": STRICT["definitions"]}
    root.update(copy.deepcopy(target))
    loosen(root)
    return jsonschema.Draft4Validator(root)


report = {"checked": [], "skipped": [], "failures": []}


def check(link, path, status, raw):
    label = f"{link['method']} {path}"
    if status >= 300:
        report["failures"].append({"link": label, "status": status, "body": raw.decode(errors="replace")[:300]})
        return
    v = validator(link)
    if v is None:
        report["checked"].append(label)
        return
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        report["failures"].append({"link": label, "error": "not JSON", "body": raw[:200].decode(errors="replace")})
        return
    errors = sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        report["failures"].append({
            "link": label,
            "errors": [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:8]],
        })
    else:
        report["checked"].append(label)


def links():
    for name, d in DEFS.items():
        for link in d.get("links", []):
            yield name, link


def find_link(method, href_pattern):
    for name, link in links():
        if link["method"] == method and link["href"] == href_pattern:
            return link
    raise SystemExit(f"no link {method} {href_pattern}")


# GET links: every one whose placeholders can be filled.
for name, link in links():
    if link["method"] != "GET":
        continue
    path = fill(link["href"])
    if path is None:
        continue
    status, raw = request("GET", path)
    if status == 404 and b"no such API path" in raw:
        report["skipped"].append(f"GET {path}")
        continue
    check(link, path, status, raw)

# Changes, in an order that leaves what the GETs above used alone until the end.
A = "/apps/{(%23%2Fdefinitions%2Fapp%2Fdefinitions%2Fidentity)}"
CHANGES = [
    ("POST", "/apps", {"name": "walked-app"}, None),
    ("PATCH", A, {"maintenance": False}, None),
    ("PATCH", A + "/config-vars", {"WALKED": "1"}, None),
    ("PATCH", A + "/formation", {"updates": [{"type": "web", "quantity": 1}]}, None),
    ("PATCH", A + "/formation/{(%23%2Fdefinitions%2Fformation%2Fdefinitions%2Fidentity)}", {"quantity": 1}, None),
    ("POST", A + "/releases", {"release": ids.get("release.id")}, None),
    ("POST", A + "/dynos", {"command": "true", "attach": False}, None),
    ("POST", A + "/domains", {"hostname": "walked.example.test", "sni_endpoint": None}, None),
    ("DELETE", A + "/domains/{(%23%2Fdefinitions%2Fdomain%2Fdefinitions%2Fidentity)}", None, {"domain": "walked.example.test"}),
    ("POST", A + "/log-drains", {"url": "syslog://127.0.0.1:1/walked"}, None),
    ("POST", A + "/log-sessions", {"lines": 5, "tail": False}, None),
    ("PATCH", A + "/features/{(%23%2Fdefinitions%2Fapp-feature%2Fdefinitions%2Fidentity)}", {"enabled": True}, None),
    ("PUT", A + "/buildpack-installations", {"updates": [{"buildpack": "heroku/python"}]}, None),
    ("POST", A + "/collaborators", {"user": ids.get("collaborator.email")}, None),
    ("DELETE", A + "/collaborators/{(%23%2Fdefinitions%2Fcollaborator%2Fdefinitions%2Fidentity)}", None, None),
    ("POST", "/addon-attachments", {"addon": ids.get("add-on"), "app": "walked-app", "name": "WALKED"}, None),
    ("POST", "/actions/addons/resolve", {"addon": ids.get("add-on.name"), "app": ids.get("app")}, None),
    ("POST", "/actions/addon-attachments/resolve", {"addon_attachment": "WALKED", "app": "walked-app"}, None),
    ("POST", "/oauth/authorizations", {"description": "walked", "scope": ["global"]}, None),
    ("DELETE", A + "/dynos", None, None),
    ("DELETE", A + "/formations/{(%23%2Fdefinitions%2Fdyno%2Fdefinitions%2Fformation_type)}", None, None),
    ("DELETE", "/apps/{(%23%2Fdefinitions%2Fapp%2Fdefinitions%2Fidentity)}", None, {"app": "walked-app"}),
]
for method, href, body, override in CHANGES:
    link = find_link(method, href)
    saved = dict(ids)
    if override:
        ids.update(override)
    path = fill(href)
    ids.clear()
    ids.update(saved)
    if path is None:
        report["failures"].append({"link": f"{method} {href}", "error": "no identity to fill in"})
        continue
    status, raw = request(method, path, body)
    check(link, path, status, raw)

print(json.dumps(report, indent=1))
