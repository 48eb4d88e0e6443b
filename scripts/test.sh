#!/usr/bin/env bash
# The test command: installs what the tests drive (a headless browser,
# promtool, systemd-analyze, openssl, kubernetes-validate, an S3 server,
# cargo-deb) when it is missing, starts the local PostgreSQL if it is down, then runs every test.
# Tests that need a tool fail, never skip, when it is missing: this script is
# how a fresh machine gets them. Arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v chromedriver >/dev/null || apt_packages+=(chromium-driver)
command -v promtool >/dev/null || apt_packages+=(prometheus)
command -v systemd-analyze >/dev/null || apt_packages+=(systemd)
# The packaging test unpacks the .deb (scripts/package.sh builds it).
command -v dpkg-deb >/dev/null || apt_packages+=(dpkg)
# The TLS tests make a test CA with the openssl CLI.
command -v openssl >/dev/null || apt_packages+=(openssl)
# The hostile-input tests measure peak RSS with /usr/bin/time.
[ -x /usr/bin/time ] || apt_packages+=(time)
if ((${#apt_packages[@]})); then
  echo "installing ${apt_packages[*]} (Debian)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
# The packaging test builds the .deb with cargo deb (crates.io).
scripts/package.sh --install-cargo-deb
pip_packages=()
command -v kubernetes-validate >/dev/null || pip_packages+=(kubernetes-validate)
command -v moto_server >/dev/null || pip_packages+=("moto[server]")
python3 -c "import aiosmtpd" 2>/dev/null || pip_packages+=(aiosmtpd)
if ((${#pip_packages[@]})); then
  echo "installing ${pip_packages[*]} (PyPI)" >&2
  python3 -m pip install -q "${pip_packages[@]}"
  hash -r
fi

# The single-sign-on tests run npm's oidc-provider (node 20 or later) on
# loopback, installed into target/oidc-provider (OIDC_PROVIDER_DIR).
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "installing nodejs npm (Debian)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}
if [ ! -f target/oidc-provider/node_modules/oidc-provider/package.json ]; then
  echo "installing oidc-provider (npm)" >&2
  mkdir -p target/oidc-provider
  (cd target/oidc-provider && npm install --no-audit --no-fund --silent oidc-provider@9.13.3 >/dev/null)
fi
export OIDC_PROVIDER_DIR="${OIDC_PROVIDER_DIR:-$PWD/target/oidc-provider}"

# The shared server on 127.0.0.1:5432 (the tests fall back to the embedded
# one when nothing answers there and it cannot be started).
if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 60); do
      pg_isready -h 127.0.0.1 -p 5432 -q && break
      sleep 1
    done
  fi
fi

exec cargo nextest run "$@"
