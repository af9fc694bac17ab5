#!/usr/bin/env bash
# Installs schemathesis (PyPI) into the repo venv .venv for `make fuzz-api`.
# Idempotent and quiet: does nothing when .venv/bin/schemathesis is there.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
[[ -x "$venv/bin/schemathesis" ]] && exit 0
[[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
echo "setup: installing schemathesis into .venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis>=4,<5"
