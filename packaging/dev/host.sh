#!/usr/bin/env bash
# Brings a fresh Debian 12 host to the state choo's `make run` and `make test`
# need, idempotently. Every step is safe to repeat; steps that need root are
# skipped (with a hint) when run as an ordinary user.
#
#   host.sh packages          Debian packages (root only)
#   host.sh journald          a standalone journald when PID 1 is not systemd (root only)
#   host.sh user NAME         an unprivileged user with subuids and a runtime dir (root only)
#   host.sh venv DIR          a virtualenv at DIR/.venv from /usr/bin/python3 with choo installed
#   host.sh image USER REF    a busybox image REF in USER's rootless storage
#   host.sh tree USER         print a copy of this tree that USER can read (or this tree)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
packages=(podman runc uidmap slirp4netns fuse-overlayfs catatonit busybox-static
          socat python3-venv systemd mandoc jq rsync
          # systemd-python (a dependency) is built from source against these.
          libsystemd-dev pkg-config gcc python3-dev)

is_root() { [ "$(id -u)" -eq 0 ]; }
say() { printf 'choo-setup: %s\n' "$*" >&2; }

cmd_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! is_root; then
        say "missing Debian packages: ${missing[*]}; run 'sudo apt-get install ${missing[*]}'"
        exit 1
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cmd_journald() {
    if [ "$(cat /proc/1/comm)" = systemd ]; then return 0; fi
    # Persistent storage, as Debian's own journald has it: journald then keeps
    # each ordinary user's entries in a file of its own (SplitMode=uid) that
    # the user may read, so an ordinary user who runs the agent can read its
    # jobs' journal copy without group systemd-journal. Volatile storage has a
    # single file, root's.
    if is_root && [ ! -d /var/log/journal ]; then
        mkdir -p /var/log/journal
        systemd-tmpfiles --create --prefix /var/log/journal >/dev/null 2>&1 || true
    fi
    if [ ! -S /run/systemd/journal/socket ] || ! pgrep -x systemd-journal >/dev/null; then
        is_root || { say "no journald runs here; start /lib/systemd/systemd-journald as root"; exit 1; }
        say "starting a standalone systemd-journald"
        mkdir -p /run/systemd/journal
        setsid /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
        for _ in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
    elif is_root && ls /run/log/journal/*/system.journal >/dev/null 2>&1; then
        # Started earlier on volatile storage: move it to /var/log/journal.
        journalctl --flush 2>/dev/null || true
    fi
    # A standalone journald leaves its files root:root 0640; members of
    # systemd-journal (the agent's user) must be able to read job output back.
    if is_root; then
        for dir in /run/log/journal /var/log/journal; do
            [ -d "$dir" ] || continue
            chgrp -R systemd-journal "$dir"
            chmod -R g+rX "$dir"
            find "$dir" -type d -exec chmod g+s {} +
        done
    fi
}

cmd_user() {
    local name=$1
    is_root || { say "creating user $name needs root"; exit 1; }
    getent group choo >/dev/null || groupadd --system choo
    if ! id "$name" >/dev/null 2>&1; then
        say "creating user $name"
        # A group of the same name may exist already (group choo, created for
        # the socket): then it becomes the user's primary group.
        if getent group "$name" >/dev/null; then
            useradd -m -s /bin/bash -g "$name" "$name"
        else
            useradd -m -s /bin/bash "$name"
        fi
    fi
    usermod -aG systemd-journal,choo "$name"
    grep -q "^$name:" /etc/subuid || usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "$name"
    local uid; uid=$(id -u "$name")
    install -d -m 0700 -o "$name" -g "$name" "/run/user/$uid"
    "$here/packaging/systemd/storage-driver.sh" "$name"
    # slirp4netns needs /dev/net/tun for rootless networking; some hosts ship it 0600.
    [ -c /dev/net/tun ] && chmod 0666 /dev/net/tun || true
}

cmd_venv() {
    local dir=$1
    if [ ! -x "$dir/.venv/bin/python" ]; then
        say "creating $dir/.venv"
        /usr/bin/python3 -m venv "$dir/.venv"
        "$dir/.venv/bin/pip" install -q --upgrade pip >/dev/null
    fi
    local stamp="$dir/.venv/.choo-installed"
    if [ ! -f "$stamp" ] || [ "$dir/pyproject.toml" -nt "$stamp" ]; then
        say "installing choo and its test tools into $dir/.venv"
        "$dir/.venv/bin/pip" install -q --config-settings editable_mode=compat -e "$dir[test]"
        touch "$stamp"
    fi
}

# Runs a command as USER with a working rootless-podman environment.
as_user() {
    local user=$1; shift
    if [ "$(id -un)" = "$user" ]; then "$@"; return; fi
    local uid; uid=$(id -u "$user")
    (cd / && runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$(getent passwd "$user" | cut -d: -f6)" \
        USER="$user" XDG_RUNTIME_DIR="/run/user/$uid" "$@")
}

cmd_image() {
    local user=$1 ref=$2
    if as_user "$user" podman image exists "$ref"; then return 0; fi
    say "building $ref for $user from busybox-static"
    local root; root=$(mktemp -d)
    mkdir -p "$root/bin" "$root/tmp" "$root/out" "$root/etc"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
    echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >> "$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"
    chmod 1777 "$root/tmp"
    local tarball; tarball=$(mktemp --suffix=.tar)
    tar -C "$root" -cf "$tarball" .
    chmod 0644 "$tarball"
    as_user "$user" podman import -q --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$tarball" "$ref" >/dev/null
    rm -rf "$root" "$tarball"
}

cmd_tree() {
    local user=$1
    if [ "$(id -un)" = "$user" ] || runuser -u "$user" -- test -r "$here/pyproject.toml" 2>/dev/null; then
        echo "$here"; return
    fi
    # The checkout is not readable by USER (e.g. it lives under /root): give
    # USER a world-readable copy, kept in step with rsync.
    # One copy per checkout and user, so two checkouts never share (or clobber) one.
    local copy; copy=/var/tmp/choo-tree-$user-$(printf '%s' "$here" | sha1sum | cut -c1-12)
    mkdir -p "$copy"
    rsync -a --delete --exclude=.venv --exclude=.git --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=.pytest_cache "$here/" "$copy/"
    chmod -R a+rX "$copy"
    echo "$copy"
}

case "${1:-}" in
    packages) cmd_packages ;;
    journald) cmd_journald ;;
    user) cmd_user "$2" ;;
    venv) cmd_venv "$2" ;;
    image) cmd_image "$2" "$3" ;;
    tree) cmd_tree "$2" ;;
    as-user) shift; as_user "$@" ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
esac
