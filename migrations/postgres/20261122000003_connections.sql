-- Connected accounts. Tokens are never here: they live in `secrets`, sealed
-- and bound to the connection's row.
CREATE TABLE connections (
    id                    uuid PRIMARY KEY,
    workspace_id          uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider              text NOT NULL,
    environment           text NOT NULL,
    -- external tenant (e.g. a company id); '' when the provider has none
    tenant_key            text NOT NULL DEFAULT '',
    -- NULL: owned by the workspace (set up by an admin); else one member's own
    owner_user_id         uuid REFERENCES users (id) ON DELETE CASCADE,
    -- 'workspace' or the owner's id, so the unique key has no NULLs
    owner_key             text NOT NULL,
    flow                  text NOT NULL CHECK (flow IN ('authorization_code', 'client_credentials', 'api_key')),
    status                text NOT NULL CHECK (status IN ('CONNECTED', 'PENDING', 'ERROR', 'NEEDS_REAUTH', 'DISABLED', 'NOT_CONNECTED')),
    account_id            text,
    account_email         text,
    account_name          text,
    requested_scopes      jsonb NOT NULL DEFAULT '[]'::jsonb,
    granted_scopes        jsonb,
    selected_account_ids  jsonb NOT NULL DEFAULT '[]'::jsonb,
    header_values         jsonb NOT NULL DEFAULT '{}'::jsonb,
    client_id             text,
    has_refresh_token     boolean NOT NULL DEFAULT false,
    access_expires_at     timestamptz,
    access_lifetime_secs  bigint,
    -- bumped on every token write: waiters compare it to reuse a refresh
    token_version         bigint NOT NULL DEFAULT 0,
    refresh_lease_until   timestamptz,
    refresh_lease_owner   uuid,
    refresh_failing_since timestamptz,
    last_refreshed_at     timestamptz,
    last_used_at          timestamptz,
    last_sync_at          timestamptz,
    last_error            text,
    connected_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    connected_at          timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    -- at most one connection per workspace, provider, environment, tenant and owner
    UNIQUE (workspace_id, provider, environment, tenant_key, owner_key)
);
CREATE INDEX connections_workspace_idx ON connections (workspace_id, provider);
CREATE INDEX connections_keepalive_idx ON connections (status, last_refreshed_at);

-- Authorizations in flight; single-use, deleted on success and on failure.
-- The PKCE verifier is sealed in `secrets` (owner kind 'oauth_state').
CREATE TABLE oauth_states (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    environment   text NOT NULL,
    ownership     text NOT NULL CHECK (ownership IN ('workspace', 'user')),
    redirect_uri  text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);

-- Connection events for automations (signed; never carrying tokens).
-- The signing secret is sealed in `secrets` (owner kind 'webhook').
CREATE TABLE webhook_endpoints (
    workspace_id uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    url          text NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    event           text NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
