"""Building the Dramatiq broker explicitly from settings.

``memory://`` gives Dramatiq's stub broker, consumed by worker threads inside the same
process (the embedded default); ``redis://`` gives the Redis broker that separate
``vidpipe worker`` processes consume. Both carry the AsyncIO middleware the async stage
actors need.
"""

from __future__ import annotations

import logging
import uuid

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from dramatiq.middleware.asyncio import AsyncIO

from pipeline.dispatch import actor_name, queue_name
from pipeline.settings import Settings
from pipeline.states import Stage

logger = logging.getLogger(__name__)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings.broker_url``; it is not made the global default here."""
    broker: dramatiq.Broker
    if settings.broker_url == "memory://":
        broker = StubBroker()
    else:
        broker = RedisBroker(url=settings.broker_url, namespace=settings.broker_namespace)
    broker.add_middleware(AsyncIO())
    for stage in Stage:
        broker.declare_queue(queue_name(stage))
    return broker


class DramatiqDispatcher:
    """Sends stage messages by actor name, so the sender needs no actor objects."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def send(self, job_id: uuid.UUID, stage: Stage, *, delay_ms: int = 0) -> None:
        message: Message[None] = Message(
            queue_name=queue_name(stage),
            actor_name=actor_name(stage),
            args=(str(job_id), stage.value),
            kwargs={},
            options={},
        )
        self.broker.enqueue(message, delay=delay_ms or None)
        logger.debug("Sent stage %s of job %s (delay %d ms).", stage, job_id, delay_ms)


def queue_depths(broker: dramatiq.Broker) -> dict[str, dict[str, int]]:
    """Messages waiting per stage queue: ready now, and delayed (retries waiting for their time)."""
    depths: dict[str, dict[str, int]] = {}
    for stage in Stage:
        name = queue_name(stage)
        if isinstance(broker, RedisBroker):
            ready = int(broker.client.llen(f"{broker.namespace}:{name}"))
            delayed = int(broker.client.llen(f"{broker.namespace}:{name}.DQ"))
        else:
            queues = getattr(broker, "queues", {})
            ready = queues[name].qsize() if name in queues else 0
            delayed = queues[f"{name}.DQ"].qsize() if f"{name}.DQ" in queues else 0
        depths[stage.value] = {"ready": ready, "delayed": delayed}
    return depths
