-- The workspace's IANA time zone: pages show times in it. Existing
-- workspaces keep showing UTC, as before.
ALTER TABLE workspaces ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
