-- Batched claims (issue 30): a worker claims up to `p_max_files` jobs of
-- ONE target table in one statement, so that many small files cost one
-- claim, one target transaction and one bookkeeping update per batch
-- instead of one each.
--
-- The head of the batch is chosen exactly as `cpi_claim` (0070, 0086)
-- chooses its one job: the claim lock first, then the table preferred
-- (the worker's previous table), else the oldest due head of a table
-- whose jobs none runs, never a paused project's. The batch then follows
-- the head in the table's order (file name, then id) for as long as each
-- job is claimable (queued and due, or running with an expired lease): a
-- job waiting for its retry, or one another worker holds, ends the batch,
-- so no file is ever overtaken. The batch is bounded by `p_max_files` and
-- by `p_max_bytes` of queued sizes; the head always comes, so a file over
-- the byte bound is a batch of its own. Nothing waits for more files: a
-- batch is whatever is claimable now (one file when one is).
--
-- A cancel needs nothing here: a queued job that is cancelled is failed
-- at once, and a running one's request is read by its worker's renewal.
-- Additive: `cpi_claim` stays as it was, for older binaries beside this one.
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
    RETURN QUERY
    WITH h AS (
        SELECT project_id, target_table, file_name, id, coalesce(file_size, 0) AS size
          FROM cpi_import_jobs WHERE id = picked),
    -- The jobs after the head in its table's order, each with whether it
    -- and every job before it are claimable, and the bytes so far with the
    -- head's. (A head without a table yet, a replay, is a batch of one.)
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
         LIMIT greatest(p_max_files - 1, 0)),
    batch AS (
        SELECT picked AS id
        UNION ALL
        SELECT id FROM run WHERE claimable AND bytes <= p_max_bytes),
    u AS (
        UPDATE cpi_import_jobs j
           SET status = 'running', worker = p_worker,
               lease_expires_at = now() + make_interval(secs => p_lease),
               attempts = attempts + 1, started_at = now(), finished_at = NULL, error = NULL,
               error_details = NULL, not_before = NULL, waits_for_fix = false, rows_read = 0,
               rows_inserted = 0, rows_updated = 0, rows_deleted = 0, rows_rejected = 0
          FROM batch b
         WHERE j.id = b.id
           -- Claims are serialized by the lock; anything else that changed
           -- a row meanwhile (a retry made due, a requeue, a cancel) is seen here.
           AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_expires_at < now()))
        RETURNING j.*)
    SELECT * FROM u ORDER BY u.file_name, u.id;
END
$$;
