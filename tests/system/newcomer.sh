# Sourced by inside.sh (uses its step/expect/ok/fail/until_true helpers).
#
# The README's promise to an ordinary user: a fresh account made with
# `useradd -m` (subuid ranges, no extra groups), its own copy of the tree,
# `make run`, and the README's first job with its output and exit code.

newcomer_check() {
    local user=newbie uid home run_log out code
    step "a newcomer with no extra groups: make run, then the README's first job"
    id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
    uid=$(id -u "$user")
    home=$(getent passwd "$user" | cut -d: -f6)
    expect "the newcomer is in no group but its own" test "$(id -G "$user")" = "$(id -g "$user")"
    # Logging in makes XDG_RUNTIME_DIR; lingering does the same without a login.
    loginctl enable-linger "$user"
    expect "the newcomer has a runtime directory" until_true 30 test -d "/run/user/$uid"
    rm -rf "$home/choo"
    cp -a "$src" "$home/choo"
    rm -rf "$home/choo/.venv"
    chown -R "$user:" "$home/choo"
    as_newcomer() {
        runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" USER="$user" \
            XDG_RUNTIME_DIR="/run/user/$uid" PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/cache/wheels "$@"
    }
    run_log=/tmp/newcomer-make-run.log
    as_newcomer make -C "$home/choo" run >"$run_log" 2>&1 &
    local make_pid=$!
    if ! until_true 600 test -S "/run/user/$uid/choo/agent.sock"; then
        cat "$run_log" >&2
        fail "make run did not start the agent for the newcomer"
    fi
    ok "make run started the newcomer's agent"
    set +e
    out=$(as_newcomer "$home/choo/.venv/bin/chooctl" run localhost/choo-demo sh -c 'echo hi; exit 3')
    code=$?
    set -e
    [ "$out:$code" = "hi:3" ] || { cat "$run_log" >&2; fail "the first job printed '$out' and exited $code"; }
    ok "the README's first job shows its output and exits with its code"
    if grep -Eq " WARNING | ERROR |group choo" "$run_log"; then
        cat "$run_log" >&2
        fail "make run printed a warning that does not concern the newcomer"
    fi
    ok "make run printed no warning that does not apply"
    pkill -INT -u "$user" -f choo-agent || true
    wait "$make_pid" 2>/dev/null || true
    loginctl disable-linger "$user"
}
