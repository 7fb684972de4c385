#!/usr/bin/env bash
# Make sure a Docker engine answers. Installs Debian's docker.io and starts
# dockerd in the background when none runs (root on Debian only).
set -euo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "docker_engine: no Docker engine answers and this is not root; start one, or use --synthetic" >&2
    exit 2
fi
if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "docker_engine: no dockerd and no apt-get; install a Docker engine by hand" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
log_dir="${OPS_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/fleetops}"
mkdir -p "$log_dir"
nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
echo "docker_engine: dockerd did not answer within 60 s; see $log_dir/dockerd.log" >&2
exit 2
