-- The batch claim of 0090, the same choice of jobs, with its update by
-- primary key (issue 30, "within 10 % with 1,000,000 jobs of history").
-- In 0090 the UPDATE joined the batch's query; once cpi_import_jobs was
-- analyzed with a long history (so few active rows estimated) the planner
-- made it a nested loop that re-ran the batch's query for every claimable
-- row: 1,000 files, 999,000 rows compared, 1.8 s a claim (EXPLAIN ANALYZE,
-- docs/benchmarks.md). The ids are now collected first and the update is
-- `id = ANY (ids)`: 1,000 primary-key lookups whatever the estimates.
-- Additive: same signature and result; older binaries call it unchanged.
CREATE OR REPLACE FUNCTION cpi_claim_batch(p_worker text, p_lease float8, p_project uuid, p_table text,
                                           p_max_files int, p_max_bytes int8)
RETURNS SETOF cpi_import_jobs
-- As in cpi_claim: a small estimate keeps the caller's per-row size check
-- an index lookup (the default, 1,000 rows, hashed every finished job).
ROWS 1
LANGUAGE plpgsql VOLATILE AS
$$
DECLARE
    picked uuid;
    head uuid;
    head_due boolean;
    ids uuid[];
BEGIN
    -- Serializes claims across workers and replicas ("cpi_que"), the same
    -- lock as cpi_claim: old and new claims never run at once.
    PERFORM pg_advisory_xact_lock(27989620569503077);
    IF p_project IS NOT NULL THEN
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
    -- The batch's ids first, then the update by primary key: an update
    -- joined to the batch's query was planned as a nested loop re-running
    -- that query for each claimable row once the table was analyzed with
    -- a long history (few active rows estimated): 1,000 files, 10^6 rows
    -- compared, 1.8 s.
    WITH h AS (
        SELECT project_id, target_table, file_name, id, coalesce(file_size, 0) AS size
          FROM cpi_import_jobs WHERE id = picked),
    run AS (
        SELECT q.id,
               h.size + sum(coalesce(q.file_size, 0)) OVER w AS bytes,
               bool_and(CASE WHEN q.status = 'queued' THEN q.not_before IS NULL OR q.not_before <= now()
                             ELSE q.lease_expires_at < now() END) OVER w AS claimable
          FROM cpi_import_jobs q, h
         WHERE q.status IN ('queued', 'running')
           AND q.project_id = h.project_id AND q.target_table = h.target_table
           AND (q.file_name, q.id) > (h.file_name, h.id)
        WINDOW w AS (ORDER BY q.file_name, q.id)
         ORDER BY q.file_name, q.id
         LIMIT greatest(p_max_files - 1, 0))
    SELECT picked || coalesce(array_agg(run.id ORDER BY run.id) FILTER (WHERE run.claimable AND run.bytes <= p_max_bytes), '{}')
      INTO ids FROM run;
    RETURN QUERY
    WITH u AS (
        UPDATE cpi_import_jobs j
           SET status = 'running', worker = p_worker,
               lease_expires_at = now() + make_interval(secs => p_lease),
               attempts = attempts + 1, started_at = now(), finished_at = NULL, error = NULL,
               error_details = NULL, not_before = NULL, waits_for_fix = false, rows_read = 0,
               rows_inserted = 0, rows_updated = 0, rows_deleted = 0, rows_rejected = 0
         WHERE j.id = ANY (ids)
           -- Claims are serialized by the lock; anything else that changed
           -- a row meanwhile (a retry made due, a requeue, a cancel) is seen here.
           AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_expires_at < now()))
        RETURNING j.*)
    SELECT * FROM u ORDER BY u.file_name, u.id;
END
$$;
