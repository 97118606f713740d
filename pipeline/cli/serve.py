"""``vidpipe api``: serve the HTTP API with uvicorn.

On the embedded default (``memory://`` broker) the same process also runs the stage workers
and the scheduler, so one command serves a complete system on a laptop.
"""

from __future__ import annotations

import asyncio
import logging

import click
from litestar import Litestar

from pipeline.cli.app import load_settings, open_pipeline

logger = logging.getLogger(__name__)


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from api.app import create_app
    from workers.broker import DramatiqDispatcher

    logging.getLogger("pipeline").setLevel(logging.INFO)
    logging.getLogger("api").setLevel(logging.INFO)
    settings = load_settings()
    with open_pipeline(settings) as pipeline:
        app = create_app(settings, DramatiqDispatcher(pipeline.broker))
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on"))

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

        asyncio.run(serve())


async def _scheduler(app: Litestar, stop: asyncio.Event) -> None:
    from pipeline.cli.scheduler import run_periodically

    while not hasattr(app.state, "runtime") and not stop.is_set():
        await asyncio.sleep(0.1)
    if not stop.is_set():
        await run_periodically(app.state.runtime, 15.0, 10.0, once=False, stop=stop)
