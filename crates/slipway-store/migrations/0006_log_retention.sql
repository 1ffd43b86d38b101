-- How much of an app's log history is kept on disk (NULL = the defaults: 100 MB, 7 days).
ALTER TABLE apps ADD COLUMN log_max_bytes INTEGER;
ALTER TABLE apps ADD COLUMN log_max_age_secs INTEGER;
