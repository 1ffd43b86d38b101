-- pg:diagnose reports, viewable by id for a month.
CREATE TABLE pg_diagnose_reports (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    addon_id TEXT NOT NULL,
    report TEXT NOT NULL,
    created_at TEXT NOT NULL
);
