-- Log drains (`drains:add`): where an app's log lines are also sent. `url` may carry a password
-- (basic auth of an HTTPS drain); `token` is `d.<uuid>`, written into each frame's hostname field.
-- At most 5 per app, checked by the API.
CREATE TABLE log_drains (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (app_id, url)
);
CREATE INDEX log_drains_app ON log_drains (app_id);
