#!/usr/bin/env bash
# Set up a virtualenv and run the helloworld example: a server and a client talking.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
cd examples/helloworld
exec ../../.venv/bin/python run.py
