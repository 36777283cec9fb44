-- Daily roll-up of metric_rows (dimensions summed away per account, day
-- and currency): see migrations/postgres for what reads it and why, and
-- src/metrics/store.rs for how every write keeps it equal to the raw rows.
CREATE TABLE metric_daily (
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    connection_id BLOB REFERENCES connections (id) ON DELETE CASCADE,
    object        TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    metric_date   TEXT NOT NULL,
    currency      TEXT,
    metrics       TEXT NOT NULL
);
CREATE INDEX metric_daily_key ON metric_daily (workspace_id, provider,
    COALESCE(connection_id, X'00000000000000000000000000000000'),
    object, account_id, metric_date);
CREATE INDEX metric_daily_provider_date ON metric_daily (workspace_id, provider, metric_date);

INSERT INTO metric_daily (workspace_id, provider, connection_id, object, account_id, metric_date, currency, metrics)
SELECT workspace_id, provider, connection_id, object, account_id, metric_date, currency,
       json_group_object(key, total)
FROM (SELECT m.workspace_id, m.provider, m.connection_id, m.object, m.account_id, m.metric_date, m.currency,
             e.key AS key, SUM(e.value + 0.0) AS total
      FROM metric_rows m, json_each(m.metrics) AS e
      WHERE e.type IN ('integer', 'real')
      GROUP BY 1, 2, 3, 4, 5, 6, 7, 8)
GROUP BY 1, 2, 3, 4, 5, 6, 7;
