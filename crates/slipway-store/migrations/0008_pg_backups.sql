-- Logical backups of Postgres add-ons (`pg:backups:capture`): numbered per app (b001, b002...),
-- kept under the data dir, pruned to the plan's retention.
CREATE TABLE pg_backups (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    num INTEGER NOT NULL,
    addon_id TEXT NOT NULL,
    addon_name TEXT NOT NULL,
    -- The attachment it was taken through (DATABASE).
    source TEXT NOT NULL,
    -- running | completed | failed
    status TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    scheduled INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    UNIQUE (app_id, num)
);

-- Daily backups (`pg:backups:schedule --at '02:00 UTC'`), one per add-on.
CREATE TABLE pg_backup_schedules (
    addon_id TEXT PRIMARY KEY REFERENCES addons(id) ON DELETE CASCADE,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    at TEXT NOT NULL,
    timezone TEXT NOT NULL,
    last_run TEXT,
    created_at TEXT NOT NULL
);

-- Download links (`pg:backups:url`): only the token's hash is kept.
CREATE TABLE pg_backup_links (
    token_hash TEXT PRIMARY KEY,
    backup_id TEXT NOT NULL REFERENCES pg_backups(id) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
