-- Post-restore resync: a row per connection object that must be synced
-- again because the database came back from a backup (`plugboard restore
-- mark`). The Sync controls wizard deletes them when it queues the resync.
CREATE TABLE resync_required (
    workspace_id    uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    object          text NOT NULL,
    backup_taken_at timestamptz NOT NULL,
    marked_at       timestamptz NOT NULL,
    PRIMARY KEY (connection_id, object)
);
CREATE INDEX resync_required_workspace_idx ON resync_required (workspace_id, connection_id);
