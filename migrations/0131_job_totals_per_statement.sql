-- The /metrics totals of a batch's verdicts added once per statement
-- (issue 30). The row trigger of 0070 upserted the totals once per job: a
-- batch's verdicts (one UPDATE of 1,000 jobs) ran it 1,000 times, 254-278 ms
-- of a 280-330 ms statement (EXPLAIN ANALYZE, docs/benchmarks.md), more
-- than the server's whole per-file floor. The batch's statement
-- (`store::batch::finish`) now adds its jobs' totals itself, in the same
-- statement, and sets `cpi.job_totals_by_statement` for its transaction so
-- that the row trigger lets those rows by; every other update (and every
-- older binary, which never sets it) is counted by the row trigger as
-- before. `current_setting(.., true)` is NULL where it was never set.
-- Additive.
DROP TRIGGER IF EXISTS cpi_import_job_totals_update ON cpi_import_jobs;
CREATE TRIGGER cpi_import_job_totals_update AFTER UPDATE ON cpi_import_jobs
    FOR EACH ROW
    WHEN ((OLD.status IN ('succeeded', 'failed', 'duplicate')
           OR NEW.status IN ('succeeded', 'failed', 'duplicate'))
          AND (OLD.status, OLD.started_at, OLD.finished_at, OLD.rows_read, OLD.rows_inserted,
               OLD.rows_updated, OLD.rows_deleted, OLD.rows_rejected)
              IS DISTINCT FROM
              (NEW.status, NEW.started_at, NEW.finished_at, NEW.rows_read, NEW.rows_inserted,
               NEW.rows_updated, NEW.rows_deleted, NEW.rows_rejected)
          AND current_setting('cpi.job_totals_by_statement', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION cpi_import_job_totals_row();
