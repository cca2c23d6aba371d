#!/usr/bin/env bash
# The one benchmark command: installs what the benchmarks need, then runs them.
#   bash benchmarks/run.sh            # full run (~8 min), rewrites benchmarks/RESULTS.md
#   bash benchmarks/run.sh --smoke    # seconds, results in a temp file
# Other arguments go to run.py (see python benchmarks/run.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The project (editable) with the peers compared against, Hypercorn, uvloop and py-spy.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' py-spy
if ! command -v h2load >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
  else
    echo "h2load is missing: install nghttp2-client (Debian/Ubuntu) or nghttp2 (Homebrew)" >&2
  fi
fi
exec .venv/bin/python benchmarks/run.py "$@"
