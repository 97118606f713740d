"""How the core asks for a stage to run, without knowing the broker.

A message carries ``(job_id, stage)`` and nothing else; the worker reads the rest from the
database. The queue and actor names are declared here, once, so the sender (the CLI, the
API, the stage runner) and the worker side (``workers/``) agree without importing each other.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from pipeline.states import Stage


def actor_name(stage: Stage) -> str:
    """The Dramatiq actor that runs ``stage``."""
    return f"vidpipe_{stage.value}"


def queue_name(stage: Stage) -> str:
    """One queue per stage, so heavy media stages and the light index stage scale apart."""
    return f"vidpipe.{stage.value}"


NOTIFICATIONS_QUEUE = "vidpipe.notifications"
"""Emails and webhook deliveries: light, and never stuck behind media work."""
NOTIFY_ACTOR = "vidpipe_notify"


class Dispatcher(Protocol):
    """Sends stage messages ``(job_id, stage)`` and notification messages ``(kind, ref)``."""

    def send(self, job_id: uuid.UUID, stage: Stage, *, delay_ms: int = 0) -> None: ...

    def notify(self, kind: str, ref: str, *, delay_ms: int = 0) -> None:
        """Send a notification message; see :mod:`pipeline.notifications`."""
        ...
