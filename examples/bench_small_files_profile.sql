-- The daemon's three per-batch statements on cpi_import_jobs, as
-- EXPLAIN (ANALYZE, BUFFERS) in one transaction rolled back: the scanner's
-- queue insert of 1,000 files, the batch claim, the batch's verdicts
-- (docs/benchmarks.md, "1,000,000 jobs of history"). Copies of the SQL in
-- src/store/queue.rs (create_queued) and src/store/batch.rs (CLAIM_BATCH_SQL,
-- finish); keep them in step. Against a management database with a project
-- `drops` on table ev_daemon (what bench_small_files makes), history or not:
--   psql -X -v plan_mode=auto -f examples/bench_small_files_profile.sql URL
-- (plan_mode force_generic_plan: the plans a long-lived connection's
-- prepared statements may switch to.) For the statements inside
-- cpi_claim_batch, add before BEGIN:
--   LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
--   SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;
--   SET auto_explain.log_level = notice;
\timing off
SET plan_cache_mode = :plan_mode;
PREPARE q(text, text[], text[], int8[], text[], text[], text, text, timestamptz[]) AS
INSERT INTO cpi_import_jobs (project_id, project_name, connection_id, file_name, file_path, file_size, status, worker, target_table, mode)
         SELECT p.id, p.name, p.connection_id, f.file_name, f.file_path, f.file_size, $7, $8, f.target_table, f.mode
           FROM cpi_projects p,
                unnest($2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $9::timestamptz[])
                    AS f(file_name, file_path, file_size, target_table, mode, written)
          WHERE p.name = $1
            AND NOT EXISTS (
                SELECT 1 FROM cpi_import_jobs d
                 WHERE d.file_path = f.file_path AND d.status IN ('queued', 'running'))
            AND NOT coalesce((SELECT max(d.finished_at) FROM cpi_import_jobs d
                               WHERE d.file_path = f.file_path AND d.status IN ('succeeded', 'duplicate'))
                             >= f.written + interval '1 second', false)
          ORDER BY f.file_path
         ON CONFLICT DO NOTHING
         RETURNING id, file_path;
PREPARE c(text, float8, uuid, text, int, int8) AS
SELECT c.*, p.config AS project_config,
       p.xmin::text || '/' || coalesce(n.xmin::text, '-') AS target_version,
       EXISTS (SELECT 1 FROM cpi_import_jobs s
                WHERE s.status IN ('succeeded', 'duplicate') AND s.project_id = c.project_id
                  AND s.target_table = c.target_table AND s.file_size = c.file_size) AS size_seen
  FROM cpi_claim_batch($1, $2, $3, $4, $5, $6) c
  LEFT JOIN cpi_projects p ON p.id = c.project_id
  LEFT JOIN cpi_connections n ON n.id = p.connection_id
 ORDER BY c.file_name, c.id;
