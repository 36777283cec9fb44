-- The workspace a user last chose (switch, accepted invite): where log-in
-- lands. A workspace that goes away simply clears it.
ALTER TABLE users
    ADD COLUMN last_workspace_id uuid REFERENCES workspaces (id) ON DELETE SET NULL;

-- Single-use password reset links an admin creates for a member of their
-- workspace. Only a SHA-256 of the token is stored; the link is shown once.
CREATE TABLE password_resets (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
