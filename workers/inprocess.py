"""The embedded default's workers: threads in the current process consuming the stub broker."""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq import Worker

from pipeline.errors import ConfigurationError

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_running: Worker | None = None
"""The one in-process worker this process runs, if any."""


def start_worker(broker: dramatiq.Broker, threads: int) -> Worker:
    """Start ``threads`` worker threads on ``broker``; stop them with :func:`stop_worker`.

    A short consumer timeout keeps the hop between stages quick on an idle worker.

    Raises:
        ConfigurationError: this process already runs in-process workers. Dramatiq keeps one
            event loop thread per process for async actors, so a second worker would take the
            first one's loop over, and whichever stopped first would strand the other's thread
            (which then keeps the process from exiting).
    """
    global _running
    with _lock:
        if _running is not None:
            raise ConfigurationError(
                "This process already runs the in-process workers of another pipeline; close it first, "
                "or open this one without workers (start_workers=False) to share the running ones.",
                code="config.inprocess_workers",
            )
        worker = Worker(broker, worker_threads=threads, worker_timeout=100)
        worker.start()
        _running = worker
    logger.debug("Started %d in-process worker threads.", threads)
    return worker


def stop_worker(worker: Worker) -> None:
    """Stop ``worker`` and its event loop thread, so another pipeline may start workers."""
    global _running
    with _lock:
        try:
            worker.stop()
        finally:
            if _running is worker:
                _running = None
