"""agent.adapters.podman.containers.timestamp: Podman's times as seconds since the epoch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.adapters.podman.containers import timestamp

BASE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", BASE),
        ("2024-01-02T03:04:05.5Z", BASE + 0.5),
        ("2024-01-02T03:04:05.123456Z", BASE + 0.123456),
        # Podman writes nanoseconds; microseconds are kept.
        ("2024-01-02T03:04:05.123456789Z", BASE + 0.123456),
        ("2024-01-02T05:04:05.123456789+02:00", BASE + 0.123456),
        ("2024-01-01T20:04:05-07:00", BASE),
        # No zone: UTC, not the host's.
        ("2024-01-02T03:04:05", BASE),
    ],
)
def test_rfc3339_strings(text, expected):
    assert timestamp(text) == pytest.approx(expected, abs=1e-6)


def test_numbers_are_seconds_already():
    assert timestamp(1704164645) == 1704164645.0
    assert timestamp(1.5) == 1.5


@pytest.mark.parametrize("value", [None, "", "yesterday", "2024-13-02T03:04:05Z", [], {}])
def test_anything_else_is_none(value):
    assert timestamp(value) is None
