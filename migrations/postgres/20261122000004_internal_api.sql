-- Service keys for automations: only a hash is stored; the prefix is shown.
CREATE TABLE service_keys (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL UNIQUE,
    key_hash     bytea NOT NULL,
    scopes       jsonb NOT NULL,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX service_keys_workspace_idx ON service_keys (workspace_id);

-- Daily metrics, written by syncs and by automations alike. One row per
-- (workspace, provider, account, date, dimensions): a re-sync of a day
-- replaces its numbers.
CREATE TABLE metric_rows (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    account_id    text NOT NULL DEFAULT '',
    metric_date   date NOT NULL,
    -- canonical JSON of the dimensions ('{}' for none): part of the key
    dimension_key text NOT NULL,
    dimensions    jsonb NOT NULL,
    metrics       jsonb NOT NULL,
    connection_id uuid REFERENCES connections (id) ON DELETE SET NULL,
    -- the batch that inserted the row; tells inserts from updates in one statement
    written_by    uuid NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, provider, account_id, metric_date, dimension_key)
);

-- Jobs: syncs run by workers, and runs handed to automations.
CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id   uuid REFERENCES connections (id) ON DELETE CASCADE,
    provider        text NOT NULL,
    object          text,
    kind            text NOT NULL CHECK (kind IN ('sync', 'external')),
    status          text NOT NULL CHECK (status IN ('queued', 'running', 'waiting_external', 'succeeded', 'failed', 'cancelled')),
    idempotency_key text,
    summary         jsonb,
    error           text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    requested_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX jobs_workspace_idx ON jobs (workspace_id, created_at DESC);
-- at most one queued or running job per connection and object
CREATE UNIQUE INDEX jobs_one_active_idx ON jobs (connection_id, object)
    WHERE status IN ('queued', 'running', 'waiting_external');
