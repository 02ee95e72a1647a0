#!/usr/bin/env bash
# Gives a rootless Podman account native overlay storage when it can have it.
# Run as root by `make install` (setup-account.sh), `make run` and `make test`
# (packaging/dev/host.sh user). Idempotent.
#
#   storage-driver.sh USER
#
# Rootless Podman falls back to vfs on hosts like this one, which copies the
# whole image for every container (slower starts, more disk). Native overlay
# works for an unprivileged user on recent kernels (5.13+), but a storage that
# already exists cannot change driver without `podman system reset` (which
# deletes its images and containers). So: an account whose storage is new, and
# whose storage.conf names no driver, gets `driver = "overlay"` if an overlay
# mount works in a user namespace of its own; any other account is left as
# it is, and what it uses is said.
set -euo pipefail
user=$1
say() { printf 'choo-setup: %s\n' "$*" >&2; }
home=$(getent passwd "$user" | cut -d: -f6)
conf="$home/.config/containers/storage.conf"
graph="$home/.local/share/containers/storage"

if [ -e "$conf" ] && grep -q '^[[:space:]]*driver[[:space:]]*=' "$conf"; then
    exit 0  # chosen already (by us, or by hand)
fi
if [ -d "$graph" ] && [ -n "$(ls -A "$graph" 2>/dev/null)" ]; then
    driver=$(ls "$graph" | grep -E '^(overlay|vfs|btrfs|zfs)$' | head -1 || true)
    if [ "${driver:-}" = vfs ]; then
        say "$user's Podman storage exists and uses vfs (every container copies its image);" \
            "native overlay needs a new storage: as $user, 'podman system reset', then run this again"
    fi
    exit 0
fi
# Can this user mount an overlay in a user namespace of its own?
probe=$(runuser -u "$user" -- mktemp -d)
trap 'rm -rf "$probe"' EXIT
if runuser -u "$user" -- unshare --user --map-root-user --mount sh -c \
    "cd '$probe' && mkdir l u w m && mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m" \
    2>/dev/null; then
    install -d -o "$user" -g "$(id -gn "$user")" "$home/.config" "$home/.config/containers"
    printf '# Written by choo (packaging/systemd/storage-driver.sh): native overlay works here.\n[storage]\ndriver = "overlay"\n' >"$conf"
    chown "$user:$(id -gn "$user")" "$conf"
    say "$user's Podman storage: native overlay"
else
    say "$user's Podman storage: native overlay does not work on this kernel; Podman chooses (vfs is slow)"
fi
