#!/usr/bin/env bash
# System packages the test suite and benchmarks run for real: Prometheus (promtool, dashboard
# queries), Chromium (status page), PostgreSQL (the storage tests start a throwaway server of
# their own; only its binaries are used), nginx and blackbox_exporter (benchmarks).
# Installs only what is missing; needs root (CI runs as root) or an already prepared machine.
set -euo pipefail

packages=(prometheus chromium postgresql nginx prometheus-blackbox-exporter)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them (apt-get install ${missing[*]}) or run this as root" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
