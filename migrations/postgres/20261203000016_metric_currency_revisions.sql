-- The currency of a row's currency metrics, fixed when the row is written
-- (from the account, a row field or the provider's response, as the
-- object's semantics say). NULL: unknown, shown as its own part, never
-- added to a known currency.
ALTER TABLE metric_rows ADD COLUMN currency text;

-- Range scans of one workspace's days, whatever the provider: every
-- dashboard and explorer query.
CREATE INDEX metric_rows_workspace_date ON metric_rows (workspace_id, metric_date);

-- Restatements: a stored day's value that a later write changed. Written in
-- the write's transaction; kept only for days inside the object's settling
-- window plus PLUGBOARD_METRICS_REVISION_MARGIN_DAYS (pruned by the writes).
CREATE TABLE metric_revisions (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    connection_id uuid REFERENCES connections (id) ON DELETE CASCADE,
    object        text NOT NULL,
    account_id    text NOT NULL,
    metric_date   date NOT NULL,
    dimension_key text NOT NULL,
    metric        text NOT NULL,
    old_value     double precision,
    new_value     double precision,
    at            timestamptz NOT NULL
);
CREATE INDEX metric_revisions_workspace_at ON metric_revisions (workspace_id, at);
CREATE INDEX metric_revisions_scope ON metric_revisions (workspace_id, provider, object, metric_date);
