#!/usr/bin/env bash
# The oldest versions the project claims, tested: a throwaway virtual environment with the
# oldest Python (requires-python) and the oldest torch and torchvision (dependencies) that
# pyproject.toml names, everything else from requirements.txt as pip resolves it (so numpy 2
# where the floor's Python allows it), then the unit tests in it.
#
#   tools/floor.sh                     # make floor: every unit test
#   tools/floor.sh tests/test_loss.py  # arguments go to pytest instead of "tests"
#
# FLOOR_PYTHON names the interpreter (default: python3.X for the claimed 3.X, on PATH or in
# pyenv); FLOOR_KEEP=1 keeps the environment. It downloads torch's wheels from PyPI (about
# 3 GB with their CUDA libraries) and trains nothing into the model cache: it uses its own.
set -euo pipefail
cd "$(dirname "$0")/.."

floor() {  # floor NAME: the version after NAME>= in pyproject.toml
  sed -n "s/^ *\"$1>=\([0-9.]*\)\",*$/\1/p" pyproject.toml
}
python_floor=$(sed -n 's/^requires-python = ">=\([0-9.]*\)"$/\1/p' pyproject.toml)
torch_floor=$(floor torch)
vision_floor=$(floor torchvision)
if [ -z "$python_floor" ] || [ -z "$torch_floor" ] || [ -z "$vision_floor" ]; then
  echo "floor.sh: cannot read requires-python, torch>= or torchvision>= from pyproject.toml" >&2
  exit 1
fi

runs() {  # runs PYTHON: whether it starts (a pyenv shim may exist and refuse)
  "$1" -c 'import sys' >/dev/null 2>&1
}
python=${FLOOR_PYTHON:-}
if [ -z "$python" ]; then
  for candidate in "python$python_floor" "$HOME/.pyenv/versions/$python_floor".*/bin/python; do
    if runs "$candidate"; then python=$candidate; break; fi
  done
fi
if [ -z "$python" ] || ! runs "$python"; then
  echo "floor.sh: no Python $python_floor found: install it or set FLOOR_PYTHON" >&2
  exit 1
fi

work=$(mktemp -d /tmp/vae-floor.XXXXXX)
if [ "${FLOOR_KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
"$python" -m venv "$work/venv"
py=$work/venv/bin/python
printf 'torch==%s\ntorchvision==%s\n' "$torch_floor" "$vision_floor" > "$work/constraints.txt"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q -r requirements.txt -e . -c "$work/constraints.txt"
"$py" - <<'EOF'
import platform

import numpy
import torch
import torchvision

print(f"floor: Python {platform.python_version()}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, numpy {numpy.__version__}", flush=True)
torch.from_numpy(numpy.zeros(2)).numpy()  # fails where torch cannot use this numpy
EOF
VAE_TUTORIAL_CACHE=$work/cache OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
  "$py" -m pytest -q -p no:cacheprovider "${@:-tests}"
