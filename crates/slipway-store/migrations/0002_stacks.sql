-- The stack an app builds on, and the stack each slug was built on (its dynos run there).
ALTER TABLE apps ADD COLUMN stack TEXT NOT NULL DEFAULT 'slipway-host';
ALTER TABLE slugs ADD COLUMN stack TEXT NOT NULL DEFAULT 'slipway-host';
