-- SQLite twin of migrations/postgres/20261203160000_connect_links.sql.
CREATE TABLE connect_links (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    environment   TEXT NOT NULL,
    ownership     TEXT NOT NULL CHECK (ownership IN ('workspace', 'user')),
    user_id       BLOB REFERENCES users (id) ON DELETE CASCADE,
    connection_id BLOB,
    token_hash    BLOB NOT NULL UNIQUE,
    created_by    BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT,
    used_by       BLOB REFERENCES users (id) ON DELETE SET NULL,
    revoked_at    TEXT,
    CHECK ((ownership = 'user') = (user_id IS NOT NULL))
);
CREATE INDEX connect_links_workspace_idx ON connect_links (workspace_id, created_at);
