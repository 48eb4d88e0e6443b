#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis and
# fails on any server error (5xx). A manual check, not part of the suite.
#
# Needs PostgreSQL on 127.0.0.1:5432 with trust auth (override with
# CPI_TEST_ADMIN_URL) and schemathesis (`pip install schemathesis`).
# Extra arguments go to `schemathesis run` (e.g. `--max-examples 500`).
set -euo pipefail
cd "$(dirname "$0")/.."

admin=${CPI_TEST_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
port=${CPI_FUZZ_PORT:-18090}
db="cpi_schemathesis_$$"
work=$(mktemp -d)
pid=""

cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v schemathesis >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 1; }
cargo build --quiet
psql "$admin" -qc "CREATE DATABASE $db"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"

./target/debug/cpi serve --database-url "${admin%/*}/$db" --listen "127.0.0.1:$port" \
  --api-token-file "$work/token" 2> "$work/serve.log" &
pid=$!
for _ in $(seq 60); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.5
done
curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

# A few jobs, so that GET /jobs/{id} reaches a real row.
psql "${admin%/*}/$db" -qc "
  INSERT INTO cpi_import_jobs (project_name, file_name, file_path, status, rows_read, started_at, finished_at)
  SELECT 'demo', 'f' || i || '.csv', '/in/f' || i || '.csv',
         (ARRAY['queued','running','succeeded','failed','duplicate'])[1 + i % 5], i * 10,
         now() - interval '1 minute', now()
    FROM generate_series(1, 5) AS i"

token=$(cat "$work/token")
# From the scratch folder: schemathesis leaves a cache in the working directory.
(cd "$work" && schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error "$@")
