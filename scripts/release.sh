#!/usr/bin/env bash
# Builds a release into target/dist/: the release binary (no debug info,
# stripped: see [profile.release]), the Debian package (`cargo deb` through
# scripts/package.sh, which installs cargo-deb when missing), a .tar.gz of
# the binary with LICENSE, and SHA256SUMS over both.
# A release build takes 20+ minutes on 2 cores.
#   scripts/release.sh [--no-tag]
# --no-tag: build everything but make no tag (a trial run of the release).
set -euo pipefail
cd "$(dirname "$0")/.."
tagging=yes
if [ "${1:-}" = --no-tag ]; then tagging=no; fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(uname -m)
dist=target/dist
nice -n 10 cargo build --release --locked --bin cpi
rm -rf "$dist"
mkdir -p "$dist"
scripts/package.sh target "$dist" >/dev/null
tarball="cpi-${version}-${arch}-linux.tar.gz"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
install -d "$tmp/cpi-${version}"
install -m 0755 target/release/cpi "$tmp/cpi-${version}/cpi"
install -m 0644 LICENSE "$tmp/cpi-${version}/LICENSE"
tar -C "$tmp" --owner=0 --group=0 -czf "$dist/$tarball" "cpi-${version}"
(cd "$dist" && sha256sum -- *.deb *.tar.gz >SHA256SUMS)
# The tag the pre-commit example pins (rev: v<version>); made on a clean
# tree only, never moved.
tag="v$version"
if [ "$tagging" = no ]; then
  echo "--no-tag: not tagging $tag" >&2
elif git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
  echo "tag $tag exists: not moved" >&2
elif git diff --quiet HEAD; then
  git tag -a "$tag" -m "cpi $version"
  echo "tagged $tag (git push origin $tag to publish it)" >&2
else
  echo "uncommitted changes: not tagging $tag" >&2
fi
ls -l "$dist"
cat "$dist/SHA256SUMS"
