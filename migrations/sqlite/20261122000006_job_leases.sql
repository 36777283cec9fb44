-- See migrations/postgres: job leases, checkpoints and logs.
ALTER TABLE jobs ADD COLUMN lease_owner BLOB;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN checkpoint TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN counts TEXT NOT NULL DEFAULT '{}';
CREATE INDEX jobs_claim_idx ON jobs (status, created_at) WHERE kind = 'sync';

CREATE TABLE job_logs (
    id           BLOB PRIMARY KEY,
    job_id       BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    workspace_id BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    level        TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    message      TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX job_logs_job_idx ON job_logs (job_id, id);
