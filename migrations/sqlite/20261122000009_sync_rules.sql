-- See migrations/postgres: sync rules per connection and object.
CREATE TABLE sync_rules (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    object          TEXT NOT NULL,
    rule            TEXT NOT NULL,
    revision        INTEGER NOT NULL CHECK (revision >= 1),
    next_run_at     TEXT,
    last_planned_at TEXT,
    created_by      BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (connection_id, object)
);
CREATE INDEX sync_rules_workspace_idx ON sync_rules (workspace_id, provider, object);
CREATE INDEX sync_rules_due_idx ON sync_rules (next_run_at) WHERE next_run_at IS NOT NULL;
