-- RP-initiated logout (issue #26): the ID token a session signed in with,
-- sent back to the provider as `id_token_hint` when the user signs out so
-- that the provider ends its own session too. Read only at sign-out and
-- deleted with the session. Additive: older binaries ignore the column.
ALTER TABLE cpi_sessions ADD COLUMN IF NOT EXISTS id_token TEXT;
