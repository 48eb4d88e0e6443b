-- A replay (`cpi jobs replay`, `POST /jobs/{id}/replay`): a new job that
-- imports a processed file again on purpose. It names the job it replays;
-- its import supersedes the target ledger's entry of the same content
-- (moved to `cpi.superseded_files` in the import's transaction) instead
-- of calling the file a duplicate. Additive: older binaries ignore it.
ALTER TABLE cpi_import_jobs ADD COLUMN IF NOT EXISTS replay_of UUID NULL;
