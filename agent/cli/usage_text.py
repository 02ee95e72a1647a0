"""How chooctl writes resource figures: sizes, CPU time, a job's usage column.

Formatting only; the figures come from the agent (``agent.protocol.types.Usage``).
"""

from __future__ import annotations

from typing import Any

_UNITS = ("B", "K", "M", "G", "T")


def size(value: int | None) -> str:
    """``64M``, ``1.5G``, ``512B`` (``-`` when unknown)."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in _UNITS:
        if amount < 1024 or unit == _UNITS[-1]:
            break
        amount /= 1024
    if unit == "B":
        return f"{int(amount)}B"
    return f"{amount:.1f}{unit}" if amount < 10 else f"{amount:.0f}{unit}"


def cpu_time(seconds: float | None) -> str:
    """``2.1s``, ``4m05s``, ``3h02m`` (``-`` when unknown)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def usage_column(job: dict[str, Any]) -> str:
    """The compact ``USAGE`` of a listing: CPU time and peak memory of the job's
    latest attempt, ``2.0s/64M`` (``-`` before it ended or when not recorded)."""
    usage = job.get("usage") or {}
    if usage.get("cpu_seconds") is None and usage.get("memory_peak") is None:
        return "-"
    return f"{cpu_time(usage.get('cpu_seconds'))}/{size(usage.get('memory_peak'))}"
