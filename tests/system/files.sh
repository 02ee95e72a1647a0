# Job files across real uids, sourced by tests/system/inside.sh (its helpers:
# step, expect, ok, fail, as_alice, until_true).
#
# Issue 14's attack: alice (group choo) swaps a directory of her workspace for
# a link to a directory only the agent's user may read, and a file for a link
# to a file in it, in a tight loop, while 200 snapshots of it are taken
# (tests/system/race.py). No snapshot may hold the marker those private files
# hold. And a file in her workspace that the agent could read but she could
# not refuses her submit, naming it. Last, what a job made read-only or
# unreadable in its workspace (0555, 0000) goes when the job is removed, under
# the hardened unit. (Files chowned to a subordinate uid need podman unshare,
# which the unit's sandbox forbids: see choo-agent(8).)

files_check() {
    local marker private ws result holder sleeper id leaked=0 swapped=0
    step "snapshots raced by their submitter hold nothing she could not read"
    printf 'max_concurrent = 1\n' >/etc/choo/agent.toml
    systemctl start choo-agent.socket
    systemctl restart choo-agent
    marker="PRIVATE-MARKER-$RANDOM$RANDOM"
    private=/srv/choo-private
    mkdir -p "$private"
    printf '%s' "$marker" >"$private/loot"
    chown -R choo: "$private"
    chmod 0700 "$private"
    chmod 0600 "$private/loot"
    expect "alice cannot read the private file" sh -c "! runuser -u alice -- cat $private/loot 2>/dev/null"
    holder=$(chooctl submit --workspace "$private" "$image" true)
    # One slot, held: the raced submits stay queued, no container each.
    sleeper=$(chooctl submit "$image" sleep 600)
    ws=/srv/alice-ws
    rm -rf "$ws"
    mkdir -p "$ws/d"
    echo plain >"$ws/d/plain"
    echo file >"$ws/f"
    ln -s "$private" "$ws/d.link"
    ln -s "$private/loot" "$ws/f.link"
    head -c 524288 /dev/urandom >"$ws/big"
    chown -R alice: "$ws"
    result=$(as_alice python3 "$src/tests/system/race.py" /run/choo/agent.sock "$ws" "$image" 200) ||
        fail "the race did not run: $result"
    expect "the rename loop ran throughout" test "$(jq -r .racer <<<"$result")" = 0
    expect "some snapshots were taken" test "$(jq '.taken | length' <<<"$result")" -gt 0
    expect "every refusal says the tree changed" \
        test "$(jq '[.refused[] | select(test("changed|removed") | not)] | length' <<<"$result")" = 0
    for id in $(jq -r '.taken[]' <<<"$result"); do
        if grep -rqF -- "$marker" "/var/lib/choo/jobs/$id/workspace"; then
            leaked=$((leaked + 1))
        fi
        if [ -L "/var/lib/choo/jobs/$id/workspace/d" ] || [ -L "/var/lib/choo/jobs/$id/workspace/f" ]; then
            swapped=$((swapped + 1))
        fi
    done
    # One ID per word; a job that has already ended needs no cancel.
    # shellcheck disable=SC2046
    as_alice chooctl cancel $(jq -r '.taken[]' <<<"$result") >/dev/null 2>&1 || true
    printf '%s snapshots taken, %s refused, %s caught a link\n' \
        "$(jq '.taken | length' <<<"$result")" "$(jq '.refused | length' <<<"$result")" "$swapped"
    expect "no snapshot holds the private marker" test "$leaked" = 0
    expect "the race was real: snapshots caught the links, copied as links" test "$swapped" -gt 0

    step "a file in her workspace that only the agent may read refuses her submit"
    cp -a "$private/loot" "$ws/theirs"
    local refused
    refused=$(as_alice chooctl submit --workspace "$ws" "$image" true 2>&1 >/dev/null) && fail "accepted"
    expect "refused, naming the file and her uid" \
        grep -q "$ws/theirs may not be read by uid $(id -u alice)" <<<"$refused"
    chooctl cancel "$sleeper" >/dev/null 2>&1 || true
    chooctl wait "$holder" >/dev/null || true

    step "files a job made read-only or unreadable go with the job"
    rm -rf "$ws"
    mkdir -p "$ws"
    chown alice: "$ws"
    id=$(as_alice chooctl run -d --workspace "$ws" "$image" sh -c \
        'mkdir -p ro/sub locked && touch ro/sub/f locked/f && chmod 0 locked/f locked && chmod 0555 ro/sub ro .')
    as_alice chooctl wait "$id" >/dev/null || fail "the job that locks its files failed"
    as_alice chooctl rm "$id" >/dev/null
    expect "its directory is gone" test ! -e "/var/lib/choo/jobs/$id"
    expect "no removal failure logged" sh -c '! journalctl -u choo-agent --no-pager -o cat | grep -q "cannot remove"'

    step "files a job chowned to a subordinate uid go with the job, removed or pruned"
    local pruned scrubbed
    rm -rf "$ws"
    mkdir -p "$ws"
    chown alice: "$ws"
    # The same files in the workspace (a bind mount: the agent's to delete)
    # and in /out (Podman's volume); 1000 is a subordinate uid outside.
    local chown_job='for d in . /out; do mkdir -p $d/mine/deep && touch $d/mine/deep/f $d/mine/g &&
        chown -R 1000:1000 $d/mine && chmod 0500 $d/mine/deep $d/mine; done'
    id=$(as_alice chooctl run -d --workspace "$ws" "$image" sh -c "$chown_job")
    pruned=$(as_alice chooctl run -d --workspace "$ws" "$image" sh -c "$chown_job")
    as_alice chooctl wait "$id" >/dev/null || fail "the job that chowns its files failed"
    as_alice chooctl wait "$pruned" >/dev/null || fail "the second job that chowns its files failed"
    expect "the job's file belongs to a subordinate uid" \
        test "$(stat -c %u "/var/lib/choo/jobs/$id/workspace/mine/deep")" != "$(id -u choo)"
    expect "which the agent's user cannot delete itself" \
        sh -c "! runuser -u choo -- rm -rf /var/lib/choo/jobs/$id/workspace/mine 2>/dev/null"
    as_alice chooctl rm "$id" >/dev/null
    expect "the removed job's directory is gone" test ! -e "/var/lib/choo/jobs/$id"
    as_alice chooctl prune --older-than 0s >/dev/null
    expect "the pruned job's directory is gone" test ! -e "/var/lib/choo/jobs/$pruned"
    expect "both went through the scrub container" test "$(journalctl -u choo-agent --no-pager -o cat |
        grep -c 'through the scrub container choo-scrub-')" -ge 2
    scrubbed=$(as_choo podman ps -a --filter label=io.choo.scrub --format '{{.Names}}')
    expect "no scrub container is left" test -z "$scrubbed"
    expect "no /out volume is left" test -z "$(as_choo podman volume ls -q --filter name=choo-out-)"
    expect "still no removal failure logged" \
        sh -c '! journalctl -u choo-agent --no-pager -o cat | grep -q "cannot remove"'
    rm -rf "$ws" "$private" /etc/choo/agent.toml
    systemctl stop choo-agent.socket choo-agent
}
