#!/usr/bin/env bash
# Make this checkout ready to run: system tools (apt), a project-local virtualenv in .venv with
# tacowave installed editable plus every extra. Idempotent and cheap when nothing changed:
# the venv is reinstalled only when setup.py changes. Source it or run it; it never activates.
#   TACOWAVE_PYTHON  interpreter used to create the venv (default: python3)
#   TACOWAVE_VENV    venv location (default: <repo>/.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TACOWAVE_VENV:-$ROOT/.venv}"
PYTHON="${TACOWAVE_PYTHON:-python3}"
APT_PACKAGES=(flite espeak-ng sox shellcheck)  # shellcheck: tests lint every recipe

log() { printf '[setup] %s\n' "$*" >&2; }

ensure_system_tools() {
  local missing=()
  local tool
  for tool in "${APT_PACKAGES[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "error: missing system programs: ${missing[*]}"
    log "install them first, e.g.: sudo apt-get install ${missing[*]}   (macOS: brew install ${missing[*]})"
    exit 1
  fi
}

ensure_venv() {
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    log "error: $PYTHON is missing or older than Python 3.10; set TACOWAVE_PYTHON to a newer one"
    exit 1
  fi
  local stamp="$VENV/.tacowave-setup-stamp"
  local want
  want="$(cat "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing tacowave and its dependencies into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --progress-bar off --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
  (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --progress-bar off -e ".[all,test]" \
      2> >(grep -v "^WARNING: Location" >&2))
  echo "$want" > "$stamp"
}

ensure_system_tools
ensure_venv
