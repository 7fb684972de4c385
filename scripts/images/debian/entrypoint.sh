#!/bin/sh
# Boot of a sandbox host: runs at every container start, so `docker restart`
# behaves like a reboot (fresh /run state, same host keys, same authorized key).
set -eu

SSH_PORT="${SSH_PORT:-22}"
KEY_FILE=/etc/fleetops/authorized_keys

case "$SSH_PORT" in
    ''|*[!0-9]*) echo "fleetops-entrypoint: SSH_PORT must be a number" >&2; exit 64 ;;
esac

# A real reboot empties /run (tmpfs); a restarted container keeps it.
rm -f /run/reboot-required /run/reboot-required.pkgs
mkdir -p /run/sshd /run/fleetops
chmod 0755 /run/sshd
cat /proc/sys/kernel/random/uuid >/run/fleetops/boot-id

# The hostname must resolve, or sudo warns on every call.
name="$(hostname)"
if ! grep -qw -- "$name" /etc/hosts 2>/dev/null; then
    printf '127.0.1.1\t%s\n' "$name" >>/etc/hosts || true
fi

ssh-keygen -A >/dev/null

umask 077
mkdir -p /root/.ssh
if [ -n "${SSH_AUTHORIZED_KEY:-}" ]; then
    printf '%s\n' "$SSH_AUTHORIZED_KEY" >/root/.ssh/authorized_keys
elif [ -f "$KEY_FILE" ]; then
    cat "$KEY_FILE" >/root/.ssh/authorized_keys
fi
chmod 0700 /root/.ssh
[ -f /root/.ssh/authorized_keys ] && chmod 0600 /root/.ssh/authorized_keys

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec /usr/sbin/sshd -D -e -p "$SSH_PORT" -o ListenAddress=127.0.0.1
