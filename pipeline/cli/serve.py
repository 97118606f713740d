"""``vidpipe api``: serve the HTTP API with uvicorn.

On the embedded default (``memory://`` broker) the same process also runs the stage workers
and the scheduler, so one command serves a complete system on a laptop.

Uvicorn logs through vidpipe's own handler (``VIDPIPE_LOG_FORMAT``) in every API process, and
its access log is off: the API writes one line per request itself, with the request's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import click
from litestar import Litestar

from pipeline import logs
from pipeline.cli.app import load_settings, open_pipeline
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="API processes sharing the port (needs a Redis broker; the embedded default serves from one).",
)
def api(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app, freeze_after_start_up
    from workers.broker import DramatiqDispatcher, queue_depths

    logging.getLogger("pipeline").setLevel(logging.INFO)
    logging.getLogger("api").setLevel(logging.INFO)
    settings = load_settings()
    if workers > 1:
        if settings.broker_url == "memory://":
            raise click.ClickException(
                "--workers above 1 needs VIDPIPE_BROKER_URL=redis://…: on the embedded default each API "
                "process would run its own stage workers and scheduler over one SQLite file."
            )
        # Each process builds its own app (and broker connection) from the same environment.
        with _metrics_shared_between_processes():
            uvicorn.run(
                "api.factory:app_from_environment",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                **_uvicorn_options(settings),
            )
        return
    with open_pipeline(settings) as pipeline:
        app = create_app(
            settings, DramatiqDispatcher(pipeline.broker), queue_depths=lambda: queue_depths(pipeline.broker)
        )
        freeze_after_start_up(app)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on", **_uvicorn_options(settings)))

        async def serve() -> None:
            if not pipeline.in_process:
                await server.serve()
                return
            # The embedded default: the scheduler's periodic work runs beside the server.
            stop = asyncio.Event()
            periodic = asyncio.create_task(_scheduler(app, stop))
            try:
                await server.serve()
            finally:
                stop.set()
                await periodic

        # The loop uvicorn would pick for itself (uvloop where installed): serving through our
        # own coroutine must not fall back to the pure-Python loop, which costs a third of the
        # throughput of the polled routes.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(serve())


async def _scheduler(app: Litestar, stop: asyncio.Event) -> None:
    from pipeline.cli.scheduler import run_periodically

    while not hasattr(app.state, "runtime") and not stop.is_set():
        await asyncio.sleep(0.1)
    if not stop.is_set():
        await run_periodically(app.state.runtime, 15.0, 10.0, once=False, stop=stop)


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Uvicorn's options from settings: vidpipe's log handler and levels, and the trusted proxies."""
    levels = {name: logging.getLogger(name).level for name in ("", "pipeline", "api", "dramatiq")}
    return {
        "log_config": logs.dict_config(settings.log_format, levels),
        "log_level": "info",
        "access_log": False,
        # Uvicorn rewrites the client address from X-Forwarded-For only for requests from these.
        "proxy_headers": True,
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }


@contextlib.contextmanager
def _metrics_shared_between_processes() -> Iterator[None]:
    """Let several API processes add up their request metrics (prometheus_client's multiprocess mode).

    Each process writes its numbers to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``
    reads them all. A folder the operator set is used as it is (it must be empty at start);
    otherwise a fresh one lives as long as the server.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    folder = tempfile.mkdtemp(prefix="vidpipe-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(folder, ignore_errors=True)
