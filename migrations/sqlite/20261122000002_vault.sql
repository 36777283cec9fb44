-- See migrations/postgres: one table for every encrypted secret.
CREATE TABLE secrets (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_kind   TEXT NOT NULL,
    owner_id     BLOB NOT NULL,
    field        TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (owner_kind, owner_id, field)
);
CREATE INDEX secrets_key_idx ON secrets (key_id, id);
CREATE INDEX secrets_workspace_idx ON secrets (workspace_id);
