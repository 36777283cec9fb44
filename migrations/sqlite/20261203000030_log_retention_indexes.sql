-- Retention prunes job logs and the audit log by age; without these it
-- would scan both tables whole on every pass.
CREATE INDEX job_logs_created_idx ON job_logs (created_at);
CREATE INDEX audit_log_created_idx ON audit_log (created_at);
