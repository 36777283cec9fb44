-- The sandbox provider's issued access and refresh tokens, so a demo
-- connection survives a restart. Only SHA-256 digests of the tokens are
-- stored, as the sandbox keeps them in memory. Codes (one minute) are not.
CREATE TABLE sandbox_tokens (
    token_hash  bytea PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('access', 'refresh')),
    -- Tokens descending from one authorization, revoked together.
    family      bigint NOT NULL,
    client_id   text NOT NULL,
    scope       text NOT NULL,
    company     text NOT NULL,
    subject     text NOT NULL,
    name        text NOT NULL,
    expires_at  timestamptz,
    used        boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);
CREATE INDEX sandbox_tokens_family_idx ON sandbox_tokens (family);
CREATE INDEX sandbox_tokens_expiry_idx ON sandbox_tokens (expires_at);

-- The connection cards read the last finished sync per connection and object.
CREATE INDEX jobs_connection_finished_idx ON jobs (connection_id, object, finished_at)
    WHERE kind = 'sync' AND finished_at IS NOT NULL;
