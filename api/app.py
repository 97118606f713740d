"""The application factory: a Litestar app built from settings, with its services on ``app.state``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from api.health import HealthController
from pipeline.dispatch import Dispatcher
from pipeline.runtime import Runtime, prepare_database
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings, dispatcher: Dispatcher) -> Litestar:
    """Build the API for ``settings``; the runtime is opened on start-up inside the server's loop."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        prepare_database(settings)
        runtime = Runtime.build(settings, dispatcher)
        app.state.runtime = runtime
        logger.info("The API is serving with %s.", runtime.storage.description)
        try:
            yield
        finally:
            await runtime.close()

    return Litestar(route_handlers=[HealthController], lifespan=[lifespan], debug=False)