PREPARE fin(jsonb) AS
WITH v AS (
             SELECT * FROM jsonb_to_recordset($1) AS v(id uuid, status text, rows_read int8,
                    rows_inserted int8, rows_updated int8, rows_deleted int8, rows_rejected int8,
                    error text, details jsonb, sha256 text)),
         was AS (
             SELECT j.id, j.cancel_requested IS NOT NULL AS cancelled, j.status, j.started_at,
                    j.finished_at, j.rows_read, j.rows_inserted, j.rows_updated, j.rows_deleted,
                    j.rows_rejected
               FROM cpi_import_jobs j JOIN v ON v.id = j.id),
         j AS (
             UPDATE cpi_import_jobs j SET status = v.status, rows_read = v.rows_read,
                    rows_inserted = v.rows_inserted, rows_updated = v.rows_updated,
                    rows_deleted = v.rows_deleted, rows_rejected = v.rows_rejected, error = v.error,
                    error_details = v.details, finished_at = now(),
                    file_sha256 = COALESCE(v.sha256, j.file_sha256), lease_expires_at = NULL,
                    cancel_requested = NULL
               FROM v
              WHERE j.id = v.id
          RETURNING j.id, j.status, j.project_name, j.target_table, j.file_name, j.rows_read,
                    j.rows_inserted, j.rows_updated, j.rows_deleted, j.rows_rejected,
                    j.started_at, j.finished_at, j.error_details),
         -- The totals (0050): each job counted in as it is now and out as
         -- it was, grouped, upserted in key order (as cpi_import_job_totals_add).
         counted AS (
             SELECT status, started_at, finished_at, rows_read, rows_inserted, rows_updated,
                    rows_deleted, rows_rejected, 1 AS sign FROM j
             UNION ALL
             SELECT status, started_at, finished_at, rows_read, rows_inserted, rows_updated,
                    rows_deleted, rows_rejected, -1 FROM was),
         totals AS (
             INSERT INTO cpi_import_job_totals AS t
             SELECT status, cpi_duration_bucket(started_at, finished_at), sum(sign),
                    coalesce(sum(sign * extract(epoch FROM finished_at - started_at)), 0),
                    coalesce(sum(sign * rows_read), 0), coalesce(sum(sign * rows_inserted), 0),
                    coalesce(sum(sign * rows_updated), 0), coalesce(sum(sign * rows_deleted), 0),
                    coalesce(sum(sign * rows_rejected), 0)
               FROM counted WHERE status IN ('succeeded', 'failed', 'duplicate')
              GROUP BY 1, 2
             HAVING sum(sign) <> 0 OR sum(sign * extract(epoch FROM finished_at - started_at)) <> 0
                 OR sum(sign * rows_read) <> 0 OR sum(sign * rows_inserted) <> 0
                 OR sum(sign * rows_updated) <> 0 OR sum(sign * rows_deleted) <> 0
                 OR sum(sign * rows_rejected) <> 0
              ORDER BY 1, 2
             ON CONFLICT (status, bucket) DO UPDATE SET
                 jobs = t.jobs + EXCLUDED.jobs,
                 seconds = t.seconds + EXCLUDED.seconds,
                 rows_read = t.rows_read + EXCLUDED.rows_read,
                 rows_inserted = t.rows_inserted + EXCLUDED.rows_inserted,
                 rows_updated = t.rows_updated + EXCLUDED.rows_updated,
                 rows_deleted = t.rows_deleted + EXCLUDED.rows_deleted,
                 rows_rejected = t.rows_rejected + EXCLUDED.rows_rejected),
         checked AS (
             INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
             SELECT CASE WHEN k->>'outcome' = 'error' THEN 'check.failed' ELSE 'check.warned' END,
                    CASE WHEN k->>'outcome' = 'error' THEN 'error' ELSE 'warn' END,
                    j.project_name, j.target_table, j.id,
                    jsonb_build_object('file', j.file_name, 'check', k->>'check',
                                       'failing', (k->>'failing')::int8, 'rows', (k->>'rows')::int8)
               FROM j, jsonb_array_elements(COALESCE(j.error_details->'checks', '[]'::jsonb)) k
              WHERE k->>'outcome' IN ('error', 'warn'))
         INSERT INTO cpi_events (kind, severity, project, target_table, job_id, payload)
         SELECT CASE WHEN j.status = 'failed' THEN 'import.failed' ELSE 'import.rejected_rows' END,
                CASE WHEN j.status = 'failed' THEN 'error' ELSE 'warn' END,
                j.project_name, j.target_table, j.id,
                jsonb_build_object('file', j.file_name, 'rows_read', j.rows_read,
                                   'rows_rejected', j.rows_rejected)
           FROM j LEFT JOIN was ON was.id = j.id
          WHERE (j.status = 'failed' AND NOT COALESCE(was.cancelled, false))
             OR (j.status = 'succeeded' AND j.rows_rejected > 0);
SELECT array(select 'drop_'||lpad(g::text,5,'0')||'.csv' from generate_series(0,999) g)::text AS names,
  array(select '/srv/inbox/drop_'||lpad(g::text,5,'0')||'.csv' from generate_series(0,999) g)::text AS paths,
  array(select (700+g%40)::int8 from generate_series(0,999) g)::text AS sizes,
  array_fill('ev_daemon'::text, array[1000])::text AS tables, array_fill('append'::text, array[1000])::text AS modes,
  array_fill(now(), array[1000])::text AS written \gset
BEGIN;
\echo == queue insert (scanner, 1000 files)
EXPLAIN (ANALYZE, BUFFERS, SUMMARY ON) EXECUTE q('drops', :'names', :'paths', :'sizes', :'tables', :'modes', 'queued', 'scanner', :'written');
\echo == claim batch
EXPLAIN (ANALYZE, BUFFERS, SUMMARY ON) EXECUTE c('w1', 60, NULL, NULL, 1000, 67108864);
\echo == finish batch
SELECT set_config('cpi.job_totals_by_statement', 'on', true);
SELECT jsonb_agg(jsonb_build_object('id', id, 'status', 'succeeded', 'rows_read', 20,
   'rows_inserted', 20, 'rows_updated', 0, 'rows_deleted', 0, 'rows_rejected', 0, 'sha256', md5(id::text)))::text AS verdicts
   FROM cpi_import_jobs WHERE status = 'running' \gset
EXPLAIN (ANALYZE, BUFFERS, SUMMARY ON) EXECUTE fin(:'verdicts');
ROLLBACK;
