-- Add-ons (`addons:create`): a resource from a service (built-in Postgres or Redis, or a partner
-- over HTTP), billed to one app and attached to one or more. `config` holds what the provider
-- returned, by suffix (`{"URL": "redis://..."}`): an attachment named REDIS gives its app
-- REDIS_URL. Services and plans are not stored: they are code (and partner manifests).
CREATE TABLE addons (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    plan TEXT NOT NULL,
    -- provisioning | provisioned | deprovisioned
    state TEXT NOT NULL,
    provider_id TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}',
    provision_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX addons_app ON addons (app_id);

-- Which app sees an add-on's config vars, under which name (DATABASE -> DATABASE_URL).
CREATE TABLE addon_attachments (
    id TEXT PRIMARY KEY,
    addon_id TEXT NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (app_id, name)
);
CREATE INDEX addon_attachments_addon ON addon_attachments (addon_id);

-- The server a built-in provider runs for an add-on: its port is fixed for life (it is in the
-- URLs apps were given); `secrets` and `settings` are the provider's own (JSON).
CREATE TABLE addon_servers (
    addon_id TEXT PRIMARY KEY REFERENCES addons(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    secrets TEXT NOT NULL DEFAULT '{}',
    settings TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
