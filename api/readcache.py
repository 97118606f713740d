"""A short-lived, per-process cache of database reads that hot routes repeat.

Clients poll ``GET /jobs/{id}`` (often many tabs or tools on one job) and send the same access
token with every request; each answer would otherwise cost database round trips. A
:class:`ReadCache` keeps what it read for a fraction of a second, and concurrent misses for one
key share one read, so a burst of requests after an entry ages out costs one query, not one
per request. Job views are keyed by job and caller, so the visibility decision is cached with
the body. The process that changes a job forgets its views at once; through any other API
process a poller sees the change at most ``FRESH_SECONDS * STALE_FACTOR`` (one second) later
than the database has it, while ``?wait=`` long-polls and the event stream read the database
directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

FRESH_SECONDS = 0.25
"""How stale a cached view may be: well under any sensible poll interval."""
STALE_FACTOR = 4
"""A view up to this many times its freshness old is answered while a new one is read."""
MAX_ENTRIES = 10_000

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class ReadCache(Generic[K, T]):
    """Outcomes of reads by key, each fresh for ``fresh_seconds``."""

    def __init__(self, fresh_seconds: float = FRESH_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.fresh_seconds = fresh_seconds
        self.max_entries = max_entries
        # Each outcome is the view, or the error its caller gets (a missing job, an invalid account).
        self._entries: OrderedDict[K, tuple[float, T | Exception]] = OrderedDict()
        self._reading: dict[K, asyncio.Task[T | Exception]] = {}
        self._generation = 0
        """Bumped by :meth:`forget`, so a read that began before a change cannot store its result."""

    async def get(self, key: K, read: Callable[[], Awaitable[T]]) -> T:
        """The cached view, or ``read()``'s, shared with every caller waiting on the same key.

        A view a little past its freshness is still answered while one read replaces it in the
        background, so pollers never queue behind the database; an older one waits for the read.
        ``read`` must open its own database session: it may outlive the request that started it.

        Raises:
            Exception: what ``read()`` raised, for as long as that outcome is cached.
        """
        cached = self._entries.get(key)
        if cached is not None:
            age = time.monotonic() - cached[0]
            if age < self.fresh_seconds:
                return _unwrap(cached[1])
            if age < self.fresh_seconds * STALE_FACTOR:
                self._read_once(key, read)
                return _unwrap(cached[1])
        # Shielded: a caller that goes away does not cancel the read the others wait for.
        return _unwrap(await asyncio.shield(self._read_once(key, read)))

    def forget(self, which: Callable[[K], bool]) -> None:
        """Drop every entry whose key ``which`` accepts: this process just changed what it read."""
        self._generation += 1
        for key in [key for key in self._entries if which(key)]:
            del self._entries[key]
        for key in [key for key in self._reading if which(key)]:
            del self._reading[key]

    def _read_once(self, key: K, read: Callable[[], Awaitable[T]]) -> asyncio.Task[T | Exception]:
        task = self._reading.get(key)
        if task is None:
            task = asyncio.create_task(self._read(key, read, self._generation))
            self._reading[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: K, done: asyncio.Task[T | Exception]) -> None:
        if self._reading.get(key) is done:
            del self._reading[key]

    async def _read(self, key: K, read: Callable[[], Awaitable[T]], generation: int) -> T | Exception:
        try:
            outcome: T | Exception = await read()
        except Exception as exc:  # the caller's error: cached and raised as a view is returned
            outcome = exc
        if generation == self._generation:
            self._store(key, outcome)
        return outcome

    def _store(self, key: K, outcome: T | Exception) -> None:
        self._entries[key] = (time.monotonic(), outcome)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _unwrap(outcome: T | Exception) -> T:
    if isinstance(outcome, Exception):
        # A fresh traceback each time, so a cached error does not grow one raise after another.
        raise outcome.with_traceback(None)
    return outcome
