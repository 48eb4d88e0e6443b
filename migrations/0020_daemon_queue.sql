-- The daemon's job queue. One queued-or-running job per file path, so that
-- replicas watching the same inbox never queue a file twice.
CREATE UNIQUE INDEX IF NOT EXISTS cpi_import_jobs_one_active_per_file
    ON cpi_import_jobs (file_path) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS cpi_import_jobs_claim
    ON cpi_import_jobs (status, project_id, target_table, file_name);
