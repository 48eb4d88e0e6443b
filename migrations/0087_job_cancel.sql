-- Cancelling a running job (`cpi jobs cancel`, `POST /jobs/{id}/cancel`):
-- the request is written here, and the job's worker reads it with its next
-- lease renewal, drops the import (its target transaction rolls back) and
-- fails the job with this text, the file set aside in `failed/` with its
-- report. A queued job is failed at once and needs no column. Cleared when
-- a job is finished or queued again. Additive: an older worker ignores it
-- (its import then ends as it would have).
ALTER TABLE cpi_import_jobs ADD COLUMN IF NOT EXISTS cancel_requested TEXT NULL;
