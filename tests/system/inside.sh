#!/usr/bin/env bash
# The system test's checks, run as root inside the container booted by run.sh,
# whose PID 1 is a real systemd. Each step does what an administrator or a user
# would do (make install, systemctl, chooctl as a member of group choo,
# journalctl) and checks the outcome; the first failure stops the test.
set -euo pipefail
src=${1:-/usr/src/choo}
image=localhost/choo-test

passed=0
step() { printf '\n-- %s (%ss)\n' "$*" "$SECONDS"; }
ok() {
    printf 'ok: %s\n' "$*"
    passed=$((passed + 1))
}
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    systemctl status choo-agent.socket choo-agent --no-pager >&2 || true
    journalctl -u choo-agent --no-pager -n 40 >&2 || true
    printf 'system: %d passed, 1 failed\n' "$passed"
    exit 1
}
expect() { # expect WHAT COMMAND...: the command must succeed
    local what=$1
    shift
    "$@" || fail "$what"
    ok "$what"
}
until_true() { # until_true SECONDS COMMAND...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
prop() { systemctl show -p "$1" --value choo-agent; }
as_alice() { runuser -u alice -- "$@"; }
as_choo() { runuser -u choo -- env XDG_RUNTIME_DIR="/run/user/$(id -u choo)" "$@"; }
state_of() { as_alice chooctl inspect "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"])'; }
running() { [ "$(state_of "$1")" = running ]; }
container_runs() { as_choo podman ps --format '{{.Names}}' | grep -qx "choo-$1"; }
journal_grep() { # journal_grep PATTERN JOURNALCTL-ARGS...
    local pattern=$1
    shift
    journalctl "$@" --no-pager -o cat | grep -q -- "$pattern"
}
# journald stores a line a moment after it is written (the READY line comes after READY=1).
journal_has() { until_true 10 journal_grep "$@"; }
status_has_counts() { prop StatusText | grep -Eq '^[0-9]+ running, [0-9]+ queued'; }
bob_refused() { ! runuser -u bob -- chooctl --socket /run/choo/agent.sock ps >/dev/null 2>&1; }
reads_journal() { id -nG "$1" | grep -qw systemd-journal; }
restarted_since() { [ "$(prop NRestarts)" -gt "$1" ] && systemctl is-active -q choo-agent; }

step "make install, twice (the second run must change nothing that matters)"
make -s -C "$src" install >/tmp/install.log 2>&1 || { cat /tmp/install.log; fail "make install"; }
make -s -C "$src" install >/tmp/install.log 2>&1 || { cat /tmp/install.log; fail "make install (again)"; }
expect "choo has one subuid and one subgid range" \
    test "$(grep -c '^choo:' /etc/subuid)$(grep -c '^choo:' /etc/subgid)" = 11
expect "choo lingers" test -e /var/lib/systemd/linger/choo
expect "choo reads the journal" reads_journal choo
expect "choo's user manager runs podman.socket" \
    until_true 30 as_choo systemctl --user is-active -q podman.socket
expect "units pass systemd-analyze verify" systemd-analyze verify --man=no \
    /etc/systemd/system/choo-agent.service /etc/systemd/system/choo-agent.socket
systemd-analyze security choo-agent --no-pager | tail -1
expect "exposure level is OK or better" \
    sh -c 'systemd-analyze security choo-agent --no-pager | tail -1 | grep -Eq "level for choo-agent.service: [01]\.[0-9] "'

overlay_works() {
    local dir; dir=$(runuser -u choo -- mktemp -d /var/lib/choo/.local/share/probe.XXXXXX)
    runuser -u choo -- unshare --user --map-root-user --mount sh -c \
        "cd $dir && mkdir l u w m && mount -t overlay overlay -o lowerdir=l,upperdir=u,workdir=w m"
}
driver() { as_choo podman info --format '{{.Store.GraphDriverName}}'; }
if overlay_works 2>/dev/null; then
    expect "choo's new Podman storage uses native overlay" test "$(driver)" = overlay
