-- The running cpi processes (`cpi run`, `cpi serve`), each refreshing its
-- row while it runs: what a key rotation must wait for. `key_ids` are the
-- ids of the keys its key file holds, in the file's order (the first
-- encrypts); ids only, never a key. A row not seen for a while is a
-- process that died; `cpi keys` and `cpi rekey` ignore it.
CREATE TABLE IF NOT EXISTS cpi_processes (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    key_ids TEXT[] NOT NULL DEFAULT '{}',
    started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    seen_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp()
);
