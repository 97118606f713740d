"""The module Dramatiq's worker command loads (``dramatiq workers.entry``), and a launcher for it.

Dramatiq's command finds the broker through its process-wide default, so importing this
module builds the broker from settings, declares the actors on it and registers it; nothing
else in vidpipe relies on that global. Importing it also replaces the log set-up Dramatiq made
for the worker process with vidpipe's (``VIDPIPE_LOG_FORMAT``).

Run as ``python -m workers.entry [dramatiq options]``, it is Dramatiq's command with vidpipe's
log set-up installed first, so the supervising process's own lines (start, stop, a worker
process that died) come out in the same format as the workers': Dramatiq leaves a root logger
that already has a handler alone.
"""

from __future__ import annotations

import logging
import os
import sys

import dramatiq

from pipeline.logs import configure_logging, log_format_from_env
from pipeline.settings import Settings
from pipeline.states import Stage
from workers.actors import declare_actors
from workers.broker import build_broker

logger = logging.getLogger(__name__)


def boot() -> tuple[Settings, dramatiq.Broker, dict[Stage, dramatiq.Actor]]:
    """Log in vidpipe's format, then build the broker, declare the actors and register the broker."""
    configure_logging(log_format_from_env(os.environ), level=logging.INFO)
    settings = Settings.from_env().with_secret()
    broker = build_broker(settings)
    actors = declare_actors(broker, settings)
    dramatiq.set_broker(broker)
    logger.info("Worker broker ready for %s.", settings.broker_url.split("@")[-1])
    return settings, broker, actors


def main(argv: list[str] | None = None) -> int:
    """Dramatiq's worker command for this module, with vidpipe's log set-up in place first."""
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    configure_logging(log_format_from_env(os.environ), level=logging.INFO)
    args = make_argument_parser().parse_args(["workers.entry", *(sys.argv[1:] if argv is None else argv)])
    return int(dramatiq_main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
elif __name__ != "__mp_main__":
    # Under the spawn start method a child re-runs the launcher as __mp_main__; only the real
    # import (the one Dramatiq's worker process makes) builds the broker.
    settings, broker, actors = boot()
