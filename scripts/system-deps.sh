#!/usr/bin/env bash
# Installs the Debian packages tongguan needs when they are missing: PostgreSQL with PostGIS,
# Chromium with its driver for the browser tests and screenshots, and a CJK font so that
# headless Chromium renders the Chinese interface legibly. Uses sudo when not root.
set -euo pipefail

need=()
pg_major=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1 || true)
[ -n "$pg_major" ] && [ -x "/usr/lib/postgresql/$pg_major/bin/pg_ctl" ] || need+=(postgresql)
if [ -z "$pg_major" ] || ! ls /usr/share/postgresql/"$pg_major"/extension/postgis.control >/dev/null 2>&1; then
  need+=("postgresql-${pg_major:-15}-postgis-3")
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
getent passwd postgres >/dev/null 2>&1 || need+=(postgresql)

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "tongguan needs these Debian packages: ${need[*]}" >&2
  echo "install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"
