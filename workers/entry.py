"""The module Dramatiq's worker command loads: ``dramatiq workers.entry``.

Dramatiq's command finds the broker through its process-wide default, so this module builds
the broker from settings, declares the actors on it and registers it; nothing else in
vidpipe relies on that global.
"""

from __future__ import annotations

import logging

import dramatiq

from pipeline.settings import Settings
from workers.actors import declare_actors
from workers.broker import build_broker

settings = Settings.from_env().with_secret()
broker = build_broker(settings)
actors = declare_actors(broker, settings)
dramatiq.set_broker(broker)
logging.getLogger(__name__).info("Worker broker ready for %s.", settings.broker_url.split("@")[-1])
