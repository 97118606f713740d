"""Work that follows the pipeline's own, sent through the broker: emails and webhook deliveries.

A notification message carries ``(kind, ref)`` and nothing else, like a stage message: ``kind``
names a handler below, ``ref`` the database row (an outbox entry, a delivery) the handler reads
and records its outcome on. The database stays the truth; the broker only delivers. A handler
that meets a passing outage raises :class:`~pipeline.errors.TransientError` or schedules its
own later attempt; one that meets a permanent problem records it on its row and returns.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pipeline.runtime import Runtime

logger = logging.getLogger(__name__)

Handler = Callable[[Runtime, str], Awaitable[None]]


def handlers() -> dict[str, Handler]:
    """The handler of each notification kind.

    Imported on first use, so a process that never sends a notification never loads them.
    """
    from pipeline.email import deliver as deliver_email
    from pipeline.webhooks import deliver as deliver_webhook

    found: dict[str, Handler] = {"email": deliver_email, "webhook": deliver_webhook}
    return found


async def handle(runtime: Runtime, kind: str, ref: str) -> None:
    """Run the handler of ``kind`` for ``ref``; an unknown kind is logged and dropped."""
    handler = handlers().get(kind)
    if handler is None:
        logger.error("A notification of unknown kind %r (ref %s) was dropped.", kind, ref)
        return
    await handler(runtime, ref)
