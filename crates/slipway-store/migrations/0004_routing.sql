-- Custom domains (`domains:add`). Host names are lower case and unique across all apps; the
-- `<app>.<base-domain>` domain is not stored. `cname` is the DNS target users point a CNAME at.
CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    hostname TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'custom',
    cname TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX domains_app ON domains (app_id);

-- Certificates apps serve by SNI (`certs:add`): the PEM chain, leaf first, and its private key.
CREATE TABLE sni_endpoints (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    certificate_chain TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (app_id, name)
);

-- Router timeouts per path prefix ('/' is app-wide); NULL inherits ('/' from the defaults,
-- other prefixes from '/').
CREATE TABLE router_timeouts (
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    path_prefix TEXT NOT NULL,
    response_secs INTEGER,
    idle_secs INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (app_id, path_prefix)
);
