#!/usr/bin/env bash
# Run the test suite on every installed Python that grpcasgi supports
# (3.10 to 3.13), each in its own virtualenv under .venv-matrix/, and print
# one summary line per version. Not part of CI (scripts/test.sh runs one
# Python); this is the check that nothing newer than 3.10 slipped in and that
# 3.12/3.13's asyncio changes break nothing.
#
# Usage: bash scripts/test-matrix.sh [pytest args...]
#   VERSIONS="3.10 3.13" bash scripts/test-matrix.sh   # a subset
# Interpreters are looked up as pythonX.Y on PATH, then in pyenv
# ($PYENV_ROOT/versions/X.Y.*, newest patch release). A version that is not
# installed is reported as skipped. Exit status: 0 when every version found
# passed (and at least one was found), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSIONS=${VERSIONS:-"3.10 3.11 3.12 3.13"}
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
if [ "$#" -eq 0 ]; then
  set -- -p no:cacheprovider --timeout 300
fi

# pythonX.Y that really runs: a pyenv shim for a version that is not
# selected exists on PATH but fails, so each candidate is tried.
find_python() {
  local v=$1 candidate
  for candidate in "$(command -v "python$v" 2>/dev/null)" \
    $(ls -d "$PYENV_ROOT/versions/$v".* 2>/dev/null | sort -V -r | sed "s|\$|/bin/python$v|"); do
    if [ -n "$candidate" ] && [ -x "$candidate" ] &&
      "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

summaries=()
failed=0
found=0
for v in $VERSIONS; do
  if ! py=$(find_python "$v"); then
    summaries+=("$v: skipped (no python$v on PATH or in $PYENV_ROOT/versions)")
    continue
  fi
  found=1
  venv=.venv-matrix/$v
  log=.venv-matrix/$v.log
  mkdir -p .venv-matrix
  : >"$log"
  echo "== Python $v ($py): installing into $venv" >&2
  if [ ! -x "$venv/bin/python" ] && ! "$py" -m venv "$venv" >"$log" 2>&1; then
    summaries+=("$v: FAILED to create the venv (see $log)")
    failed=1
    continue
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >>"$log" 2>&1
  # atheris publishes wheels for some Pythons only and its sdist needs clang
  # with libFuzzer: take the newest release that has a wheel for this one.
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=atheris -e '.[test]' >>"$log" 2>&1; then
    summaries+=("$v: FAILED to install .[test] (see $log)")
    failed=1
    continue
  fi
  echo "== Python $v: pytest $*" >&2
  "$venv/bin/python" -m pytest -q "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|^(=+ )?no tests ran' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  if [ "$rc" -eq 0 ]; then
    summaries+=("$v: ok, ${counts:-no summary} ($("$venv/bin/python" -V 2>&1))")
  else
    summaries+=("$v: FAILED (pytest exit $rc), ${counts:-no summary} (see $log)")
    failed=1
  fi
done

echo
echo "Test matrix:"
printf '  %s\n' "${summaries[@]}"
if [ "$found" -eq 0 ]; then
  echo "no supported Python found" >&2
  exit 1
fi
exit "$failed"
