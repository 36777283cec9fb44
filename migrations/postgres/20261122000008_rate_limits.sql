-- Request budgets shared by every process on this database (GCRA): the
-- theoretical arrival time of the next request, in microseconds since the
-- epoch, per budget key (a provider, or a connection).
CREATE TABLE rate_budgets (
    key    text PRIMARY KEY,
    tat_us bigint NOT NULL
);

-- Per-provider limits the job claim needs (how many jobs of one connection
-- may run at once); written by each process at start from provider.json
-- and config.
CREATE TABLE provider_limits (
    provider                      text PRIMARY KEY,
    max_concurrent_per_connection integer NOT NULL CHECK (max_concurrent_per_connection > 0),
    updated_at                    timestamptz NOT NULL
);
CREATE INDEX jobs_running_connection_idx ON jobs (connection_id) WHERE status = 'running';
