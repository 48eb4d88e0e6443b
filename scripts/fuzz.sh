#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 180) each, seeded with
# the repository's manifests and configs. Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Crashers land in
# fuzz/artifacts/<target>/; copy each into tests/integration/fuzz_crashers/
# <target>/ so that `cargo test` replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-180}"
TARGETS=(manifest project_config copy_encoders record_reader header_mapper)

seed() {
  local dir="fuzz/corpus/$1"
  mkdir -p "$dir"
  case "$1" in
    manifest)
      find examples tests -name '*.yaml' -size -64k 2>/dev/null | head -200 |
        while read -r f; do cp "$f" "$dir/$(echo "$f" | tr '/' '_')"; done ;;
    project_config)
      printf '{"inbox":"/srv/in","defaults":{"file_pattern":"*.csv","primary_key":"id"},"tables":[{"file_pattern":"orders_*.csv","table":"sales.orders","primary_key":["order_id"],"mode":"upsert","delimiter":";","null":["","NULL"]}]}' >"$dir/seed1"
      printf '{"settle_seconds":2,"defaults":{"on_error":"skip_rows","max_errors":10,"encoding":"latin1"}}' >"$dir/seed2" ;;
    copy_encoders)
      for v in '\x001234' '\x05-12.5e3' '\x0a2024-02-29' '\x0c2024-02-29 12:00:00+02' '\x0de3b0c442-98fc-1c14-9afb-f4c8996fb924' '\x0f{"a":[1,2]}' '\x07a\tb\nc\\'; do
        printf "$v" >"$dir/$(printf '%s' "$v" | sha1sum | cut -c1-12)"
      done ;;
    record_reader)
      printf '\x00\x02id,name\r\n1,"a\nb"\r\n2,x\n' >"$dir/seed1"
      printf '\x05\x00a;b\n"\\";x"\n3;4' >"$dir/seed2" ;;
    header_mapper)
      printf 'id,Name,amount=total' >"$dir/seed1"
      printf 'a,A,,b=' >"$dir/seed2" ;;
  esac
}

for t in "${TARGETS[@]}"; do
  seed "$t"
  echo "== $t: ${SECONDS_PER_TARGET}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 -max_len=65536 -timeout=10) \
    2>&1 | grep -E '^(Done [0-9]+ runs|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Test unit written)' || true
done
