"""Job IDs as ranges of the primary key: what makes an ID prefix and ``since`` index lookups.

Job IDs are ULIDs: 26 characters of Crockford's base32, the first ten a
millisecond timestamp, so they sort by time. An ID prefix stands for the
range of IDs it starts, and a time for the smallest ID of its millisecond.
Pure string arithmetic: never reads the database.
"""

from __future__ import annotations

from ulid import ULID

#: Characters in a job ID (a ULID in Crockford's base32, upper case).
ID_LENGTH = 26
#: The greatest character of that alphabet: pads a prefix to the last ID it covers.
_LAST_CHAR = "Z"


def first_id_at(seconds: float) -> str:
    """The smallest ULID of the millisecond ``seconds`` falls in (none is earlier).

    Args:
        seconds: a time since the epoch; before the epoch counts as the epoch.

    Returns:
        A 26-character ID: that millisecond, then all-zero randomness.
    """
    millis = max(0, int(seconds * 1000))
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + bytes(10)))


def prefix_range(prefix: str) -> tuple[str, str]:
    """The first and last ID an upper-case ID prefix can stand for (both included).

    Args:
        prefix: 1 to 26 characters of an ID, upper case.
    """
    return prefix, prefix + _LAST_CHAR * (ID_LENGTH - len(prefix))
