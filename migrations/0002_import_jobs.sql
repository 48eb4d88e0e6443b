-- One row per file seen by the importer (DESIGN §2).
CREATE TABLE IF NOT EXISTS cpi_import_jobs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id UUID NULL REFERENCES cpi_projects(id) ON DELETE SET NULL,
    project_name TEXT NOT NULL,
    connection_id UUID NULL,
    file_name TEXT NOT NULL,
    file_path TEXT NOT NULL,
    file_size BIGINT NULL,
    file_sha256 TEXT NULL,
    target_table TEXT NULL,
    mode TEXT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'duplicate')),
    rows_read BIGINT NOT NULL DEFAULT 0,
    rows_inserted BIGINT NOT NULL DEFAULT 0,
    rows_updated BIGINT NOT NULL DEFAULT 0,
    rows_deleted BIGINT NOT NULL DEFAULT 0,
    rows_rejected BIGINT NOT NULL DEFAULT 0,
    error TEXT NULL,
    error_details JSONB NULL,
    worker TEXT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMP WITH TIME ZONE NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    started_at TIMESTAMP WITH TIME ZONE NULL,
    finished_at TIMESTAMP WITH TIME ZONE NULL
);
CREATE INDEX IF NOT EXISTS cpi_import_jobs_status ON cpi_import_jobs (status, created_at);
CREATE INDEX IF NOT EXISTS cpi_import_jobs_sha ON cpi_import_jobs (project_id, target_table, file_sha256);
