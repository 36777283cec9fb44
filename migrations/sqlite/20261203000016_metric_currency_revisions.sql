-- See migrations/postgres: the rows' currency, a (workspace, date) index,
-- and the revision log.
ALTER TABLE metric_rows ADD COLUMN currency TEXT;

CREATE INDEX metric_rows_workspace_date ON metric_rows (workspace_id, metric_date);

CREATE TABLE metric_revisions (
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    connection_id BLOB REFERENCES connections (id) ON DELETE CASCADE,
    object        TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    metric_date   TEXT NOT NULL,
    dimension_key TEXT NOT NULL,
    metric        TEXT NOT NULL,
    old_value     REAL,
    new_value     REAL,
    at            TEXT NOT NULL
);
CREATE INDEX metric_revisions_workspace_at ON metric_revisions (workspace_id, at);
CREATE INDEX metric_revisions_scope ON metric_revisions (workspace_id, provider, object, metric_date);
