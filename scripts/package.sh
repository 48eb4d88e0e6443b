#!/usr/bin/env bash
# Builds the Debian package of a cpi binary with dpkg-deb from a staging tree:
#   scripts/package.sh BINARY OUT_DIR
# writes OUT_DIR/stage/ (the tree as installed) and OUT_DIR/cpi_VERSION_ARCH.deb,
# and prints the .deb's path. It builds nothing with cargo: scripts/release.sh
# passes the release binary, tests/integration/packaging.rs the debug binary
# the tests already built. The package holds the binary (/usr/bin/cpi), the
# systemd unit of examples/deploy/systemd, completions for bash, zsh and fish,
# a man page per command, LICENSE, and the config folder /etc/cpi.
set -euo pipefail
bin=$(realpath "$1")
out=$(realpath -m "$2")
root="$(cd "$(dirname "$0")/.." && pwd)"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)

stage="$out/stage"
rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
  "$stage/usr/share/man/man1" "$stage/usr/share/doc/cpi" \
  "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" \
  "$stage/etc/cpi/credentials" "$stage/etc/cpi/secrets"
chmod 0750 "$stage/etc/cpi/credentials" "$stage/etc/cpi/secrets"

install -m 0755 "$bin" "$stage/usr/bin/cpi"
# The example unit starts /usr/local/bin/cpi (a hand install); the package's
# binary is /usr/bin/cpi.
sed 's#/usr/local/bin/cpi#/usr/bin/cpi#' "$root/examples/deploy/systemd/cpi.service" \
  >"$stage/lib/systemd/system/cpi.service"
chmod 0644 "$stage/lib/systemd/system/cpi.service"
"$bin" completions bash >"$stage/usr/share/bash-completion/completions/cpi"
"$bin" completions zsh >"$stage/usr/share/zsh/vendor-completions/_cpi"
"$bin" completions fish >"$stage/usr/share/fish/vendor_completions.d/cpi.fish"
"$bin" man --dir "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1
install -m 0644 "$root/LICENSE" "$stage/usr/share/doc/cpi/copyright"

size_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: cpi
Version: $version
Architecture: $arch
Maintainer: The cpi authors <cpi@example.invalid>
Installed-Size: $size_kb
Depends: libc6, adduser
Section: database
Priority: optional
Description: CSV imports into PostgreSQL, under git
 cpi imports CSV files into PostgreSQL as declared by manifests kept in git:
 a daemon (cpi run) and a CLI. The systemd unit cpi.service is installed
 but not enabled; see /usr/share/doc/cpi and docs/operations.md.
CONTROL
# The unit runs as the system user cpi; the package creates it (and never
# enables or starts the service: the operator writes the credentials first).
cat >"$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && ! getent passwd cpi >/dev/null; then
  adduser --system --group --home /var/lib/cpi --no-create-home cpi >/dev/null
fi
if [ -d /etc/cpi ]; then chgrp -R cpi /etc/cpi/credentials /etc/cpi/secrets 2>/dev/null || true; fi
POSTINST
chmod 0755 "$stage/DEBIAN/postinst"

deb="$out/cpi_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
