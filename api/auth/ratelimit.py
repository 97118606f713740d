"""A fixed-window attempt counter per client address, for the login and register routes.

The counts live in this process's memory: with several API processes each one allows the
full budget, and a restart forgets them. That is enough to slow a single guessing client.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from api.errors import RateLimited

# TODO(rate-limit): a shared counter (Redis, which the production stack already runs) would
# make the limit hold across API processes; until then it is per process, as documented above.


class RateLimiter:
    """Allows ``limit`` attempts per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, key: str) -> None:
        """Count one attempt for ``key``; raise :class:`RateLimited` when over the limit."""
        now = self._clock()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.window:
                started, count = now, 0
            count += 1
            self._windows[key] = (started, count)
            self._forget_stale(now)
        if count > self.limit:
            retry_after = max(1, math.ceil(self.window - (now - started)))
            raise RateLimited("Too many attempts; wait before trying again.", retry_after=retry_after)

    def _forget_stale(self, now: float) -> None:
        # Bounded memory under many distinct clients: drop windows that have closed.
        if len(self._windows) > 10_000:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window}
