-- A claim in one round trip (issue 12). It was four statements (BEGIN, the
-- claim lock, the update, COMMIT) because the update must see every claim
-- committed before the lock was granted: one statement takes its snapshot
-- before it waits for a lock it takes itself. A VOLATILE PL/pgSQL function
-- takes a fresh snapshot for each statement in it, so the lock can come
-- first and the choice after it, in one call.
--
-- The choice: with a table (`p_project`, `p_table`, the table of the job
-- the worker just finished), the head of that table's queue when it is due
-- and no other live job of the table runs; otherwise (or when that table
-- has nothing due) the oldest due job at the head of its table's queue
-- while no live job of that table runs, or a running job whose lease
-- expired (its worker died). A job waiting for its retry (`not_before` in
-- the future) keeps its place at the head of its table: later files of the
-- table wait behind it. The status literals let the planner prove the
-- partial indexes' predicate (`status IN ('queued', 'running')`) in a
-- generic plan: finished jobs are never visited.
--
-- Each "no other job first" check is its own index lookup: a running job
-- of the table (the index below), and a queued job of the table with a
-- smaller file name (a range of the active-jobs index, which stops at the
-- first; for the table of the previous job, its first entry). Written as
-- one check, a burst of 1,000 queued files made each claim walk all of its
-- table's queue.
--
-- The claimed job is started in the same statement (`attempts` + 1,
-- `started_at`, results cleared) and returned as it now is.
CREATE INDEX IF NOT EXISTS cpi_import_jobs_running_per_table
    ON cpi_import_jobs (project_id, target_table) WHERE status = 'running';

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
        IF head_due AND NOT EXISTS (
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

-- The job totals of /metrics (migration 0050) were kept by a statement
-- trigger on every UPDATE: each claim and each lease renewal built both
-- transition tables and ran the trigger's queries, to add nothing (about
-- 0.4 ms a statement, measured with pgbench). A row trigger whose WHEN
-- (evaluated without calling any function) lets through only the updates
-- that change what is counted costs claims and renewals nothing. Inserts
-- and deletes (bulk prunes) keep their statement triggers.
-- One job's share of the totals, `sign` 1 (counted in) or -1 (out): the
-- delta format of cpi_import_job_totals_add. (The statement trigger of
-- 0050 groups rows before they become JSON: a prune of a million jobs
-- makes a few dozen deltas, not a million.)
CREATE OR REPLACE FUNCTION cpi_import_job_delta(j cpi_import_jobs, sign int) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS
$$
    SELECT jsonb_build_object(
        'status', j.status, 'bucket', cpi_duration_bucket(j.started_at, j.finished_at), 'jobs', sign,
        'seconds', sign * coalesce(extract(epoch FROM j.finished_at - j.started_at), 0),
        'rows_read', sign * coalesce(j.rows_read, 0), 'rows_inserted', sign * coalesce(j.rows_inserted, 0),
        'rows_updated', sign * coalesce(j.rows_updated, 0), 'rows_deleted', sign * coalesce(j.rows_deleted, 0),
        'rows_rejected', sign * coalesce(j.rows_rejected, 0))
$$;

CREATE OR REPLACE FUNCTION cpi_import_job_totals_row() RETURNS trigger
LANGUAGE plpgsql AS
$$
DECLARE
    deltas jsonb := '[]'::jsonb;
BEGIN
    IF NEW.status IN ('succeeded', 'failed', 'duplicate') THEN
        deltas := deltas || jsonb_build_array(cpi_import_job_delta(NEW, 1));
    END IF;
    IF OLD.status IN ('succeeded', 'failed', 'duplicate') THEN
        deltas := deltas || jsonb_build_array(cpi_import_job_delta(OLD, -1));
    END IF;
    PERFORM cpi_import_job_totals_add(deltas);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS cpi_import_job_totals_update ON cpi_import_jobs;
CREATE TRIGGER cpi_import_job_totals_update AFTER UPDATE ON cpi_import_jobs
    FOR EACH ROW
    WHEN ((OLD.status IN ('succeeded', 'failed', 'duplicate')
           OR NEW.status IN ('succeeded', 'failed', 'duplicate'))
          AND (OLD.status, OLD.started_at, OLD.finished_at, OLD.rows_read, OLD.rows_inserted,
               OLD.rows_updated, OLD.rows_deleted, OLD.rows_rejected)
              IS DISTINCT FROM
              (NEW.status, NEW.started_at, NEW.finished_at, NEW.rows_read, NEW.rows_inserted,
               NEW.rows_updated, NEW.rows_deleted, NEW.rows_rejected))
    EXECUTE FUNCTION cpi_import_job_totals_row();
