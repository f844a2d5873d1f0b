#!/usr/bin/env bash
# Create .venv (if needed) and install mialens into it, CPU PyTorch first.
#   scripts/install.sh          # runtime only
#   scripts/install.sh test     # plus test tools (pytest, ruff, import-linter) and the
#                               # text extras (tokenizers, transformers) its tests use
#   scripts/install.sh text     # runtime plus BPE tokenizers (transformers: its own extra)
# MIALENS_TORCH overrides the torch requirement (default: torch==2.13.0, the CPU
# build; any torch>=2.2 works). MIALENS_VENV overrides the environment's location.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${MIALENS_VENV:-.venv}"
torch_req="${MIALENS_TORCH:-torch==2.13.0}"
extras="${1:-}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
pip_install() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }

# torch first: a loose requirement resolved without torch present pulls a multi-GB CUDA build.
if ! "$py" -c "import torch" 2>/dev/null; then
    pip_install "$torch_req"
fi
if [ -n "$extras" ]; then
    pip_install -e ".[$extras]"
else
    pip_install -e .
fi
