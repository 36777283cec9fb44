-- Metric rows are keyed by connection and object too, so a member's
-- personal connection and the workspace's connection on the same account
-- keep separate rows, and a re-read of one object replaces only its rows.
-- `connection_id` stays NULL for internal writes without a connection; the
-- unique index reads it through COALESCE with the nil UUID (never a real
-- id) so those rows dedupe as well. `object` is '' when a writer names none.
ALTER TABLE metric_rows ADD COLUMN object text NOT NULL DEFAULT '';

-- Existing rows with a connection were written under the old key, which a
-- sync and a write naming the connection shared. Every shipped provider has
-- at most one metrics object, so those rows are its rows: without this the
-- next re-read would add rows beside them and double count.
UPDATE metric_rows SET object = CASE provider
        WHEN 'google-analytics-4' THEN 'daily_metrics'
        WHEN 'google-ads' THEN 'daily_campaign_metrics'
        WHEN 'sandbox' THEN 'daily_metrics'
        ELSE '' END
    WHERE connection_id IS NOT NULL;

ALTER TABLE metric_rows DROP CONSTRAINT metric_rows_pkey;
-- A connection's rows go with it (as its records do): SET NULL would fold
-- them into the rows written without a connection.
ALTER TABLE metric_rows DROP CONSTRAINT metric_rows_connection_id_fkey;
ALTER TABLE metric_rows ADD CONSTRAINT metric_rows_connection_id_fkey
    FOREIGN KEY (connection_id) REFERENCES connections (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX metric_rows_key ON metric_rows (workspace_id, provider,
    (COALESCE(connection_id, '00000000-0000-0000-0000-000000000000'::uuid)),
    object, account_id, metric_date, dimension_key);

-- Accounts (properties, customers, sites…) as the provider reports them,
-- per connection: written whenever a connection's accounts are listed,
-- which choosing them does too.
CREATE TABLE provider_accounts (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    connection_id uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    external_id   text NOT NULL,
    name          text NOT NULL,
    currency      text,
    time_zone     text,
    updated_at    timestamptz NOT NULL,
    UNIQUE (connection_id, external_id)
);
CREATE INDEX provider_accounts_workspace_idx ON provider_accounts (workspace_id, provider);
