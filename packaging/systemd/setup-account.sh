#!/usr/bin/env bash
# Prepares the service account choo-agent.service runs as, for rootless Podman.
# Run as root by `make install` (not for DESTDIR staging: a package does this in
# its postinst). Idempotent: every step checks before it changes anything.
#
#   setup-account.sh SYSUSERS_FILE TMPFILES_FILE
#
# 1. user and group choo (systemd-sysusers, or useradd where there is none),
#    home /var/lib/choo, member of systemd-journal; /run/choo and /var/lib/choo;
# 2. subordinate uid/gid ranges (sysusers cannot declare them): 65536 ids after
#    the highest range already handed out;
# 3. choo's podman.socket enabled in its user manager: the agent's Podman API;
# 4. native overlay storage for choo's Podman where the kernel allows it
#    (storage-driver.sh);
# 5. linger, so that user manager (and so Podman and the jobs) runs from boot
#    and survives agent restarts.
set -euo pipefail
user=choo
sysusers_file=$1 tmpfiles_file=$2
say() { printf 'choo-install: %s\n' "$*" >&2; }
systemd_running() { [ -d /run/systemd/system ]; }

if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$sysusers_file"
elif ! id "$user" >/dev/null 2>&1; then
    getent group "$user" >/dev/null || groupadd --system "$user"
    useradd --system --gid "$user" --home-dir /var/lib/choo --shell /usr/sbin/nologin \
        --comment "choo container job runner" "$user"
fi
# An account that existed before (sysusers leaves it alone) may lack the group.
if getent group systemd-journal >/dev/null && ! id -nG "$user" | grep -qw systemd-journal; then
    usermod -aG systemd-journal "$user"
fi
if command -v systemd-tmpfiles >/dev/null; then
    systemd-tmpfiles --create "$tmpfiles_file"
else
    install -d -m 0750 -o "$user" -g "$user" /var/lib/choo
fi

# One range for both files, past every range already handed out in either.
start=$(awk -F: 'BEGIN { top = 100000 } NF >= 3 && $2 + $3 > top { top = $2 + $3 } END { print top }' \
    /etc/subuid /etc/subgid 2>/dev/null || echo 100000)
for kind in uid gid; do
    touch "/etc/sub$kind"
    grep -q "^$user:" "/etc/sub$kind" && continue
    say "adding sub${kind}s $start-$((start + 65535)) for $user"
    usermod "--add-sub${kind}s" "$start-$((start + 65535))" "$user"
done

# `systemctl --user enable podman.socket` as choo, done by hand so it also works
# while choo's user manager is not running yet (or systemd is not PID 1).
unit=$(ls /usr/lib/systemd/user/podman.socket /lib/systemd/user/podman.socket 2>/dev/null | head -1)
if [ -z "$unit" ]; then
    say "podman.socket not found: install podman (apt-get install podman), then run make install again"
    exit 1
fi
home=$(getent passwd "$user" | cut -d: -f6)
wants="$home/.config/systemd/user/sockets.target.wants"
for dir in "$home/.config" "$home/.config/systemd" "$home/.config/systemd/user" "$wants"; do
    install -d -o "$user" -g "$user" "$dir"
done
ln -sfn "$unit" "$wants/podman.socket"
"$(dirname "$0")/storage-driver.sh" "$user"

if systemd_running; then
    loginctl enable-linger "$user"
else
    # What enable-linger does; logind reads it at boot.
    install -d /var/lib/systemd/linger && touch "/var/lib/systemd/linger/$user"
fi

if systemd_running; then
    systemctl daemon-reload
    uid=$(id -u "$user")
    # A user manager that was already running has not seen the new symlink.
    # (systemctl --user -M choo@ would need dbus-user-session; the manager's
    # private socket in /run/user/<uid>/systemd does not.)
    if systemctl is-active -q "user@$uid.service"; then
        runuser -u "$user" -- env XDG_RUNTIME_DIR="/run/user/$uid" \
            sh -c 'systemctl --user daemon-reload && systemctl --user start podman.socket'
    fi
fi
