-- Single sign-on for the console (issue #26). Server-side sessions, so that
-- every replica behind a load balancer knows them and a sign-out ends the
-- session everywhere. Keyed by the SHA-256 of the cookie's value: the
-- table never holds what a browser presents. `csrf` is the session's
-- anti-CSRF token (the console sends it back in `X-CSRF-Token`; useless
-- without the cookie). Additive: older binaries ignore both tables.
CREATE TABLE IF NOT EXISTS cpi_sessions (
    id_sha256 TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    groups TEXT[] NOT NULL DEFAULT '{}',
    csrf TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS cpi_sessions_expires ON cpi_sessions (expires_at);

-- A sign-in under way: the provider's `state` (hashed), the nonce the ID
-- token must carry and the PKCE verifier, for the few minutes between
-- /auth/login and /auth/callback; taken (deleted) by the callback.
CREATE TABLE IF NOT EXISTS cpi_sso_logins (
    state_sha256 TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
