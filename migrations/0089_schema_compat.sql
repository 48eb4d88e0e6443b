-- Rolling upgrades: which binaries may still run against this schema.
-- `oldest_binary` is the newest migration a binary must know to run here.
-- A migration that older binaries can live with (a new table, a new
-- column with a default, a new function beside the old one) leaves it as it
-- is; a migration that breaks them (a dropped or renamed column, a changed
-- function signature) ends with
--   UPDATE cpi_schema_compat SET oldest_binary = <its own version>;
-- Binaries before this migration do not read the table: they refuse any
-- newer schema, as they always did.
CREATE TABLE IF NOT EXISTS cpi_schema_compat (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    oldest_binary BIGINT NOT NULL
);
INSERT INTO cpi_schema_compat (oldest_binary) VALUES (89) ON CONFLICT DO NOTHING;
