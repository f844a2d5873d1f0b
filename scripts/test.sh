#!/usr/bin/env bash
# Install mialens with its test tools and data, then lint, check the layer contract and run
# the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test

# Fashion-MNIST for the loader tests comes from Debian's dataset-fashion-mnist package.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null \
        || { $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
        || echo "warning: could not install dataset-fashion-mnist; its tests will be skipped" >&2
fi

.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/lint-imports  # the layer contract of pyproject.toml: no upward import, no cycle
.venv/bin/python -m pytest -q "$@"
