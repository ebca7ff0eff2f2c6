#!/usr/bin/env bash
# Creates tools/parity/.venv with the pinned reference stack.
# Usage (from anywhere): bash tools/parity/setup.sh
# torch from PyPI pulls the CUDA wheels (several GB); that is expected.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" -m pip install --no-deps -r "$here/requirements-nodeps.txt"
"$venv/bin/python" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
