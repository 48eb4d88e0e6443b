-- "When was this object imported?" (the daemon asks it for each object a
-- listing shows it for the first time, jobs::imported_at): served by an
-- index over the finished jobs, not a scan of the history.
CREATE INDEX IF NOT EXISTS cpi_import_jobs_imported_path
    ON cpi_import_jobs (file_path) WHERE status IN ('succeeded', 'duplicate');
