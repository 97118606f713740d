"""Attempt limits for the public account routes: per client address, and per account for passwords.

Per client: a fixed window of ``limit`` attempts per ``window`` seconds for each key (an action
and an address). With a Redis broker the counters live in Redis under the broker namespace, so
every API process draws on one budget; with the embedded default (one process) they live in
memory. When Redis stops answering, each process falls back to its own memory counters rather
than refusing every login, and says so in the log.

Per account: password logins of an account are locked for :data:`ACCOUNT_LOCKOUT` once its
last :data:`ACCOUNT_FAILURES` attempts within :data:`ACCOUNT_WINDOW` all failed. The attempts
are the login events the database already records, so the lock holds across processes on
every backend, and a successful login ends it by being the newest event.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
import redis.asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import RateLimited
from pipeline.accounts import LoginEvent
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

ACCOUNT_FAILURES = 10
ACCOUNT_WINDOW = timedelta(minutes=15)
ACCOUNT_LOCKOUT = timedelta(minutes=5)
"""How long password logins stay locked after the failure that completed the run."""

# A login waits at most this long for Redis before counting in memory instead.
_REDIS_TIMEOUT_SECONDS = 0.5


class RateLimiter(ABC):
    """Allows ``limit`` attempts per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window

    async def hit(self, key: str) -> None:
        """Count one attempt for ``key``; raise :class:`RateLimited` when over the limit."""
        count, remaining = await self._count(key)
        if count > self.limit:
            raise RateLimited("Too many attempts; wait before trying again.", retry_after=max(1, math.ceil(remaining)))

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the limiter is not used afterwards."""

    @abstractmethod
    async def _count(self, key: str) -> tuple[int, float]:
        """Count one attempt; return the attempts in the current window and the seconds it has left."""


class MemoryRateLimiter(RateLimiter):
    """Counts in this process's memory: the embedded default, and the fallback when Redis is away."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(limit, window)
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    async def _count(self, key: str) -> tuple[int, float]:
        now = self._clock()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.window:
                started, count = now, 0
            count += 1
            self._windows[key] = (started, count)
            self._forget_stale(now)
        return count, self.window - (now - started)

    async def close(self) -> None:
        """Nothing to release."""

    def _forget_stale(self, now: float) -> None:
        # Bounded memory under many distinct clients: drop windows that have closed.
        if len(self._windows) > 10_000:
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window}


class RedisRateLimiter(RateLimiter):
    """Counts in Redis, shared by every API process that uses the same Redis and namespace."""

    def __init__(self, client: redis.asyncio.Redis, namespace: str, limit: int, window: float) -> None:
        super().__init__(limit, window)
        self._client = client
        self._namespace = namespace
        self._fallback = MemoryRateLimiter(limit, window)
        self._degraded = False

    async def _count(self, key: str) -> tuple[int, float]:
        name = f"{self._namespace}:ratelimit:{key}"
        window_ms = max(1, int(self.window * 1000))
        try:
            # One transaction: start the window if there is none, count, and read what is left of it.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(name, 0, px=window_ms, nx=True)
                pipe.incr(name)
                pipe.pttl(name)
                _created, count, left_ms = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            if not self._degraded:
                logger.warning("Rate limits count per process for now: Redis did not answer (%s).", type(exc).__name__)
                self._degraded = True
            return await self._fallback._count(key)
        if self._degraded:
            logger.info("Rate limits are shared through Redis again.")
            self._degraded = False
        return int(count), (left_ms if left_ms > 0 else window_ms) / 1000

    async def close(self) -> None:
        await self._client.aclose()


def open_rate_limiter(settings: Settings, limit: int, window: float) -> RateLimiter:
    """A limiter shared through Redis when the broker is Redis, else one in memory."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # The asyncio client: a login waits for Redis without holding up the other requests.
        client = redis.asyncio.Redis.from_url(
            settings.broker_url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        )
        return RedisRateLimiter(client, settings.broker_namespace, limit, window)
    return MemoryRateLimiter(limit, window)


async def refuse_locked_account(session: AsyncSession, user_id: uuid.UUID, now: datetime | None = None) -> None:
    """Raise :class:`RateLimited` (``auth.account_locked``) while the account's password logins are locked.

    Called before the password is checked, so a locked account reveals nothing about guesses made
    during the lock, and those guesses are neither verified nor recorded.
    """
    now = now or datetime.now(UTC)
    recent = (
        await session.execute(
            select(LoginEvent.occurred_at, LoginEvent.success)
            .where(LoginEvent.user_id == user_id, LoginEvent.occurred_at > now - ACCOUNT_WINDOW)
            .order_by(LoginEvent.occurred_at.desc())
            .limit(ACCOUNT_FAILURES)
        )
    ).all()
    if len(recent) < ACCOUNT_FAILURES or any(success for _at, success in recent):
        return
    locked_until = recent[0].occurred_at + ACCOUNT_LOCKOUT
    if locked_until <= now:
        return
    logger.info("Refused a password login for user %s: locked after %d failures.", user_id, ACCOUNT_FAILURES)
    raise RateLimited(
        "Too many failed logins for this account; wait before trying again.",
        retry_after=max(1, math.ceil((locked_until - now).total_seconds())),
        code="auth.account_locked",
    )
