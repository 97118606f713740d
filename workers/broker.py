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

from pipeline.dispatch import NOTIFICATIONS_QUEUE, NOTIFY_ACTOR, actor_name, queue_name
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
    broker.declare_queue(NOTIFICATIONS_QUEUE)
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

    def notify(self, kind: str, ref: str, *, delay_ms: int = 0) -> None:
        message: Message[None] = Message(
            queue_name=NOTIFICATIONS_QUEUE, actor_name=NOTIFY_ACTOR, args=(kind, ref), kwargs={}, options={}
        )
        self.broker.enqueue(message, delay=delay_ms or None)
        logger.debug("Sent a %s notification for %s (delay %d ms).", kind, ref, delay_ms)


def queue_depths(broker: dramatiq.Broker) -> dict[str, dict[str, int]]:
    """Messages waiting per queue (each stage, and ``notifications``): ready now, and delayed."""
    depths: dict[str, dict[str, int]] = {}
    named = [(stage.value, queue_name(stage)) for stage in Stage] + [("notifications", NOTIFICATIONS_QUEUE)]
    for label, name in named:
        if isinstance(broker, RedisBroker):
            ready = int(broker.client.llen(f"{broker.namespace}:{name}"))
            delayed = int(broker.client.llen(f"{broker.namespace}:{name}.DQ"))
        else:
            queues = getattr(broker, "queues", {})
            ready = queues[name].qsize() if name in queues else 0
            delayed = queues[f"{name}.DQ"].qsize() if f"{name}.DQ" in queues else 0
        depths[label] = {"ready": ready, "delayed": delayed}
    return depths
