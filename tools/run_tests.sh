#!/usr/bin/env bash
# The README's test command (and exactly what CI runs): set up, then run the whole suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k audio`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$(date +%s)
bash "$ROOT/tools/setup_env.sh"
setup_done=$(date +%s)
echo "[tests] setup took $((setup_done - start)) s" >&2
cd "$ROOT"
set +e
"${TACOWAVE_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
rc=$?
set -e
echo "[tests] pytest took $(( $(date +%s) - setup_done )) s, exit code $rc" >&2
# pytest exits 5 when it collected no tests: for this project that is a broken suite, not a pass.
if [ "$rc" -eq 5 ]; then
  echo "[tests] error: no tests were collected" >&2
  exit 1
fi
exit "$rc"
