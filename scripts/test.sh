#!/usr/bin/env bash
# Set up a virtualenv with the test dependencies and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# A pytest exit of 5 (no tests collected) is a failure: it propagates as-is.
exec .venv/bin/python -m pytest -q "$@"
