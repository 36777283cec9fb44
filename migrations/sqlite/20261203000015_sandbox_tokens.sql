-- SQLite twin of migrations/postgres/20261203000015_sandbox_tokens.sql.
CREATE TABLE sandbox_tokens (
    token_hash  BLOB PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    family      INTEGER NOT NULL,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    company     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    name        TEXT NOT NULL,
    expires_at  TEXT,
    used        INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE INDEX sandbox_tokens_family_idx ON sandbox_tokens (family);
CREATE INDEX sandbox_tokens_expiry_idx ON sandbox_tokens (expires_at);

CREATE INDEX jobs_connection_finished_idx ON jobs (connection_id, object, finished_at)
    WHERE kind = 'sync' AND finished_at IS NOT NULL;
