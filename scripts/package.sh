#!/usr/bin/env bash
# Builds cpi's Debian package with `cargo deb` (the cargo-deb crate) from a
# binary already built; `[package.metadata.deb]` in Cargo.toml describes it.
#
#   scripts/package.sh TARGET_DIR OUT_DIR [cargo-deb flags...]
#   scripts/package.sh --install-cargo-deb   (what scripts/test.sh runs)
#
# TARGET_DIR is a cargo target folder holding release/cpi: `target` for
# scripts/release.sh; tests/integration/packaging.rs passes a scratch folder
# holding a copy of the test build's debug binary (a release build takes 20+
# minutes; cargo-deb reads `target/release/` in Cargo.toml's assets as
# "TARGET_DIR/release/", so the package is the same but for the binary).
# First the binary writes the assets it generates into TARGET_DIR/release/pkg:
# cpi.service (the unit of examples/deploy/systemd, starting /usr/bin/cpi),
# completions/ for bash, zsh and fish, man/*.1.gz (a page per command). Then
# `cargo deb --no-build` packages them with the binary, LICENSE, /etc/cpi/README
# and debian/postinst. Installs cargo-deb when missing. Prints the .deb's path
# last.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

# The cargo-deb the release and the tests use (about 80 s to install here).
cargo_deb_version=3.8.0
installed=$(cargo deb --version 2>/dev/null || true)
if [ "$installed" != "cargo-deb $cargo_deb_version" ]; then
  echo "installing cargo-deb $cargo_deb_version (crates.io)" >&2
  cargo install cargo-deb --locked --version "$cargo_deb_version" >&2
fi
if [ "${1:-}" = --install-cargo-deb ]; then exit 0; fi

target=$(realpath "$1")
out=$(realpath -m "$2")
shift 2
bin="$target/release/cpi"
[ -x "$bin" ] || { echo "no binary $bin" >&2; exit 1; }

pkg="$target/release/pkg"
rm -rf "$pkg"
install -d "$pkg/completions" "$pkg/man"
# The example unit starts /usr/local/bin/cpi (a hand install); the
# package's binary is /usr/bin/cpi.
sed 's#/usr/local/bin/cpi#/usr/bin/cpi#' "$root/examples/deploy/systemd/cpi.service" \
  >"$pkg/cpi.service"
"$bin" completions bash >"$pkg/completions/cpi"
"$bin" completions zsh >"$pkg/completions/_cpi"
"$bin" completions fish >"$pkg/completions/cpi.fish"
"$bin" man --dir "$pkg/man"
gzip -9n "$pkg"/man/*.1

mkdir -p "$out"
cd "$root"
CARGO_TARGET_DIR="$target" cargo deb --no-build --locked --output "$out/" "$@" >&2
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
deb="$out/cpi_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "cargo deb wrote no $deb" >&2; exit 1; }
echo "$deb"
