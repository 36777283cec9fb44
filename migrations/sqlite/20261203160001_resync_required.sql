-- SQLite twin of migrations/postgres/20261203160000_resync_required.sql.
CREATE TABLE resync_required (
    workspace_id    BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    object          TEXT NOT NULL,
    backup_taken_at TEXT NOT NULL,
    marked_at       TEXT NOT NULL,
    PRIMARY KEY (connection_id, object)
);
CREATE INDEX resync_required_workspace_idx ON resync_required (workspace_id, connection_id);
