-- See migrations/postgres: service keys, metrics store, jobs.
CREATE TABLE service_keys (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    key_hash     BLOB NOT NULL,
    scopes       TEXT NOT NULL,
    created_by   BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX service_keys_workspace_idx ON service_keys (workspace_id);

CREATE TABLE metric_rows (
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    account_id    TEXT NOT NULL DEFAULT '',
    metric_date   TEXT NOT NULL,
    dimension_key TEXT NOT NULL,
    dimensions    TEXT NOT NULL,
    metrics       TEXT NOT NULL,
    connection_id BLOB REFERENCES connections (id) ON DELETE SET NULL,
    written_by    BLOB NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (workspace_id, provider, account_id, metric_date, dimension_key)
);

CREATE TABLE jobs (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   BLOB REFERENCES connections (id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    object          TEXT,
    kind            TEXT NOT NULL CHECK (kind IN ('sync', 'external')),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'waiting_external', 'succeeded', 'failed', 'cancelled')),
    idempotency_key TEXT,
    summary         TEXT,
    error           TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    requested_by    BLOB REFERENCES users (id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX jobs_workspace_idx ON jobs (workspace_id, created_at DESC);
CREATE UNIQUE INDEX jobs_one_active_idx ON jobs (connection_id, object)
    WHERE status IN ('queued', 'running', 'waiting_external');
