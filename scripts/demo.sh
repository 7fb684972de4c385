#!/usr/bin/env bash
# The main job on the local sandbox fleet, from a fresh machine: install, bring
# the fleet up, run a command across it, rehearse a patch night, install Docker,
# roll a service out (and back), and show what the journal recorded.
# The fleet stays up for you to explore; `ops sandbox down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
scripts/docker_engine.sh

step() { printf '\n== [%ss] %s\n' "$SECONDS" "$*"; }

step "ops sandbox up: 6 container hosts (Debian, and Amazon Linux stand-ins) + 200 simulated instances, and an image registry with hello v1-v3"
ops sandbox up --platforms "${DEMO_PLATFORMS:-debian:4,al2:1,al2023:1}" --synthetic "${DEMO_SYNTHETIC:-200}" --registry
eval "$(ops sandbox env)"

step "ops run: uptime on every web host, over SSM Run Command"
ops --yes run --target Role=web --show-output -- 'echo "$(hostname): $(uptime -p)"'

step "ops run: the whole sandbox, container hosts and simulated instances, 10% at a time"
ops --yes run --target Env=sandbox --concurrency 10% --max-errors 20% -- 'head -n 1 /etc/os-release' | tail -n 8

step "ops patch run: a patch night on the web hosts (canary, then waves; drain, update, reboot, check, register)"
ops --yes patch run --name 'web-*' --poll 1

step "ops patch report: what the night did, host by host"
ops patch report "$(ops runs list --kind patch --limit 1 --output json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')"

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

# hello (inventories/sandbox/services/hello.yml) runs on the web hosts that have
# Docker: the same "--instance ID" pairs narrow each deploy to them.
step "ops deploy run: hello v1, all at once, in place of the hosts' placeholder app"
# shellcheck disable=SC2086
ops --yes deploy run hello --image v1 --batch 100% --min-healthy 0 $web_debian

step "ops deploy run: hello v2, one host at a time (drain, pull by digest, swap, health check, register)"
# shellcheck disable=SC2086
ops --yes deploy run hello --image v2 --batch 1 $web_debian

step "ops deploy run: hello v3, whose health check never passes: its batch goes back to v2, the deploy halts"
set +e
# shellcheck disable=SC2086
ops --yes deploy run hello --image v3 --batch 1 $web_debian
code=$?
set -e
if [ "$code" != 3 ]; then
    echo "demo: the deploy of v3 should have halted with exit 3, not $code" >&2
    exit 1
fi
echo "the deploy of v3 halted with exit 3, as it should"

step "ops deploy status: the web hosts, the digest each runs, healthy and in service"
ops deploy status hello

step "the run journal"
ops runs list --limit 5

step "the last AWS calls the fleet served"
ops sandbox calls | tail -n 8

printf '\nThe sandbox is still up. Point a shell at it with:  eval "$(.venv/bin/ops sandbox env)"\n'
printf 'Remove it with:  .venv/bin/ops sandbox down\n'
