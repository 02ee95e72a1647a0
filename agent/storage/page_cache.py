"""Pages of ``job.list`` kept until the database changes: a dashboard's polling
costs a lookup, not a query.

Fifty clients asking for the same page get the same answer until something is
written. The database counts its committed write transactions
(``Database.generation``); a page is kept with the count it was read at and
served only while the count is unchanged. A page depends on the moment only
through ``since`` (an age): those are never kept. Never reads the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

#: Pages kept at most; past it the oldest reads go.
MAX_PAGES = 32
#: A longer page is not kept: at most MAX_PAGES x MAX_ROWS summaries (~3 MB) are held.
MAX_ROWS = 100


class PageCache:
    """Pages by their query's shape and values, each valid for one generation."""

    def __init__(self, max_pages: int = MAX_PAGES, max_rows: int = MAX_ROWS):
        self.max_pages = max_pages
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._pages: dict[Hashable, tuple[int, list[dict[str, Any]]]] = {}

    def get(
        self, key: Hashable, generation: int, read: Callable[[], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The page of ``key`` as of ``generation``, read only if not kept for it.

        Args:
            key: the query's filters (hashable).
            generation: the database's write count, taken *before* ``read``: a
                write committed meanwhile moves it on, so a page read before
                that commit is never served after it.
            read: runs the query.

        Returns:
            The page (shared by callers: never change it or its records).
        """
        with self._lock:
            kept = self._pages.get(key)
        if kept is not None and kept[0] == generation:
            return kept[1]
        page = read()
        if len(page) > self.max_rows:
            return page
        with self._lock:
            self._pages.pop(key, None)  # re-inserted last: the dict keeps reading order
            while len(self._pages) >= self.max_pages:
                del self._pages[next(iter(self._pages))]
            self._pages[key] = (generation, page)
        return page
