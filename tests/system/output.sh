# Job output under a real systemd, sourced by tests/system/inside.sh (its
# helpers: step, expect, fail, until_true, prop, as_alice, restarted_since).
#
# Part 1, the journal: with journald's default rate limits, every line of a
# 50,000-line burst, of a million lines and of a job running while the agent is
# SIGKILLed is in the journal exactly once, in order, as the agent's (_UID=choo)
# entries under CONTAINER_NAME=choo-<ID>.
# Part 2, the log files: chooctl logs gives back the same bytes.

choo_uid=$(id -u choo)
journal() { journalctl --no-pager -q "CONTAINER_NAME=choo-$1" "_UID=$choo_uid" "${@:2}"; }
# The agent's copy of a job's output put back together: a partial entry (conmon
# splits a read that came mid-line) is joined to the next.
journal_lines() {
    journal "$1" -o json --all |
        jq -j '.MESSAGE + (if .CONTAINER_PARTIAL_MESSAGE == "true" then "" else "\n" end)'
}
journal_matches() { journal_lines "$1" | cmp -s - <(seq 1 "$2"); }
journal_has_some() { [ -n "$(journal "$1" -o cat -n 1)" ]; }
# Where the last record of a job's (only) attempt log begins: the journal's
# newest entry of the job carries it once everything is shipped.
last_record() {
    local log=/var/lib/choo/logs/$1/1.log
    echo $(($(stat -c %s "$log") - $(tail -n 1 "$log" | wc -c)))
}
# A job that has ended and whose last record reached the journal.
shipped() {
    [ "$(state_of "$1")" = succeeded ] &&
        [ "$(journal "$1" -o json -n 1 | jq -r .CHOO_OFFSET)" = "$(last_record "$1")" ]
}
logs_match() { as_alice chooctl logs "$1" | cmp -s - <(seq 1 "$2"); }

output_check() {
    step "job output: every line exactly once in the journal, under journald's default limits"
    systemctl start choo-agent.socket
    expect "the unit lifts journald's rate limit" \
        test "$(prop LogRateLimitIntervalUSec):$(prop LogRateLimitBurst)" = 1s:50000000
    burst=$(as_alice chooctl run -d "$image" seq 1 50000)
    expect "a 50,000-line burst: every line shipped" until_true 120 shipped "$burst"
    expect "a 50,000-line burst: each line once, in order" journal_matches "$burst" 50000

    million=$(as_alice chooctl run -d "$image" seq 1 1000000)
    expect "a million lines: every line shipped" until_true 600 shipped "$million"
    expect "a million lines: each line once, in order" journal_matches "$million" 1000000
    expect "journalctl CONTAINER_NAME= without _UID finds them too" \
        test "$(journalctl --no-pager -q -o cat "CONTAINER_NAME=choo-$million" | wc -l)" = \
        "$(journal "$million" -o cat | wc -l)"

    step "SIGKILL the agent while a chatty job runs: every line once in the journal"
    expect "the unit restarts a killed agent" test "$(prop Restart)" = on-failure
    chatty=$(as_alice chooctl run -d "$image" sh -c 'seq 1 60000; sleep 2; seq 60001 120000')
    expect "the chatty job's output is being shipped" until_true 60 journal_has_some "$chatty"
    restarts=$(prop NRestarts)
    systemctl kill -s KILL choo-agent
    expect "systemd restarted the killed agent" until_true 60 restarted_since "$restarts"
    expect "after the restart every line is shipped" until_true 300 shipped "$chatty"
    expect "no line shipped twice, none lost" journal_matches "$chatty" 120000

    step "forged entries: another user's CHOO_OFFSET moves nothing"
    forged=$(as_alice chooctl run -d "$image" sh -c 'seq 1 1000; sleep 3; seq 1001 2000')
    expect "the job's first lines are shipped" until_true 60 journal_has_some "$forged"
    runuser -u bob -- python3 -c 'import socket, sys
job = sys.argv[1]
fields = [f"MESSAGE=forged", f"CONTAINER_NAME=choo-{job}", f"CHOO_JOB_ID={job}",
          "CHOO_ATTEMPT=1", "CHOO_OFFSET=999999999999"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto("\n".join(fields).encode() + b"\n", "/run/systemd/journal/socket")' "$forged"
    restarts=$(prop NRestarts)
    systemctl kill -s KILL choo-agent
    expect "systemd restarted the agent again" until_true 60 restarted_since "$restarts"
    expect "every line shipped despite the forged entry" until_true 120 shipped "$forged"
    expect "the agent's entries are still each line once" journal_matches "$forged" 2000
    expect "the forged entry is bob's, not the agent's" \
        test "$(journalctl --no-pager -q -o cat "CONTAINER_NAME=choo-$forged" "_UID=$(id -u bob)")" = forged

    # -- part 2 needs the read side (job output from the attempts' log files) --
    step "chooctl logs gives back the same bytes, from the log files"
    expect "chooctl logs: the burst" logs_match "$burst" 50000
    expect "chooctl logs: a million lines" logs_match "$million" 1000000
    expect "chooctl logs: the job that outlived a SIGKILL" logs_match "$chatty" 120000
    systemctl stop choo-agent.socket choo-agent
}
