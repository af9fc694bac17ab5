#!/usr/bin/env bash
# Installs grpcio-tools into the repo venv (.venv) for scripts/pos-client.py, a POS-style
# client generated from proto/catalog.proto. Idempotent and quiet: does nothing when the
# venv already has grpc_tools (checked by its file).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
py="$venv/bin/python"

if [ -x "$py" ] && compgen -G "$venv/lib/python3*/site-packages/grpc_tools/protoc.py" >/dev/null; then
  exit 0
fi
if [ ! -x "$py" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
echo "setup-pos-client: installing grpcio-tools into $venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check --no-input "grpcio-tools>=1.60,<2"
