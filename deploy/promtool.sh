#!/usr/bin/env bash
# Prints the path of a promtool (Prometheus' rule checker), installing it when missing: the one on
# PATH, else one cached under $STOCKWATCH_CACHE_DIR, else Debian's `prometheus` package fetched
# with `apt-get download` and unpacked there with `dpkg -x` (no service is installed or started;
# only the promtool binary is kept, ~50 MB).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi

cache=${STOCKWATCH_CACHE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.stack/cache}/promtool
if [[ -x $cache/promtool ]]; then
  echo "$cache/promtool"
  exit 0
fi

for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null || { echo "promtool: not found, and no $tool to fetch Debian's prometheus package" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -q prometheus >/dev/null 2>&1; then
  # a fresh machine has no package lists yet
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download -q prometheus >/dev/null 2>&1 || {
    echo "promtool: cannot download Debian's prometheus package (apt-get download prometheus)" >&2
    exit 1
  }
fi
dpkg -x prometheus_*.deb unpacked
mkdir -p "$cache"
install -m 0755 unpacked/usr/bin/promtool "$cache/promtool"
echo "promtool: installed $("$cache/promtool" --version 2>&1 | head -1) in $cache" >&2
echo "$cache/promtool"
