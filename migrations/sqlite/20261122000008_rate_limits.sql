-- Request budgets shared by every process on this database (GCRA): the
-- theoretical arrival time of the next request, in microseconds since the
-- epoch, per budget key (a provider, or a connection).
CREATE TABLE rate_budgets (
    key    TEXT PRIMARY KEY,
    tat_us INTEGER NOT NULL
);

-- Per-provider limits the job claim needs; written by each process at start.
CREATE TABLE provider_limits (
    provider                      TEXT PRIMARY KEY,
    max_concurrent_per_connection INTEGER NOT NULL CHECK (max_concurrent_per_connection > 0),
    updated_at                    TEXT NOT NULL
);
CREATE INDEX jobs_running_connection_idx ON jobs (connection_id) WHERE status = 'running';
