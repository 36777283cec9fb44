-- Workers claim jobs with a lease and heartbeat; a job whose worker died
-- is claimed again when its lease expires and resumes from its checkpoint.
ALTER TABLE jobs ADD COLUMN lease_owner uuid;
ALTER TABLE jobs ADD COLUMN lease_until timestamptz;
ALTER TABLE jobs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN checkpoint jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE jobs ADD COLUMN counts jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX jobs_claim_idx ON jobs (status, created_at) WHERE kind = 'sync';

-- A job's log, readable by its workspace; lines are written redacted.
CREATE TABLE job_logs (
    id           uuid PRIMARY KEY,
    job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    level        text NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    message      text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX job_logs_job_idx ON job_logs (job_id, id);
