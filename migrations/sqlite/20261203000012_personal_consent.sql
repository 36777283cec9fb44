-- See migrations/postgres: a member's consent that automations may use
-- their personal connection.
ALTER TABLE connections ADD COLUMN automations_allowed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN automations_changed_at TEXT;
