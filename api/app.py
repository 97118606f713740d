"""The application factory: a Litestar app built from settings, with its services on ``app.state``.

Routes live under ``/api/v1`` on two routers. The guarded router puts every handler behind
the bearer access guard; a handler is public only by being mounted on the public router
(register, login, refresh, the OpenAPI document). Health checks stay at ``/health``, and
Prometheus metrics at ``/metrics`` (see :mod:`api.metrics`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Router, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from api.admin import AdminUsersController
from api.apikeys import ServiceAccountsController
from api.auth.guard import SECURITY, CallerCache, require_access_token
from api.auth.ratelimit import open_rate_limiter
from api.auth.routes import PublicAuthController, SessionController, UsersController, provide_session
from api.errors import document_errors, exception_handlers
from api.health import HealthController
from api.jobs import JobsController
from api.metrics import QueueDepths, RequestIdMiddleware, http_metrics_middleware, metrics_route
from api.search import SearchController
from api.video_edits import VideoEditsController
from api.videos import SignedController, VideosController
from api.webhooks import WebhooksController
from pipeline.dispatch import Dispatcher
from pipeline.runtime import Runtime, prepare_database
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
AUTH_ATTEMPTS_PER_MINUTE = 10


def create_app(settings: Settings, dispatcher: Dispatcher, *, queue_depths: QueueDepths | None = None) -> Litestar:
    """Build the API for ``settings``; the runtime is opened on start-up inside the server's loop.

    ``queue_depths`` reads the broker's queues for ``/metrics``; without it, no queue depth is shown.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        prepare_database(settings)
        runtime = Runtime.build(settings, dispatcher)
        app.state.runtime = runtime
        document_errors(app.openapi_schema)
        logger.info("The API is serving with %s.", runtime.storage.description)
        try:
            yield
        finally:
            await app.state.auth_limiter.close()
            await runtime.close()

    return Litestar(
        route_handlers=[HealthController, metrics_route(queue_depths), _public_router(), _guarded_router()],
        lifespan=[lifespan],
        middleware=[RequestIdMiddleware(), http_metrics_middleware()],
        # Logging belongs to the process (pipeline.logs), not to the app: Litestar's default would
        # replace the root logger's handler with its own format.
        logging_config=None,
        dependencies={"db": Provide(provide_session)},
        exception_handlers=exception_handlers(),
        openapi_config=_openapi_config(),
        cors_config=_cors_config(settings),
        state=State(
            {"auth_limiter": open_rate_limiter(settings, AUTH_ATTEMPTS_PER_MINUTE, 60.0), "callers": CallerCache()}
        ),
        debug=False,
    )


def freeze_after_start_up(app: Litestar) -> None:
    """Keep what start-up built out of the garbage collector's full passes (for servers only).

    Modules, routes, schemas and connection pools live as long as the process; left in the
    collector's oldest generation, each full pass walks all of them and pauses every request
    in flight for tens of milliseconds, the whole of the job route's p99 under load. Servers
    call this; tests that build apps by the dozen in one process do not, so what they drop is
    still collected.
    """

    def freeze() -> None:
        gc.collect()
        gc.freeze()
        logger.info("Kept %d start-up objects out of the garbage collector's full passes.", gc.get_freeze_count())

    app.on_startup.append(freeze)


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_document(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document, at the address clients expect beside the versioned routes."""
    return request.app.openapi_schema.to_schema()


def _public_router() -> Router:
    return Router(path=API_PREFIX, route_handlers=[PublicAuthController, SignedController, openapi_document])


def _guarded_router() -> Router:
    return Router(
        path=API_PREFIX,
        route_handlers=[
            SessionController,
            UsersController,
            JobsController,
            SearchController,
            AdminUsersController,
            ServiceAccountsController,
            WebhooksController,
            VideoEditsController,
            VideosController,
        ],
        guards=[require_access_token],
        security=SECURITY,
    )


def _cors_config(settings: Settings) -> CORSConfig | None:
    """Browser access from the configured origins only; none configured means no CORS headers at all."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "X-API-Key"],
        expose_headers=["ETag", "Location", "Retry-After", "X-Request-ID"],
        allow_credentials=False,
        max_age=600,
    )


def _openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="vidpipe",
        version="1",
        description="Upload lecture videos and follow their processing; all routes but a few need a bearer token.",
        path=f"{API_PREFIX}/docs",
        use_handler_docstrings=True,
        render_plugins=[ScalarRenderPlugin(path="/")],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                "apiKey": SecurityScheme(
                    type="apiKey",
                    name="X-API-Key",
                    security_scheme_in="header",
                    description="A service account's API key (vpk_…); it may also be sent as a bearer token.",
                ),
            }
        ),
    )
