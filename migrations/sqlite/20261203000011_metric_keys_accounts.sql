-- See migrations/postgres: metric rows keyed by connection and object too,
-- and the accounts providers report. SQLite can't change a primary key in
-- place, so the table is rebuilt with its rows.
CREATE TABLE metric_rows_new (
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    account_id    TEXT NOT NULL DEFAULT '',
    metric_date   TEXT NOT NULL,
    dimension_key TEXT NOT NULL,
    dimensions    TEXT NOT NULL,
    metrics       TEXT NOT NULL,
    connection_id BLOB REFERENCES connections (id) ON DELETE CASCADE,
    written_by    BLOB NOT NULL,
    updated_at    TEXT NOT NULL,
    object        TEXT NOT NULL DEFAULT ''
);
INSERT INTO metric_rows_new (workspace_id, provider, account_id, metric_date, dimension_key,
        dimensions, metrics, connection_id, written_by, updated_at, object)
    SELECT workspace_id, provider, account_id, metric_date, dimension_key,
        dimensions, metrics, connection_id, written_by, updated_at,
        CASE WHEN connection_id IS NULL THEN '' ELSE CASE provider
            WHEN 'google-analytics-4' THEN 'daily_metrics'
            WHEN 'google-ads' THEN 'daily_campaign_metrics'
            WHEN 'sandbox' THEN 'daily_metrics'
            ELSE '' END END
    FROM metric_rows;
DROP TABLE metric_rows;
ALTER TABLE metric_rows_new RENAME TO metric_rows;
CREATE UNIQUE INDEX metric_rows_key ON metric_rows (workspace_id, provider,
    COALESCE(connection_id, X'00000000000000000000000000000000'),
    object, account_id, metric_date, dimension_key);

CREATE TABLE provider_accounts (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id BLOB NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    name          TEXT NOT NULL,
    currency      TEXT,
    time_zone     TEXT,
    updated_at    TEXT NOT NULL,
    UNIQUE (connection_id, external_id)
);
CREATE INDEX provider_accounts_workspace_idx ON provider_accounts (workspace_id, provider);
