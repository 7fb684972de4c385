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
# The sandbox registry's binary comes from apt-get on first use: install it here, once,
# so two test workers never run apt-get at the same time.
command -v docker-registry >/dev/null || python -c 'from ops.sandbox import registry; registry._binary(print)'
# Three workers on 2 cores: most of the suite waits on hosts (installs, reboots, health
# checks), not on the CPU. Groups and order: tests/conftest.py. PYTEST_WORKERS=0 runs serially.
pytest -n "${PYTEST_WORKERS:-3}" "$@"
