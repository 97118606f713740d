"""One Dramatiq actor per stage, declared on an explicit broker.

Each actor receives ``(job_id, stage)`` and hands it to the core's stage runner with a
runtime (database, storage, search) built for the worker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import dramatiq

from pipeline.dispatch import actor_name, queue_name
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.stages import STAGE_FUNCTIONS, run_stage
from pipeline.states import Stage
from workers.broker import DramatiqDispatcher

logger = logging.getLogger(__name__)

# TODO(time-limits): scale each stage's limit to the video's duration; until then a generous
# fixed limit keeps Dramatiq's 10-minute default from killing long media work.
_TIME_LIMIT_MS = 6 * 60 * 60 * 1000


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
    return {stage: _declare(broker, holder, stage) for stage in Stage}


def _declare(broker: dramatiq.Broker, holder: RuntimeHolder, stage: Stage) -> dramatiq.Actor:
    work = STAGE_FUNCTIONS[stage]

    async def perform(job_id: str, stage_name: str) -> None:
        if stage_name != stage.value:
            logger.error("Actor %s received a message for stage %s; dropped.", actor_name(stage), stage_name)
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
