"""The embedded default's workers: threads in the current process consuming the stub broker."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq import Worker

logger = logging.getLogger(__name__)


def start_worker(broker: dramatiq.Broker, threads: int) -> Worker:
    """Start ``threads`` worker threads on ``broker``; call ``worker.stop()`` when done.

    A short consumer timeout keeps the hop between stages quick on an idle worker.
    """
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    logger.debug("Started %d in-process worker threads.", threads)
    return worker
