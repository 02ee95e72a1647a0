#!/usr/bin/env bash
# The unit files under a real systemd (`make test-system`; root only).
#
# Boots a Debian container whose PID 1 is systemd (how, and why these podman
# flags: shared ENVIRONMENT.md), copies this working tree in, and runs
# tests/system/inside.sh there: make install, systemctl, chooctl as a member of
# group choo, journalctl, make uninstall.
#
#   run.sh          build (or reuse) the image, boot it, run the checks, remove it
#   run.sh build    only build the cached image (and the wheel cache)
#   run.sh shell    boot and install, then leave the container running: poke at it
#                   with `podman exec -it choo-systemd-test bash`; `run.sh clean` ends it
#   run.sh clean    remove the test container (the caches stay)
#
# Caches, so a second run takes seconds instead of minutes: the debootstrapped
# root is a Podman image tagged with a hash of its package list; Python wheels
# of choo's dependencies (and test tools) live in /var/cache/choo-test/wheels, keyed by
# pyproject.toml's dependency list, so `make install` inside needs no network.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=/var/cache/choo-test
# The last four build systemd-python: the container installs the wheel built
# here, but `make run` (tests/system/newcomer.sh) checks host.sh's package list.
packages=systemd,systemd-sysv,dbus,libpam-systemd,podman,containernetworking-plugins,runc,uidmap,slirp4netns,fuse-overlayfs,catatonit,python3,python3-venv,socat,busybox-static,make,procps,mandoc,jq,rsync,libsystemd-dev,pkg-config,gcc,python3-dev
image=localhost/choo-systemd:$(echo "$packages" | sha256sum | cut -c1-12)
name=choo-systemd-test
# Rootful Podman on this host warns about its cgroup v1 net_cls on every call.
pm() { podman --log-level=error "$@"; }

say() { printf '\n== %s (%ss)\n' "$*" "$SECONDS" >&2; }
die() { printf 'system test FAILED: %s\n' "$*" >&2; exit 1; }

build_image() {
    pm image exists "$image" && return 0
    command -v debootstrap >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    local mirror root
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    mkdir -p "$cache/debs"
    root=$(mktemp -d "$cache/root.XXXXXX")
    say "debootstrap bookworm from $mirror (about a minute; cached as $image)"
    debootstrap --variant=minbase --include="$packages" --cache-dir="$cache/debs" \
        bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -20 "$cache/debootstrap.log"
        rm -rf "$root"
        die "debootstrap failed (log: $cache/debootstrap.log)"
    }
    tar -C "$root" -cf - . | pm import -q - "$image" >/dev/null
    rm -rf "$root"
}

build_wheels() {
    local deps key
    deps=$(/usr/bin/python3 -c 'import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
# The test extras too: make run installs them (tests/system/newcomer.sh).
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))' \
        "$repo/pyproject.toml")
    key=$(printf '%s\nsetuptools>=64\nwheel\n' "$deps" | sha256sum | cut -c1-12)
    [ -f "$cache/wheels/.key-$key" ] && return 0
    say "building wheels of choo's dependencies into $cache/wheels"
    [ -x "$cache/pyvenv/bin/pip" ] || /usr/bin/python3 -m venv "$cache/pyvenv"
    rm -rf "$cache/wheels"
    # --use-pep517: sdnotify ships only a setup.py sdist; build it in isolation.
    printf '%s\nsetuptools>=64\nwheel\n' "$deps" |
        "$cache/pyvenv/bin/pip" wheel -q --use-pep517 -w "$cache/wheels" -r /dev/stdin \
            >"$cache/wheels.log" 2>&1 || { tail -20 "$cache/wheels.log"; die "pip wheel failed"; }
    touch "$cache/wheels/.key-$key"
}

boot() {
    pm rm -f -t 0 "$name" >/dev/null 2>&1 || true
    say "booting $image"
    pm --runtime runc run -d --name "$name" --privileged --systemd=always --cgroupns=host \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        -v "$cache/wheels:/var/cache/wheels:ro" \
        -e PIP_NO_INDEX=1 -e PIP_FIND_LINKS=/var/cache/wheels \
        "$image" /sbin/init >/dev/null
    local state="" try
    # Until systemd's bus is up, systemctl cannot even ask: it prints nothing,
    # or "offline" ("Failed to connect to bus"), at once; --wait waits only for
    # a manager it reached. A loaded machine boots slowly: a minute at most.
    for try in $(seq 600); do
        state=$(pm exec "$name" systemctl is-system-running --wait 2>/dev/null || true)
        [ -n "$state" ] && [ "$state" != offline ] && break
        sleep 0.1
    done
    [ "$state" = running ] || {
        pm exec "$name" systemctl --failed --no-pager || true
        die "systemd in the container is '$state', not 'running'"
    }
    say "copying $repo in"
    pm exec "$name" mkdir -p /usr/src/choo
    tar -C "$repo" --exclude=.venv --exclude=.git --exclude='*.egg-info' --exclude=build \
        --exclude=__pycache__ --exclude=.ruff_cache --exclude=.pytest_cache -cf - . |
        pm exec -i "$name" tar -C /usr/src/choo -xf -
}

clean() { pm rm -f -t 0 "$name" >/dev/null 2>&1 || true; }

[ "$(id -u)" -eq 0 ] || die "run as root: it boots a rootful container (sudo make test-system)"
command -v podman >/dev/null || die "podman is missing: apt-get install podman runc"
case "${1:-all}" in
build)
    build_image
    build_wheels
    ;;
shell)
    build_image
    build_wheels
    boot
    pm exec -e PIP_NO_INDEX=1 "$name" make -s -C /usr/src/choo install
    say "container $name is up: podman exec -it $name bash"
    ;;
clean) clean ;;
all)
    build_image
    build_wheels
    boot
    trap clean EXIT
    say "running tests/system/inside.sh under systemd"
    # Its last line is the summary ("N passed, N failed"): nothing may follow it.
    pm exec "$name" bash /usr/src/choo/tests/system/inside.sh /usr/src/choo
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
