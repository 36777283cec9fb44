-- Connect links: single-use links an admin hands to whoever should connect a
-- provider (the workspace's admins, or one named member). Only the sha256 of
-- the link token is stored; the token is shown once.
CREATE TABLE connect_links (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    environment   text NOT NULL,
    ownership     text NOT NULL CHECK (ownership IN ('workspace', 'user')),
    -- the member a `user` link is for; NULL for `workspace`
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    -- set on reconnect links minted for a broken connection
    connection_id uuid,
    token_hash    bytea NOT NULL UNIQUE,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    used_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at    timestamptz,
    CHECK ((ownership = 'user') = (user_id IS NOT NULL))
);
CREATE INDEX connect_links_workspace_idx ON connect_links (workspace_id, created_at);
