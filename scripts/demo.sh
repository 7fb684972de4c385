#!/usr/bin/env bash
# The main job on the local sandbox fleet, from a fresh machine: install, bring
# the fleet up, run a command across it, and show what the journal recorded.
# The fleet stays up for you to explore; `ops sandbox down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
scripts/docker_engine.sh

step() { printf '\n== %s\n' "$*"; }

step "ops sandbox up: 6 container hosts (Debian, and Amazon Linux stand-ins) + 200 simulated instances"
ops sandbox up --platforms "${DEMO_PLATFORMS:-debian:4,al2:1,al2023:1}" --synthetic "${DEMO_SYNTHETIC:-200}"
eval "$(ops sandbox env)"

step "ops run: uptime on every web host, over SSM Run Command"
ops --yes run --target Role=web --show-output -- 'echo "$(hostname): $(uptime -p)"'

step "ops run: the whole sandbox, container hosts and simulated instances, 10% at a time"
ops --yes run --target Env=sandbox --concurrency 10% --max-errors 20% -- 'head -n 1 /etc/os-release' | tail -n 8

# The web hosts that run Debian: the Amazon Linux stand-ins' package shims
# install nothing, so Docker cannot really run there.
web_debian=$(ops --output json inventory list --target Role=web | python3 -c '
import json, sys
for h in json.load(sys.stdin):
    if h["platform"].startswith("debian"):
        print("--instance", h["instance_id"])
')
step "ops docker install: Debian's docker.io on the Debian web hosts, pulled over SSM"
# shellcheck disable=SC2086 # one "--instance ID" pair per line, ids only
ops --yes docker install $web_debian

step "ops docker status: every web host (the stand-ins have no Docker: exit 1, drift shown)"
ops docker status --target Role=web || true

step "the run journal"
ops runs list --limit 5

step "the last AWS calls the fleet served"
ops sandbox calls | tail -n 8

printf '\nThe sandbox is still up. Point a shell at it with:  eval "$(.venv/bin/ops sandbox env)"\n'
printf 'Remove it with:  .venv/bin/ops sandbox down\n'
