"""Setting up what a command needs: settings, database, broker, in-process workers, runtime."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import click
import dramatiq

from pipeline import logs
from pipeline.errors import ConfigurationError, VidpipeError
from pipeline.runtime import Runtime, prepare_database
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def configure_logging(verbose: bool) -> None:
    """vidpipe's one log format (``VIDPIPE_LOG_FORMAT``) on standard error, for every command."""
    logs.configure_logging(
        logs.log_format_from_env(os.environ), level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr
    )
    if not verbose:
        logging.getLogger("dramatiq").setLevel(logging.ERROR)


def load_settings() -> Settings:
    try:
        return Settings.from_env().with_secret()
    except ConfigurationError as exc:
        raise click.ClickException(exc.message) from None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn vidpipe's own errors into one clear line and exit status 1, never a traceback."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except VidpipeError as exc:
        raise click.ClickException(exc.message) from None
    except DBAPIError as exc:
        logger.debug("The database refused a statement.", exc_info=True)
        raise click.ClickException(_database_message(exc)) from None


def _database_message(exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).splitlines()[0]
    if "does not exist" in text or "no such table" in text:
        return f"The database schema is missing or out of date ({text}); run: vidpipe migrate"
    return f"The database did not accept the request: {text}. Check VIDPIPE_DATABASE_URL and that it answers."


@dataclass
class Pipeline:
    """A broker for ``settings``, with in-process worker threads when the broker is ``memory://``."""

    settings: Settings
    broker: dramatiq.Broker
    worker: dramatiq.Worker | None

    @property
    def in_process(self) -> bool:
        return self.worker is not None


@contextlib.contextmanager
def open_pipeline(settings: Settings, *, start_workers: bool = True) -> Iterator[Pipeline]:
    from workers.actors import declare_actors
    from workers.broker import build_broker
    from workers.inprocess import start_worker, stop_worker

    with user_errors():
        prepare_database(settings)
        broker = build_broker(settings)
        _check_broker(settings, broker)
    declare_actors(broker, settings)
    worker = None
    try:
        if start_workers and settings.broker_url == "memory://":
            worker = start_worker(broker, settings.worker_threads)
        yield Pipeline(settings=settings, broker=broker, worker=worker)
    finally:
        if worker is not None:
            stop_worker(worker)
        broker.close()


@contextlib.asynccontextmanager
async def open_runtime(pipeline: Pipeline) -> AsyncIterator[Runtime]:
    from workers.broker import DramatiqDispatcher

    with user_errors():
        runtime = Runtime.build(pipeline.settings, DramatiqDispatcher(pipeline.broker))
    try:
        yield runtime
    finally:
        await runtime.close()


def _check_broker(settings: Settings, broker: dramatiq.Broker) -> None:
    client = getattr(broker, "client", None)
    if client is None:
        return
    try:
        client.ping()
    except Exception as exc:
        raise ConfigurationError(
            f"The broker at VIDPIPE_BROKER_URL does not answer ({type(exc).__name__}); start Redis or fix the URL."
        ) from None
