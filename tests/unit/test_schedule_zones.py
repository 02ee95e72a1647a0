"""agent.rules.schedule time zones: zoneinfo names, the local zone, daylight saving.

The expected fires across the clock changes are what the rules gave when
they read zones through dateutil; zoneinfo must give the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.protocol.errors import InvalidParams
from agent.rules import schedule as rules


def t(text: str) -> float:
    """'2026-01-05 10:00:30' (UTC) -> seconds since the epoch."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_summer_time_moves_the_fire_in_utc():
    # 03:00 in Paris: 02:00 UTC in winter, 01:00 UTC in summer.
    assert rules.next_fire("0 3 * * *", t("2026-01-05 00:00:00"), "Europe/Paris") == t(
        "2026-01-05 02:00:00"
    )
    assert rules.next_fire("0 3 * * *", t("2026-07-01 00:00:00"), "Europe/Paris") == t(
        "2026-07-01 01:00:00"
    )


def test_a_time_the_spring_change_skips_fires_when_the_clock_resumes():
    # 2026-03-29 in Paris goes from 02:00 straight to 03:00 (01:00 UTC).
    first = rules.next_fire("30 2 * * *", t("2026-03-28 12:00:00"), "Europe/Paris")
    assert first == t("2026-03-29 01:00:00")
    assert rules.next_fire("30 2 * * *", first, "Europe/Paris") == t("2026-03-30 00:30:00")


def test_a_time_the_autumn_change_repeats_fires_twice():
    # 2026-10-25 in Paris goes from 03:00 back to 02:00: 02:30 happens twice.
    first = rules.next_fire("30 2 * * *", t("2026-10-24 12:00:00"), "Europe/Paris")
    assert first == t("2026-10-25 00:30:00")
    assert rules.next_fire("30 2 * * *", first, "Europe/Paris") == t("2026-10-25 01:30:00")


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "Europe", "../etc/passwd", "/etc/localtime", "", "utc", 3]
)
def test_names_outside_the_zone_database_are_refused(name):
    with pytest.raises(InvalidParams, match="^timezone: "):
        rules.zone(name)


def test_the_local_zone_follows_tz_with_its_daylight_saving(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Paris")
    assert rules.next_fire("0 3 * * *", t("2026-01-05 00:00:00")) == t("2026-01-05 02:00:00")
    assert rules.next_fire("0 3 * * *", t("2026-07-01 00:00:00")) == t("2026-07-01 01:00:00")


def test_tz_may_name_a_zone_file(monkeypatch):
    path = Path("/usr/share/zoneinfo/America/New_York")
    if not path.is_file():
        pytest.skip("no system zone database")
    monkeypatch.setenv("TZ", f":{path}")
    # 03:00 in New York in January is 08:00 UTC.
    assert rules.next_fire("0 3 * * *", t("2026-01-05 00:00:00")) == t("2026-01-05 08:00:00")


@pytest.mark.parametrize(
    ("rule", "winter", "summer"),
    [
        ("EST+5", "2026-01-05 08:00:00", "2026-07-01 08:00:00"),  # POSIX: hours west
        ("JST-9", "2026-01-04 18:00:00", "2026-06-30 18:00:00"),
        ("EST5EDT,M3.2.0,M11.1.0", "2026-01-05 08:00:00", "2026-07-01 07:00:00"),
    ],
)
def test_tz_may_be_a_posix_rule_as_for_the_c_library(monkeypatch, rule, winter, summer):
    monkeypatch.setenv("TZ", rule)
    assert rules.next_fire("0 3 * * *", t("2026-01-04 12:00:00")) == t(winter)
    assert rules.next_fire("0 3 * * *", t("2026-06-30 12:00:00")) == t(summer)


@pytest.mark.parametrize("value", ["", "Nowhere/Land", ":/nonexistent/zone", "ABC", "FOO+25"])
def test_a_tz_that_names_no_zone_is_utc_as_for_the_c_library(monkeypatch, value):
    monkeypatch.setenv("TZ", value)
    assert rules.local_zone() is UTC


def test_without_tz_the_local_zone_is_etc_localtime(monkeypatch):
    path = Path("/usr/share/zoneinfo/Europe/Paris")
    if not path.is_file():
        pytest.skip("no system zone database")
    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setattr(rules, "LOCALTIME", str(path))
    assert rules.next_fire("0 3 * * *", t("2026-07-01 00:00:00")) == t("2026-07-01 01:00:00")
    monkeypatch.setattr(rules, "LOCALTIME", "/nonexistent/localtime")
    assert rules.local_zone() is UTC
