-- See migrations/postgres: connections, OAuth states, connection webhooks.
CREATE TABLE connections (
    id                    BLOB PRIMARY KEY,
    workspace_id          BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider              TEXT NOT NULL,
    environment           TEXT NOT NULL,
    tenant_key            TEXT NOT NULL DEFAULT '',
    owner_user_id         BLOB REFERENCES users (id) ON DELETE CASCADE,
    owner_key             TEXT NOT NULL,
    flow                  TEXT NOT NULL CHECK (flow IN ('authorization_code', 'client_credentials', 'api_key')),
    status                TEXT NOT NULL CHECK (status IN ('CONNECTED', 'PENDING', 'ERROR', 'NEEDS_REAUTH', 'DISABLED', 'NOT_CONNECTED')),
    account_id            TEXT,
    account_email         TEXT,
    account_name          TEXT,
    requested_scopes      TEXT NOT NULL DEFAULT '[]',
    granted_scopes        TEXT,
    selected_account_ids  TEXT NOT NULL DEFAULT '[]',
    header_values         TEXT NOT NULL DEFAULT '{}',
    client_id             TEXT,
    has_refresh_token     INTEGER NOT NULL DEFAULT 0,
    access_expires_at     TEXT,
    access_lifetime_secs  INTEGER,
    token_version         INTEGER NOT NULL DEFAULT 0,
    refresh_lease_until   TEXT,
    refresh_lease_owner   BLOB,
    refresh_failing_since TEXT,
    last_refreshed_at     TEXT,
    last_used_at          TEXT,
    last_sync_at          TEXT,
    last_error            TEXT,
    connected_by          BLOB REFERENCES users (id) ON DELETE SET NULL,
    connected_at          TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (workspace_id, provider, environment, tenant_key, owner_key)
);
CREATE INDEX connections_workspace_idx ON connections (workspace_id, provider);
CREATE INDEX connections_keepalive_idx ON connections (status, last_refreshed_at);

CREATE TABLE oauth_states (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    environment   TEXT NOT NULL,
    ownership     TEXT NOT NULL CHECK (ownership IN ('workspace', 'user')),
    redirect_uri  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);

CREATE TABLE webhook_endpoints (
    workspace_id BLOB PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at    TEXT,
    failed_at       TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
