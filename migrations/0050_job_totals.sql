-- /metrics stays cheap however long the history grows (issue 12): with
-- 1,000,000 finished jobs one scrape took 12 s, four scans of the whole
-- table. The totals of finished jobs (by status and duration bucket) are
-- kept here by statement triggers, so a scrape reads a few dozen rows.
-- The totals follow the table exactly: a retry (finished -> queued), a
-- prune or a project delete takes its jobs out again.

-- The upper bounds (seconds, "le") of cpi_import_duration_seconds; /metrics
-- reads them from here, so the buckets are defined once.
CREATE OR REPLACE FUNCTION cpi_duration_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT ARRAY[0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]::float8[] $$;

-- The first bucket whose bound is >= secs (0-based; the number of bounds
-- for +Inf), -1 for a job without both times.
CREATE OR REPLACE FUNCTION cpi_duration_bucket(started timestamptz, finished timestamptz) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN started IS NULL OR finished IS NULL THEN -1
               ELSE (SELECT count(*)::int FROM unnest(cpi_duration_bounds()) b
                      WHERE b < extract(epoch FROM finished - started)) END $$;

CREATE TABLE IF NOT EXISTS cpi_import_job_totals (
    status        TEXT NOT NULL,
    bucket        INT NOT NULL,
    jobs          BIGINT NOT NULL,
    seconds       FLOAT8 NOT NULL,
    rows_read     BIGINT NOT NULL,
    rows_inserted BIGINT NOT NULL,
    rows_updated  BIGINT NOT NULL,
    rows_deleted  BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    PRIMARY KEY (status, bucket)
);

-- Adds deltas (a JSON array of per-(status, bucket) sums, + for new rows
-- and - for old ones). Rows are locked in key order, so two
-- statements never deadlock on the totals.
CREATE OR REPLACE FUNCTION cpi_import_job_totals_add(deltas jsonb) RETURNS void
LANGUAGE sql AS
$$
    INSERT INTO cpi_import_job_totals AS t
    SELECT status, bucket, sum(jobs), sum(seconds), sum(rows_read), sum(rows_inserted),
           sum(rows_updated), sum(rows_deleted), sum(rows_rejected)
      FROM jsonb_to_recordset(deltas) AS d(status text, bucket int, jobs bigint, seconds float8,
           rows_read bigint, rows_inserted bigint, rows_updated bigint, rows_deleted bigint,
           rows_rejected bigint)
     GROUP BY status, bucket
    HAVING sum(jobs) <> 0 OR sum(seconds) <> 0 OR sum(rows_read) <> 0 OR sum(rows_inserted) <> 0
        OR sum(rows_updated) <> 0 OR sum(rows_deleted) <> 0 OR sum(rows_rejected) <> 0
     ORDER BY status, bucket
    ON CONFLICT (status, bucket) DO UPDATE SET
        jobs = t.jobs + EXCLUDED.jobs,
        seconds = t.seconds + EXCLUDED.seconds,
        rows_read = t.rows_read + EXCLUDED.rows_read,
        rows_inserted = t.rows_inserted + EXCLUDED.rows_inserted,
        rows_updated = t.rows_updated + EXCLUDED.rows_updated,
        rows_deleted = t.rows_deleted + EXCLUDED.rows_deleted,
        rows_rejected = t.rows_rejected + EXCLUDED.rows_rejected
$$;

-- One trigger function for insert, update and delete: new rows count +1,
-- old rows -1, only finished ones. Claims and lease renewals (queued and
-- running rows) add nothing and lock nothing.
CREATE OR REPLACE FUNCTION cpi_import_job_totals_trigger() RETURNS trigger
LANGUAGE plpgsql AS
$$
DECLARE
    deltas jsonb := '[]'::jsonb;
BEGIN
    -- Grouped before they become JSON: a prune of a million jobs makes a
    -- few dozen deltas.
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        deltas := deltas || coalesce((SELECT jsonb_agg(to_jsonb(g)) FROM (
            SELECT status, cpi_duration_bucket(started_at, finished_at) AS bucket, count(*) AS jobs,
                   coalesce(sum(extract(epoch FROM finished_at - started_at)), 0) AS seconds,
                   coalesce(sum(rows_read), 0) AS rows_read, coalesce(sum(rows_inserted), 0) AS rows_inserted,
                   coalesce(sum(rows_updated), 0) AS rows_updated, coalesce(sum(rows_deleted), 0) AS rows_deleted,
                   coalesce(sum(rows_rejected), 0) AS rows_rejected
              FROM new_rows WHERE status IN ('succeeded', 'failed', 'duplicate') GROUP BY 1, 2) g), '[]');
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        deltas := deltas || coalesce((SELECT jsonb_agg(to_jsonb(g)) FROM (
            SELECT status, cpi_duration_bucket(started_at, finished_at) AS bucket, -count(*) AS jobs,
                   -coalesce(sum(extract(epoch FROM finished_at - started_at)), 0) AS seconds,
                   -coalesce(sum(rows_read), 0) AS rows_read, -coalesce(sum(rows_inserted), 0) AS rows_inserted,
                   -coalesce(sum(rows_updated), 0) AS rows_updated, -coalesce(sum(rows_deleted), 0) AS rows_deleted,
                   -coalesce(sum(rows_rejected), 0) AS rows_rejected
              FROM old_rows WHERE status IN ('succeeded', 'failed', 'duplicate') GROUP BY 1, 2) g), '[]');
    END IF;
    IF jsonb_array_length(deltas) > 0 THEN
        PERFORM cpi_import_job_totals_add(deltas);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS cpi_import_job_totals_insert ON cpi_import_jobs;
CREATE TRIGGER cpi_import_job_totals_insert AFTER INSERT ON cpi_import_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cpi_import_job_totals_trigger();
DROP TRIGGER IF EXISTS cpi_import_job_totals_update ON cpi_import_jobs;
CREATE TRIGGER cpi_import_job_totals_update AFTER UPDATE ON cpi_import_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cpi_import_job_totals_trigger();
DROP TRIGGER IF EXISTS cpi_import_job_totals_delete ON cpi_import_jobs;
CREATE TRIGGER cpi_import_job_totals_delete AFTER DELETE ON cpi_import_jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cpi_import_job_totals_trigger();

-- The jobs already there.
DELETE FROM cpi_import_job_totals;
INSERT INTO cpi_import_job_totals
SELECT status, cpi_duration_bucket(started_at, finished_at), count(*),
       coalesce(sum(extract(epoch FROM finished_at - started_at)), 0),
       coalesce(sum(rows_read), 0), coalesce(sum(rows_inserted), 0), coalesce(sum(rows_updated), 0),
       coalesce(sum(rows_deleted), 0), coalesce(sum(rows_rejected), 0)
  FROM cpi_import_jobs WHERE status IN ('succeeded', 'failed', 'duplicate')
 GROUP BY 1, 2;

-- /stats/imports reads a window of recent hours.
CREATE INDEX IF NOT EXISTS cpi_import_jobs_finished_at
    ON cpi_import_jobs (finished_at) WHERE finished_at IS NOT NULL;
