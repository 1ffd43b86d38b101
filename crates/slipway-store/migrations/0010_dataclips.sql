-- The first account (the owner) administers the server: it alone adds accounts.
ALTER TABLE accounts ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET admin = 1
    WHERE id = (SELECT id FROM accounts ORDER BY created_at, rowid LIMIT 1);

-- Dataclips: saved read-only queries on an app's Postgres add-on, whose results are served
-- through a secret link. Only the link token's hash is kept; NULL once the link is revoked.
CREATE TABLE dataclips (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    addon_id TEXT NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
    -- The attachment it was made through (DATABASE).
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    sql TEXT NOT NULL,
    creator_id TEXT NOT NULL REFERENCES accounts(id),
    -- Anyone holding the link may read the results, without an account.
    everyone INTEGER NOT NULL DEFAULT 0,
    token_hash TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (app_id, title)
);

-- Accounts a dataclip is shared with: they may read its results through the link.
CREATE TABLE dataclip_shares (
    dataclip_id TEXT NOT NULL REFERENCES dataclips(id) ON DELETE CASCADE,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (dataclip_id, account_id)
);
