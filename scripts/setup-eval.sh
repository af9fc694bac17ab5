#!/usr/bin/env bash
# Installs what `make eval` needs: the gallery photos (inside PyPI wheels, downloaded once into
# var/eval/wheels, never from a hub at run time) and Pillow + numpy in the repo venv.
# Idempotent and quiet: checked by the files it provides.
#   var/eval/wheels/{scikit_image,scikit_learn,matplotlib,imgaug,pywavelets}-*.whl
#   .venv/bin/python with PIL and numpy importable
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="$repo/.venv"
py="$venv/bin/python"
wheels="var/eval/wheels"

if [[ ! -x "$py" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
if ! "$py" -c 'import PIL, numpy' >/dev/null 2>&1; then
  "$py" -m pip install --quiet --disable-pip-version-check --no-input "pillow>=10" "numpy>=1.24"
fi

# name pattern in the wheel file name -> requirement
declare -A want=(
  [scikit_image-0.26.0]="scikit-image==0.26.0"
  [scikit_learn-1.9.1]="scikit-learn==1.9.1"
  [matplotlib-3.11.2]="matplotlib==3.11.2"
  [imgaug-0.4.0]="imgaug==0.4.0"
  [pywavelets-1.9.0]="pywavelets==1.9.0"
)
mkdir -p "$wheels"
for prefix in "${!want[@]}"; do
  if ! compgen -G "$wheels/${prefix}-*.whl" >/dev/null; then
    "$py" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
      --only-binary=:all: --python-version 3.11 -d "$wheels" "${want[$prefix]}"
  fi
done
