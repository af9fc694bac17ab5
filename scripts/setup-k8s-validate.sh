#!/usr/bin/env bash
# Installs the offline Kubernetes manifest validator (PyPI kubernetes-validate, which ships the
# Kubernetes JSON schemas) into the repo venv .venv, when .venv/bin/kubernetes-validate is
# missing. Used by `make test-manifests` (scripts/validate-manifests.py).
# Idempotent and quiet: a second run changes nothing and prints nothing.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
VERSION=1.37.0
[ -x "$venv/bin/kubernetes-validate" ] && exit 0
echo "setup: installing kubernetes-validate $VERSION into .venv"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "kubernetes-validate==$VERSION"
[ -x "$venv/bin/kubernetes-validate" ] || { echo "setup: .venv/bin/kubernetes-validate still missing" >&2; exit 1; }