else
    echo "(native overlay does not work in this container: choo's storage is $(driver))"
fi

step "a test image in choo's rootless storage"
"$src/packaging/dev/host.sh" image choo "$image"

step "enable the socket; run a job as a member of group choo"
systemctl enable --now choo-agent.socket
expect "socket is 0660 choo:choo" test "$(stat -c '%a %U %G' /run/choo/agent.sock)" = "660 choo choo"
expect "/run/choo is 0750" test "$(stat -c %a /run/choo)" = 750
id alice >/dev/null 2>&1 || useradd -m -G choo alice
id bob >/dev/null 2>&1 || useradd -m bob
set +e
out=$(as_alice chooctl run "$image" sh -c 'echo hello; echo oops >&2; exit 3' 2>/dev/null)
code=$?
set -e
expect "chooctl run streams the output and exits with the job's code" \
    test "$out:$code" = "hello:3"
expect "the first client started the agent (socket activation)" test "$(prop ActiveState)" = active
expect "STATUS= shows the counts" status_has_counts
expect "a user outside group choo cannot connect" bob_refused

step "systemctl restart while a job runs: the job survives and completes"
# It runs until told to end (a file in its workspace), however slow the restart.
mkdir -p /srv/alice-restart
chown alice: /srv/alice-restart
job=$(as_alice chooctl run -d --workspace /srv/alice-restart "$image" sh -c \
    'until [ -e go ]; do sleep 0.2; done; echo survived')
expect "job running" until_true 20 running "$job"
before=$(prop MainPID)
systemctl restart choo-agent
expect "a new agent process" test "$(prop MainPID)" != "$before"
expect "the job is still running after the restart" test "$(state_of "$job")" = running
runuser -u choo -- touch "/var/lib/choo/jobs/$job/workspace/go"
rm -rf /srv/alice-restart
expect "chooctl wait: succeeded" as_alice chooctl wait "$job"
expect "chooctl logs has its output" sh -c "runuser -u alice -- chooctl logs $job | grep -qx survived"
expect "journalctl CONTAINER_NAME=choo-<ID> has its output" journal_has survived "CONTAINER_NAME=choo-$job"

step "systemctl reload re-reads /etc/choo/agent.toml"
before=$(prop MainPID)
printf 'max_concurrent = 3\n' >/etc/choo/agent.toml
systemctl reload choo-agent
expect "same process" test "$(prop MainPID)" = "$before"
expect "the journal says what changed" journal_has "changed: max_concurrent" -u choo-agent
expect "agent.info over socat shows it" sh -c "echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"agent.info\"}' |
    socat -t 10 - UNIX-CONNECT:/run/choo/agent.sock | grep -q '\"max_concurrent\": 3'"
rm /etc/choo/agent.toml
systemctl reload choo-agent

step "the watchdog: pets keep a live agent, a frozen one is restarted"
mkdir -p /etc/systemd/system/choo-agent.service.d
printf '[Service]\nWatchdogSec=2s\n' >/etc/systemd/system/choo-agent.service.d/test-watchdog.conf
systemctl daemon-reload
systemctl restart choo-agent
pid=$(prop MainPID)
restarts=$(prop NRestarts)
sleep 5
expect "no watchdog restart in 2.5 periods" test "$(prop MainPID):$(prop NRestarts)" = "$pid:$restarts"
kill -STOP "$pid"
expect "systemd restarts a frozen agent" until_true 20 restarted_since "$restarts"
expect "the journal names the watchdog" journal_has "Watchdog timeout" -u choo-agent
rm -r /etc/systemd/system/choo-agent.service.d
systemctl daemon-reload
systemctl restart choo-agent

step "the agent's own journal"
expect "ready line under _SYSTEMD_UNIT=choo-agent.service" \
    journal_has ": socket (socket activation), Podman" -u choo-agent
