#!/usr/bin/env bash
# Install mialens with its test tools and data, then lint, check the layer contract and run
# the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test

# Data the loader tests read from Debian packages (skipped, with their reason, when absent):
# Fashion-MNIST from dataset-fashion-mnist, the King James Bible from bible-kjv(-text).
apt_install() {  # apt_install CHECK_PATH PACKAGE...
    local check="$1"; shift
    if [ ! -e "$check" ] && command -v apt-get >/dev/null; then
        local sudo_cmd=""
        [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo_cmd="sudo"
        $sudo_cmd apt-get install -y -q "$@" >/dev/null \
            || { $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q "$@" >/dev/null; } \
            || echo "warning: could not install $*; their tests will be skipped" >&2
    fi
}
apt_install /usr/share/datasets/fashion-mnist dataset-fashion-mnist
apt_install /usr/bin/bible bible-kjv bible-kjv-text

.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/lint-imports  # the layer contract of pyproject.toml: no upward import, no cycle
.venv/bin/python -m pytest -q "$@"
