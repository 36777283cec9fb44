-- Every secret lives here, encrypted, bound by AEAD associated data to
-- (workspace, owner kind, owner row, field): copied anywhere else it won't open.
-- One table means `plugboard keys status|rotate` see every secret there is.
CREATE TABLE secrets (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_kind   text NOT NULL,
    owner_id     uuid NOT NULL,
    field        text NOT NULL,
    -- the key that sealed it, also inside the ciphertext; kept as a column
    -- so status and rotation don't have to parse every row
    key_id       text NOT NULL,
    ciphertext   text NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (owner_kind, owner_id, field)
);
CREATE INDEX secrets_key_idx ON secrets (key_id, id);
CREATE INDEX secrets_workspace_idx ON secrets (workspace_id);
