-- The management tables of the connection decision record, plus what the
-- reconciler needs to own rows (managed_by, source) and detect drift.
CREATE TABLE IF NOT EXISTS cpi_connections (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) UNIQUE NOT NULL,
    description TEXT,
    database_url TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS cpi_projects (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) UNIQUE NOT NULL,
    description TEXT,
    connection_id UUID REFERENCES cpi_connections(id) ON DELETE SET NULL,
    config JSONB NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

-- NULL = created by someone else: never touched unless adopted.
ALTER TABLE cpi_connections ADD COLUMN IF NOT EXISTS managed_by TEXT NULL;
ALTER TABLE cpi_connections ADD COLUMN IF NOT EXISTS source TEXT NULL;
-- Digest of the content cpi last wrote; a row whose content no longer
-- matches it was changed behind cpi's back (drift).
ALTER TABLE cpi_connections ADD COLUMN IF NOT EXISTS applied_digest TEXT NULL;
ALTER TABLE cpi_projects ADD COLUMN IF NOT EXISTS managed_by TEXT NULL;
ALTER TABLE cpi_projects ADD COLUMN IF NOT EXISTS source TEXT NULL;
ALTER TABLE cpi_projects ADD COLUMN IF NOT EXISTS applied_digest TEXT NULL;

CREATE INDEX IF NOT EXISTS cpi_projects_connection_id ON cpi_projects (connection_id);

CREATE TABLE IF NOT EXISTS cpi_reconcile_runs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    owner TEXT NOT NULL,
    trigger TEXT NOT NULL,
    revision TEXT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'refused')),
    created INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    drifted INTEGER NOT NULL DEFAULT 0,
    diff TEXT NOT NULL DEFAULT '',
    error TEXT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    finished_at TIMESTAMP WITH TIME ZONE NULL
);
