#!/usr/bin/env bash
# The whole test suite, from a fresh machine: venv, lint, types, every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
scripts/docker_engine.sh
scripts/build_images.sh   # once; later runs reuse the images by tag
ruff check ops tests benchmarks
ruff format --check ops tests benchmarks
mypy
pytest "$@"
