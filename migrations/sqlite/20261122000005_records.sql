-- See migrations/postgres: synced records and per-object sync state.
CREATE TABLE records (
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    object        TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    data          TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    is_child      INTEGER NOT NULL DEFAULT 0,
    deleted_at    TEXT,
    seen_in       BLOB NOT NULL,
    written_by    BLOB NOT NULL,
    changed_by    BLOB NOT NULL,
    first_seen_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (connection_id, object, external_id)
);
CREATE INDEX records_workspace_idx ON records (workspace_id, object);

CREATE TABLE sync_state (
    workspace_id      BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id     BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    object            TEXT NOT NULL,
    high_water_mark   TEXT,
    last_full_sync_at TEXT,
    updated_at        TEXT NOT NULL,
    PRIMARY KEY (connection_id, object)
);
