-- Pausing a project (`cpi projects pause`, `POST /projects/{name}/pause`):
-- its files keep being queued, and no job of it is claimed until it is
-- resumed; a job running when the pause came finishes. A pause is the
-- operator's, not the manifests': a row of its own that reconcile never
-- touches, gone with its project. Additive: the claim is a function in
-- the database, so an older binary beside a newer one claims as it does.
CREATE TABLE IF NOT EXISTS cpi_project_pauses (
    project_id UUID PRIMARY KEY REFERENCES cpi_projects (id) ON DELETE CASCADE,
    paused_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    paused_by TEXT NOT NULL,
    reason TEXT NULL
);

-- The claim of 0070, which also skips the jobs of a paused project (one
-- primary-key lookup per candidate).
CREATE OR REPLACE FUNCTION cpi_claim(p_worker text, p_lease float8, p_project uuid, p_table text)
RETURNS SETOF cpi_import_jobs
-- At most one row: the caller's size check then looks the job's size up in
-- the index; with the default estimate (1,000 rows) it hashed every
-- finished job instead.
ROWS 1
LANGUAGE plpgsql VOLATILE AS
$$
DECLARE
    picked uuid;
    head uuid;
    head_due boolean;
BEGIN
    -- Serializes claims across workers and replicas ("cpi_que").
    PERFORM pg_advisory_xact_lock(27989620569503077);
    IF p_project IS NOT NULL THEN
        -- The head of that table's queue, due or not (a file waiting for
        -- its retry is never overtaken), taken when it is due and no live
        -- job of the table runs: the first entry of the table in the index.
        SELECT q.id, q.not_before IS NULL OR q.not_before <= now() INTO head, head_due
          FROM cpi_import_jobs q
         WHERE q.status IN ('queued', 'running') AND q.status = 'queued'
           AND q.project_id = p_project AND q.target_table = p_table
         ORDER BY q.file_name
         LIMIT 1;
        IF head_due AND NOT EXISTS (SELECT 1 FROM cpi_project_pauses z WHERE z.project_id = p_project)
           AND NOT EXISTS (
               SELECT 1 FROM cpi_import_jobs r
                WHERE r.status = 'running' AND r.project_id = p_project
                  AND r.target_table = p_table AND r.lease_expires_at >= now()) THEN
            picked := head;
        END IF;
    END IF;
    IF picked IS NULL THEN
        SELECT q.id INTO picked FROM cpi_import_jobs q
         WHERE q.status IN ('queued', 'running')
           AND CASE WHEN q.status = 'queued' THEN q.not_before IS NULL OR q.not_before <= now()
                    ELSE q.lease_expires_at < now() END
           AND NOT EXISTS (
               SELECT 1 FROM cpi_import_jobs r
                WHERE r.status = 'running' AND r.project_id = q.project_id
                  AND r.target_table = q.target_table AND r.id <> q.id
                  AND r.lease_expires_at >= now())
           AND NOT EXISTS (
               SELECT 1 FROM cpi_import_jobs r
                WHERE r.status IN ('queued', 'running') AND r.status = 'queued'
                  AND r.project_id = q.project_id AND r.target_table = q.target_table
                  AND r.file_name < q.file_name)
           AND NOT EXISTS (SELECT 1 FROM cpi_project_pauses z WHERE z.project_id = q.project_id)
         ORDER BY q.created_at, q.file_name
         LIMIT 1
         FOR UPDATE SKIP LOCKED;
    END IF;
    IF picked IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE cpi_import_jobs j
       SET status = 'running', worker = p_worker,
           lease_expires_at = now() + make_interval(secs => p_lease),
           attempts = attempts + 1, started_at = now(), finished_at = NULL, error = NULL,
           error_details = NULL, not_before = NULL, waits_for_fix = false, rows_read = 0,
           rows_inserted = 0, rows_updated = 0, rows_deleted = 0, rows_rejected = 0
     WHERE j.id = picked
       -- Claims are serialized by the lock; anything else that changed
       -- the row meanwhile (a retry made due, a requeue) is seen here.
       AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_expires_at < now()))
    RETURNING j.*;
END
$$;
