-- Freshness (data contracts): the state each watched table was last seen
-- in, so that the daemon writes `freshness.warn`, `freshness.error` and
-- `freshness.recovered` once per change (in the transaction that records
-- it), however many replicas look. Gone with its project. Additive.
CREATE TABLE IF NOT EXISTS cpi_freshness (
    project_id UUID NOT NULL REFERENCES cpi_projects (id) ON DELETE CASCADE,
    target_table TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('fresh', 'warn', 'error')),
    since TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, target_table)
);

-- A table's last successful import: one backward index scan per watched
-- table, whatever the size of the job history.
CREATE INDEX IF NOT EXISTS cpi_import_jobs_last_success
    ON cpi_import_jobs (project_name, target_table, finished_at)
    WHERE status = 'succeeded';
