"""The output cap of one attempt (``max_log_bytes``): which records are kept (pure).

A job's ``max_log_bytes`` bounds the bytes of output each of its attempts
keeps: the data bytes of its log's records (a full line's newline counted,
the file's own record headers not). Whole records are kept or dropped: the
first record that would take the attempt past the cap is its *cut*, and it
and every record after it are dropped. The shipper (which ships nothing at or
past the cut and truncates the file there) and the ``job.logs`` reader (which
never returns a record past it, even before the shipper truncated the file)
both ask ``Budget.admit``, so they always agree on where the cut is.

Plain data in, a decision out: never does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    """How much of its cap one attempt's output has used, fed its records in order.

    Attributes:
        cap: the most bytes of output kept (0: no cap).
        kept: the data bytes of the records counted so far, all kept.
        end: where the next record to count begins (the end of the last one counted).
        cut: where the first dropped record begins, once one was (None: none yet).
    """

    cap: int
    kept: int = 0
    end: int = 0
    cut: int | None = None

    def admit(self, offset: int, end: int, size: int) -> bool:
        """Whether the record at ``offset`` (ending at ``end``, ``size`` bytes of
        output) is kept.

        Records must come in file order from the start; one already counted
        (before ``self.end``) may be asked about again and is kept.
        """
        if self.cut is not None:
            return offset < self.cut
        if offset < self.end:
            return True
        if self.cap and self.kept + size > self.cap:
            self.cut = offset
            return False
        self.kept += size
        self.end = end
        return True
