-- The seam between what happens and who is told (DESIGN §9, "Events"). A
-- row is written in the same transaction as its cause, so an event exists
-- exactly when its cause committed. Delivery (notifications) keeps its own
-- state in a table of its own; this table is append-only but for retention.
--
-- `seq` orders events as they committed per writer; delivery reads in `seq`
-- order per project. The payload never holds a secret or a row value.
CREATE TABLE IF NOT EXISTS cpi_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    kind TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('info', 'warn', 'error')),
    project TEXT NULL,
    target_table TEXT NULL,
    job_id UUID NULL,
    run_id UUID NULL,
    payload JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX IF NOT EXISTS cpi_events_at ON cpi_events (at);
CREATE INDEX IF NOT EXISTS cpi_events_project_seq ON cpi_events (project, seq);
CREATE INDEX IF NOT EXISTS cpi_events_job ON cpi_events (job_id) WHERE job_id IS NOT NULL;
