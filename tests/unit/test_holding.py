"""Holding and delaying at submit, ``job.release``, and chooctl's TIME."""

from __future__ import annotations

import datetime as dt

import click
import pytest

from agent.api.holding import submit_fields
from agent.cli.workflow import parse_time
from agent.protocol.errors import InvalidParams, InvalidTransition
from agent.protocol.methods import JobRef, ListParams, SubmitParams

NOW = 1_800_000_000.0
SPEC = {"image": "busybox", "command": ["true"]}


def fields(**params):
    return submit_fields(SubmitParams(spec=SPEC, **params), NOW)


def test_hold_not_before_and_delay_become_columns():
    assert fields() == {}
    assert fields(hold=True) == {"held": True}
    assert fields(delay="10m") == {"not_before": NOW + 600}
    assert fields(not_before=NOW + 5, hold=True) == {"held": True, "not_before": NOW + 5}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hold": "yes"}, "hold: expected true or false"),
        ({"delay": "soon"}, "delay: expected seconds or a duration"),
        ({"not_before": "18:00"}, "not_before: expected a time in seconds"),
        ({"not_before": float("nan")}, "not_before: expected a time in seconds"),
        ({"not_before": NOW + 400 * 86400}, "at most 366 days ahead"),
        ({"not_before": NOW, "delay": 5}, "give one of them, not both"),
    ],
)
def test_bad_values_are_refused_naming_the_param(params, message):
    with pytest.raises(InvalidParams, match=message):
        fields(**params)


def test_a_held_job_is_released_once_with_an_event(feed_service):
    job = feed_service.submit(SubmitParams(spec=dict(SPEC), hold=True))
    assert job["held"] is True
    assert feed_service.list(ListParams())["jobs"][0]["held"] is True
    released = feed_service.release(JobRef(id=job["id"][:20]))
    assert released["held"] is False
    assert feed_service.store.events(job["id"])[-1]["kind"] == "released"
    with pytest.raises(InvalidTransition, match="not held; there is nothing to release"):
        feed_service.release(JobRef(id=job["id"]))


LOCAL = dt.datetime(2026, 12, 2, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def test_a_clock_time_is_its_next_occurrence():
    assert parse_time("18:00", LOCAL) == LOCAL.replace(hour=18, minute=0).timestamp()
    tomorrow = LOCAL.replace(hour=9, minute=15, second=5) + dt.timedelta(days=1)
    assert parse_time("09:15:05", LOCAL) == tomorrow.timestamp()


def test_an_iso_date_and_time_with_a_zone_is_that_instant():
    assert (
        parse_time("2026-12-24T18:00+00:00")
        == dt.datetime(2026, 12, 24, 18, tzinfo=dt.UTC).timestamp()
    )


@pytest.mark.parametrize("value", ["tomorrow", "25:00", "2026-13-01T00:00"])
def test_a_bad_time_is_refused(value):
    with pytest.raises(click.BadParameter, match="ISO 8601"):
        parse_time(value, LOCAL)
