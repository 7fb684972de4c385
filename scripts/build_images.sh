#!/usr/bin/env bash
# Build the sandbox fleet's images that are missing or stale (idempotent).
# Usage: scripts/build_images.sh [debian] [al2] [al2023]   (default: all)
# The logic lives in ops/sandbox/images.py so tests and the CLI share it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/docker_engine.sh
python="${PYTHON:-.venv/bin/python}"
if [ ! -x "$python" ]; then
    python=python3
fi
start=$(date +%s)
"$python" -m ops.sandbox.images "$@"
echo "build_images: done in $(( $(date +%s) - start )) s"
