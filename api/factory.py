"""An application built from the environment alone, for servers that start one app per process.

``vidpipe api --workers N`` hands uvicorn this import string; each of its processes calls it
and gets an app with its own broker connection. Only a Redis broker makes sense here: stage
work runs in ``vidpipe worker`` processes, never inside the API processes.
"""

from __future__ import annotations

from functools import partial

from litestar import Litestar

from api.app import create_app, freeze_after_start_up
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings
from workers.broker import DramatiqDispatcher, build_broker, queue_depths


def app_from_environment() -> Litestar:
    """The API for the ``VIDPIPE_*`` settings of this process's environment."""
    settings = Settings.from_env().with_secret()
    if settings.broker_url == "memory://":
        raise ConfigurationError(
            "An API served from several processes needs VIDPIPE_BROKER_URL=redis://…", code="config.broker_url"
        )
    broker = build_broker(settings)
    app = create_app(settings, DramatiqDispatcher(broker), queue_depths=partial(queue_depths, broker))
    app.on_shutdown.append(broker.close)
    freeze_after_start_up(app)
    return app
