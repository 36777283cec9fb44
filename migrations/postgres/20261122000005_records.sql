-- Records pulled by syncs, one row per (connection, object, external id).
CREATE TABLE records (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    object        text NOT NULL,
    external_id   text NOT NULL,
    data          jsonb NOT NULL,
    -- SHA-256 of the projected record: unchanged records aren't rewritten
    content_hash  text NOT NULL,
    is_child      boolean NOT NULL DEFAULT false,
    -- set when the provider marks the record deleted or a full read no longer returns it
    deleted_at    timestamptz,
    -- the read that last returned it (full reads mark the others deleted)
    seen_in       uuid NOT NULL,
    -- the write that created it / last changed its content (tells counts apart)
    written_by    uuid NOT NULL,
    changed_by    uuid NOT NULL,
    first_seen_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (connection_id, object, external_id)
);
CREATE INDEX records_workspace_idx ON records (workspace_id, object);

-- Where each connection's object stands: the delta high-water mark.
CREATE TABLE sync_state (
    workspace_id      uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id     uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    object            text NOT NULL,
    high_water_mark   text,
    last_full_sync_at timestamptz,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (connection_id, object)
);
