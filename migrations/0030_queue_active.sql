-- The queue stays fast however long the history grows (issue 12): every
-- query of a claim is served by partial indexes over the active jobs
-- (queued or running) only; finished jobs are never visited.
-- A retry puts the same job back with a `not_before` time; a job waiting
-- for a configuration fix is due again as soon as a project changes.
ALTER TABLE cpi_import_jobs ADD COLUMN IF NOT EXISTS not_before TIMESTAMP WITH TIME ZONE NULL;
ALTER TABLE cpi_import_jobs ADD COLUMN IF NOT EXISTS waits_for_fix BOOLEAN NOT NULL DEFAULT false;
-- Per table, the head of its queue (smallest file name) and its running job.
CREATE INDEX IF NOT EXISTS cpi_import_jobs_active_per_table
    ON cpi_import_jobs (project_id, target_table, file_name) WHERE status IN ('queued', 'running');
-- The claim's order over all tables.
CREATE INDEX IF NOT EXISTS cpi_import_jobs_active_order
    ON cpi_import_jobs (created_at, file_name) WHERE status IN ('queued', 'running');
-- "Was a file of this size imported into this table?" (hash first).
CREATE INDEX IF NOT EXISTS cpi_import_jobs_size_seen
    ON cpi_import_jobs (project_id, target_table, file_size) WHERE status IN ('succeeded', 'duplicate');
-- Replaced by the partial indexes above; it grew with the history.
DROP INDEX IF EXISTS cpi_import_jobs_claim;
