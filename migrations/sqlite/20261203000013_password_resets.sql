-- SQLite twin of migrations/postgres/20261203000013_password_resets.sql.
ALTER TABLE users
    ADD COLUMN last_workspace_id BLOB REFERENCES workspaces (id) ON DELETE SET NULL;

CREATE TABLE password_resets (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   BLOB NOT NULL UNIQUE,
    created_by   BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
