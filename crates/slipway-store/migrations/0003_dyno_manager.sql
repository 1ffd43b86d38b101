-- Dyno manager settings per app: maintenance mode, boot timeout (seconds; NULL = the server's),
-- daily cycling ('daily', 'off', or 'HH:MM' UTC).
ALTER TABLE apps ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN boot_timeout INTEGER;
ALTER TABLE apps ADD COLUMN cycling TEXT NOT NULL DEFAULT 'daily';

-- Features turned on per app (`features:enable preboot`).
CREATE TABLE app_features (
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app_id, name)
);
