"""One Dramatiq actor per stage, declared on an explicit broker.

Each actor receives ``(job_id, stage)`` and hands it to the core's stage runner with a
runtime (database, storage, search) built for the worker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.rate_limits import ConcurrentRateLimiter, RateLimiterBackend
from dramatiq.rate_limits.backends import RedisBackend as RedisRateLimiterBackend
from dramatiq.rate_limits.backends import StubBackend

from pipeline.dispatch import NOTIFICATIONS_QUEUE, NOTIFY_ACTOR, actor_name, queue_name
from pipeline.notifications import handle
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.stages import STAGE_FUNCTIONS, run_stage
from pipeline.states import Stage
from workers.broker import DramatiqDispatcher

logger = logging.getLogger(__name__)

# The stage runner enforces each stage's own limit, scaled to the video's duration; Dramatiq's
# limit is only a backstop far above it, so its 10-minute default never cuts long media work.
_TIME_LIMIT_MS = 6 * 60 * 60 * 1000
# A slot held by a worker that died frees itself after this long.
_SLOT_TTL_MS = 10 * 60 * 1000
_SLOT_RETRY_MS = 1000


class RuntimeHolder:
    """Builds the runtime once per event loop, on first use inside that loop."""

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.settings = settings
        self.dispatcher = DramatiqDispatcher(broker)
        self._runtimes: dict[int, Runtime] = {}

    def get(self) -> Runtime:
        loop = id(asyncio.get_running_loop())
        if loop not in self._runtimes:
            self._runtimes[loop] = Runtime.build(self.settings, self.dispatcher)
        return self._runtimes[loop]


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> dict[Stage, dramatiq.Actor]:
    """Declare the stage actors on ``broker`` and return them by stage."""
    holder = RuntimeHolder(settings, broker)
    limits = {Stage.THUMBNAILS: host_limiter(broker, settings, Stage.THUMBNAILS, settings.thumbnails_per_host)}
    _declare_notifications(broker, holder)
    return {stage: _declare(broker, holder, stage, limits.get(stage)) for stage in Stage}


def _declare_notifications(broker: dramatiq.Broker, holder: RuntimeHolder) -> dramatiq.Actor:
    async def perform(kind: str, ref: str) -> None:
        await handle(holder.get(), kind, ref)

    perform.__name__ = NOTIFY_ACTOR
    fn: Callable[[str, str], Awaitable[None]] = perform
    # Handlers record their outcome on their own rows; Dramatiq's retries cover passing outages.
    declare = dramatiq.actor(
        broker=broker,
        actor_name=NOTIFY_ACTOR,
        queue_name=NOTIFICATIONS_QUEUE,
        max_retries=holder.settings.max_attempts,
        min_backoff=1000,
        max_backoff=60_000,
        time_limit=5 * 60 * 1000,
    )
    return declare(fn)


def host_limiter(broker: dramatiq.Broker, settings: Settings, stage: Stage, limit: int) -> ConcurrentRateLimiter:
    """At most ``limit`` runs of ``stage`` at once on this host, across all its worker processes.

    With Redis the slots live in Redis under a key naming the host, so every process on the
    machine shares them; the in-process broker's workers share one process, so memory will do.
    """
    backend: RateLimiterBackend = (
        RedisRateLimiterBackend(client=broker.client) if isinstance(broker, RedisBroker) else StubBackend()
    )
    key = f"{settings.broker_namespace}:{stage.value}:{socket.gethostname()}"
    return ConcurrentRateLimiter(backend, key, limit=limit, ttl=_SLOT_TTL_MS)


def _declare(
    broker: dramatiq.Broker, holder: RuntimeHolder, stage: Stage, limiter: ConcurrentRateLimiter | None
) -> dramatiq.Actor:
    work = STAGE_FUNCTIONS[stage]

    async def perform(job_id: str, stage_name: str) -> None:
        if stage_name != stage.value:
            logger.error("Actor %s received a message for stage %s; dropped.", actor_name(stage), stage_name)
            return
        if limiter is None:
            await run_stage(holder.get(), uuid.UUID(job_id), stage, work)
            return
        with limiter.acquire(raise_on_failure=False) as acquired:
            if not acquired:
                # Every slot on this host is busy: hand the message back for later rather than
                # block a worker thread, and without spending one of the stage's attempts.
                logger.debug("Stage %s of job %s waits for a free slot on this host.", stage, job_id)
                holder.dispatcher.send(uuid.UUID(job_id), stage, delay_ms=_SLOT_RETRY_MS)
                return
            await run_stage(holder.get(), uuid.UUID(job_id), stage, work)

    perform.__name__ = actor_name(stage)
    fn: Callable[[str, str], Awaitable[None]] = perform
    # The stage runner owns retries of the work itself; Dramatiq's retries only cover a
    # runner that could not reach the database to record anything.
    declare = dramatiq.actor(
        broker=broker,
        actor_name=actor_name(stage),
        queue_name=queue_name(stage),
        max_retries=holder.settings.max_attempts,
        min_backoff=1000,
        max_backoff=60_000,
        time_limit=_TIME_LIMIT_MS,
    )
    return declare(fn)