expect "no tracebacks" sh -c '! journalctl -u choo-agent --no-pager -o cat | grep -q Traceback'

step "systemctl stop leaves running jobs; the next start adopts them"
job=$(as_alice chooctl run -d "$image" sh -c "trap 'exit 143' TERM; while :; do sleep 0.2; done")
expect "job running" until_true 20 running "$job"
systemctl stop choo-agent.socket choo-agent
expect "agent stopped" test "$(prop ActiveState)" = inactive
expect "the agent logged its graceful stop" journal_has "stopping" -u choo-agent
expect "the job's container still runs" container_runs "$job"
systemctl start choo-agent.socket
as_alice chooctl cancel "$job" >/dev/null
expect "cancelled after the restart" test "$(as_alice chooctl wait "$job" || true)" = "$job cancelled"
systemctl stop choo-agent.socket choo-agent
expect "no container left behind" test -z "$(as_choo podman ps -a -q)"

step "a damaged database: refused with what to do, exit 65, no restart loop"
mkdir /var/lib/choo/kept
mv /var/lib/choo/choo.db* /var/lib/choo/kept/
head -c 65536 /dev/urandom >/var/lib/choo/choo.db
chown choo:choo /var/lib/choo/choo.db
since=$(date '+%Y-%m-%d %H:%M:%S')
restarts=$(prop NRestarts)
systemctl start choo-agent || true
expect "the agent failed" until_true 20 test "$(prop ActiveState)" = failed
expect "with status 65" test "$(prop ExecMainStatus)" = 65
expect "and was not restarted" test "$(prop NRestarts)" = "$restarts"
expect "the journal says what to do" journal_has "move it aside" -u choo-agent --since "$since"
rm /var/lib/choo/choo.db*
mv /var/lib/choo/kept/* /var/lib/choo/ && rmdir /var/lib/choo/kept
systemctl reset-failed choo-agent
systemctl start choo-agent.socket choo-agent
expect "the restored database serves again" until_true 30 systemctl is-active -q choo-agent
expect "its jobs are still there" test "$(as_alice chooctl wait "$job" || true)" = "$job cancelled"
systemctl stop choo-agent.socket choo-agent

step "the per-user units: alice runs an agent of her own with systemctl --user"
loginctl enable-linger alice
auid=$(id -u alice)
as_alice_user() { runuser -u alice -- env XDG_RUNTIME_DIR="/run/user/$auid" "$@"; }
expect "alice's user manager is up" until_true 30 test -S "/run/user/$auid/systemd/private"
"$src/packaging/dev/host.sh" image alice "$image"
as_alice_user systemctl --user enable --now choo-agent.socket
out=$(as_alice_user chooctl --socket "/run/user/$auid/choo/agent.sock" run "$image" echo mine)
expect "her agent runs her job" test "$out" = mine
expect "her socket is 0600 alice" \
    test "$(stat -c '%a %U' "/run/user/$auid/choo/agent.sock")" = "600 alice"
expect "her agent uses her podman.socket" as_alice_user systemctl --user is-active -q podman.socket
expect "her agent logs to the journal" journal_has ": socket (socket activation), Podman" \
    _SYSTEMD_USER_UNIT=choo-agent.service
as_alice_user systemctl --user disable --now choo-agent.socket choo-agent

. "$src/tests/system/output.sh"
output_check

. "$src/tests/system/newcomer.sh"
newcomer_check

. "$src/tests/system/files.sh"
files_check

step "make uninstall"
make -s -C "$src" uninstall >/dev/null
expect "commands and units removed" sh -c '! ls /usr/local/bin/choo-agent /usr/local/bin/chooctl /etc/systemd/system/choo-agent.service /usr/local/lib/choo 2>/dev/null'
printf '\nsystem test under systemd took %ss\n' "$SECONDS"
printf 'system: %d passed, 0 failed\n' "$passed"
