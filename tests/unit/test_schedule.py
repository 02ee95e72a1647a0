"""agent.rules.schedule: cron fires, catch-up, concurrency and history rules, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.protocol.errors import InvalidParams
from agent.rules import schedule as rules


def t(text: str) -> float:
    """'2026-01-05 10:00:30' (UTC) -> seconds since the epoch."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def sched(cron="* * * * *", last="2026-01-05 10:00:00", catch_up=True, tz="UTC"):
    return {"cron": cron, "timezone": tz, "catch_up": catch_up, "last_fire": t(last)}


# -- expressions -------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["* * * * *", "*/5 9-17 * * 1-5", "0 3 * * *", "@daily"])
def test_valid_expressions(expr):
    assert rules.check_cron(expr) == expr


def test_expression_whitespace_is_normalised():
    assert rules.check_cron("  */5   * * * * ") == "*/5 * * * *"


@pytest.mark.parametrize(
    "expr", ["", "61 * * * *", "* * * *", "* * * * * *", "@sometimes", 5, None, "every minute"]
)
def test_invalid_expressions_are_refused(expr):
    with pytest.raises(InvalidParams, match="^cron: "):
        rules.check_cron(expr)


def test_next_and_previous_fire():
    assert rules.next_fire("* * * * *", t("2026-01-05 10:00:30"), "UTC") == t("2026-01-05 10:01:00")
    assert rules.next_fire("0 3 * * *", t("2026-01-05 10:00:00"), "UTC") == t("2026-01-06 03:00:00")
    assert rules.prev_fire("* * * * *", t("2026-01-05 10:00:30"), "UTC") == t("2026-01-05 10:00:00")


def test_time_zone_is_honoured():
    # 03:00 in Paris (UTC+1 in January) is 02:00 UTC.
    got = rules.next_fire("0 3 * * *", t("2026-01-05 00:00:00"), "Europe/Paris")
    assert got == t("2026-01-05 02:00:00")


def test_unknown_time_zone_is_refused():
    with pytest.raises(InvalidParams, match="timezone"):
        rules.zone("Mars/Olympus")


# -- plans -------------------------------------------------------------------------


def test_nothing_due_before_the_next_match():
    plan = rules.plan(sched(), t("2026-01-05 10:00:59"))
    assert plan.fire_at is None and not plan.missed
    assert plan.next_at == t("2026-01-05 10:01:00")
    assert plan.last_fire == t("2026-01-05 10:00:00")


def test_fires_on_time_at_the_match():
    plan = rules.plan(sched(), t("2026-01-05 10:01:00.2"))
    assert plan.fire_at == t("2026-01-05 10:01:00")
    assert not plan.catch_up
    assert plan.last_fire == t("2026-01-05 10:01:00")
    assert plan.next_at == t("2026-01-05 10:02:00")


def test_a_slightly_late_fire_is_still_on_time():
    plan = rules.plan(sched(), t("2026-01-05 10:01:00") + rules.ON_TIME_GRACE)
    assert plan.fire_at == t("2026-01-05 10:01:00") and not plan.catch_up


def test_missed_fires_collapse_into_one_catch_up_for_the_latest():
    # Down from 10:00:30 to 10:17:45: seventeen fires missed, one run.
    plan = rules.plan(sched(), t("2026-01-05 10:17:45"))
    assert plan.fire_at == t("2026-01-05 10:17:00")
    assert plan.catch_up
    assert plan.last_fire == t("2026-01-05 10:17:00")
    assert plan.next_at == t("2026-01-05 10:18:00")


def test_after_the_catch_up_nothing_more_is_due():
    first = rules.plan(sched(), t("2026-01-05 10:17:45"))
    again = rules.plan({**sched(), "last_fire": first.last_fire}, t("2026-01-05 10:17:50"))
    assert again.fire_at is None


def test_missed_fires_without_catch_up_are_skipped():
    plan = rules.plan(sched(catch_up=False), t("2026-01-05 12:00:45"))
    assert plan.fire_at is None and plan.missed
    assert plan.last_fire == t("2026-01-05 12:00:00")


def test_a_fire_exactly_at_now_is_due():
    plan = rules.plan(sched(last="2026-01-05 10:00:30"), t("2026-01-05 10:01:00"))
    assert plan.fire_at == t("2026-01-05 10:01:00") and not plan.catch_up


def test_a_daily_schedule_a_week_down_catches_up_once():
    s = sched(cron="0 3 * * *", last="2026-01-01 03:00:00")
    plan = rules.plan(s, t("2026-01-08 09:00:00"))
    assert plan.fire_at == t("2026-01-08 03:00:00") and plan.catch_up
    assert plan.next_at == t("2026-01-09 03:00:00")


# -- concurrency -------------------------------------------------------------------


def runs(*states):
    return [{"id": f"J{i}", "state": s} for i, s in enumerate(states)]


@pytest.mark.parametrize("policy", rules.POLICIES)
def test_every_policy_runs_when_nothing_is_active(policy):
    assert rules.decide(policy, runs("succeeded", "failed")) == rules.Decision(True)


def test_allow_runs_alongside():
    assert rules.decide("allow", runs("running")) == rules.Decision(True)


def test_forbid_skips_while_a_run_is_unfinished():
    for state in ("queued", "starting", "running"):
        decision = rules.decide("forbid", runs("succeeded", state))
        assert not decision.run and "J1" in decision.skip_reason


def test_replace_cancels_the_unfinished_runs():
    decision = rules.decide("replace", runs("running", "succeeded", "queued"))
    assert decision.run and decision.cancel == ("J0", "J2")


def test_history_keeps_the_newest_finished_runs():
    newest_first = runs("running", "succeeded", "failed", "cancelled", "succeeded")
    assert rules.history_excess(newest_first, 2) == ["J3", "J4"]
    assert rules.history_excess(newest_first, 0) == ["J1", "J2", "J3", "J4"]
    assert rules.history_excess(newest_first, 10) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "no spaces"),
        ("concurrency", "sometimes"),
        ("catch_up", "yes"),
        ("history_limit", -1),
        ("history_limit", True),
        ("timezone", "Nowhere/Land"),
    ],
)
def test_bad_options_name_their_field(field, value):
    options = {
        "name": "nightly",
        "concurrency": "allow",
        "catch_up": True,
        "history_limit": 10,
        "timezone": None,
        field: value,
    }
    with pytest.raises(InvalidParams, match=f"^{field}: "):
        rules.check_options(**options)


def test_a_fire_that_came_while_the_agent_was_down_is_a_catch_up_even_if_recent():
    # Every minute; the agent stopped at 10:00:10 and restarted at 10:05:20.
    plan = rules.plan(sched(), t("2026-01-05 10:05:25"), up_since=t("2026-01-05 10:05:20"))
    assert plan.fire_at == t("2026-01-05 10:05:00") and plan.catch_up


def test_a_fire_after_the_start_is_on_time():
    plan = rules.plan(sched(), t("2026-01-05 10:01:00.5"), up_since=t("2026-01-05 10:00:20"))
    assert plan.fire_at == t("2026-01-05 10:01:00") and not plan.catch_up
