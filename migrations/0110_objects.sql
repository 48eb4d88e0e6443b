-- The simple manifest kinds (issue #25: Provider, Alert, Receiver; later
-- others whose spec is plain data): one table, the spec as JSON, with the
-- columns every reconciled row has (owner, source manifest, the digest cpi
-- wrote, to tell drift). A spec names secret files by path; their content
-- is never stored. Additive: older binaries ignore it.
CREATE TABLE IF NOT EXISTS cpi_objects (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    spec JSONB NOT NULL,
    managed_by TEXT NULL,
    source TEXT NULL,
    applied_digest TEXT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (kind, name)
);
