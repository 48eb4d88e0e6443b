-- The audit trail (issue #26): one row per API action (every request that
-- is not a read, and every refused request): who (`token:NAME`,
-- `token:--api-token-file`, `anonymous`), what (method and route
-- template), on what (the project or connection name, or the route's
-- path), how it ended (the HTTP status) and from where (the peer address).
-- Never a body, a header or a query string: no secret can reach it.
-- Pruned with the rest of the history. Additive: older binaries ignore it.
CREATE TABLE IF NOT EXISTS cpi_audit (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    source TEXT NULL
);
CREATE INDEX IF NOT EXISTS cpi_audit_at ON cpi_audit (at);
