#!/usr/bin/env bash
# Installs the system packages Slipway needs on Debian 12, and a Rust toolchain if there is none.
# Safe to run again: it only installs what is missing.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# Callers may add packages of their own (scripts/test: the receivers drains are tested against).
# redis-server and postgresql-15 run add-ons (one server per add-on, started by Slipway).
for pkg in git ca-certificates curl gcc libc6-dev pkg-config make python3 python3-pip python3-venv bsdutils iproute2 nftables debootstrap redis-server redis-tools postgresql-15 postgresql-client-15 ${SLIPWAY_EXTRA_PACKAGES:-}; do
  have_pkg "$pkg" || need+=("$pkg")
done
# Node.js may come from Debian or from NodeSource (which bundles npm); either will do.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "slipway: missing packages: ${need[*]}; run this script as root, or install them with apt-get." >&2
    exit 1
  fi
  echo "-----> Installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Slipway starts its own Redis and Postgres servers; the ones the packages set up are not used.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now redis-server postgresql >/dev/null 2>&1 || true
  fi
  pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "-----> Installing the Rust toolchain (rustup)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
